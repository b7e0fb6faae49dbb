"""The Ray executor runs the same sandboxed job as a Ray task (a local Ray instance, one CPU)."""

import os

import pytest

from guard.service.config import SandboxLimits, ServiceConfig
from guard.service.store import JobKey, JobStore
from guard.service.worker import Worker
from guard.testing.fake_hub import FakeHub
from tests.helpers import REPO_ROOT
from tests.service.helpers import SECRET

pytestmark = pytest.mark.slow


@pytest.fixture
def ray_executor(monkeypatch):
    from guard.service.executor import RayExecutor

    # Ray's worker processes inherit the driver's environment: they (and the sandbox) can import tests.*
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    executor = RayExecutor(limits=SandboxLimits(wall_s=120).model_dump(), num_cpus=1)
    yield executor
    executor.close()


def test_worker_with_ray_executor_audits_and_reports(online, tmp_path, ray_executor):
    with FakeHub() as hub:
        sha = hub.push("acme/model", {"config.json": b"{}", "model.safetensors": b"\0" * 16})
        config = ServiceConfig(webhook_secret=SECRET, database=str(tmp_path / "db"), executor="ray",
                               audit="tests.service.fakes:PassAuditor",
                               hub={"endpoint": hub.endpoint, "token": "hf_fake_guard_token"})
        store = JobStore(config.database)
        store.enqueue([JobKey("acme/model", "refs/heads/main", sha)])
        assert Worker(store=store, executor=ray_executor, config=config).run_once()
        job = store.jobs()[0]
        assert (job.state, job.verdict, job.report_state) == ("done", "pass", "posted"), job.last_error
        assert "files: config.json, model.safetensors" in job.result
        assert len(hub.discussion_list("acme/model")) == 1
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"
