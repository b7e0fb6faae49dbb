"""Audits that break a limit fail closed, name the limit, and leave the worker running."""

import time

import pytest

from guard.service.config import SandboxLimits, ServiceConfig
from guard.service.executor import LocalExecutor
from guard.service.store import JobKey, JobStore, RetryPolicy
from guard.service.worker import Worker
from guard.testing.fake_hub import FakeHub
from tests.service.helpers import SECRET


@pytest.fixture
def hub(online):
    with FakeHub() as fake:
        yield fake


def run_one(tmp_path, hub, audit: str, *, limits: SandboxLimits, retry: RetryPolicy | None = None):
    sha = hub.push("acme/model", {"config.json": b"{}"})
    config = ServiceConfig(webhook_secret=SECRET, database=str(tmp_path / "db"), audit=audit, report=False,
                           hub={"endpoint": hub.endpoint}, sandbox=limits, work_dir=tmp_path)
    store = JobStore(config.database, retry=retry or RetryPolicy(max_attempts=1))
    store.enqueue([JobKey("acme/model", "refs/heads/main", sha)])
    worker = Worker(store=store, executor=LocalExecutor(limits=limits.model_dump(), work_root=tmp_path / "w"),
                    config=config)
    started = time.monotonic()
    while worker.run_once():
        pass
    return store.jobs()[0], time.monotonic() - started


def test_memory_bomb_fails_closed(tmp_path, hub):
    job, _ = run_one(tmp_path, hub, "tests.service.fakes:MemoryHogAuditor",
                     limits=SandboxLimits(memory_bytes=1 << 30))
    assert (job.state, job.verdict) == ("done", "fail")
    assert "memory limit" in job.result and "1,073,741,824" in job.result


def test_endless_audit_is_killed_at_the_wall_clock(tmp_path, hub):
    job, elapsed = run_one(tmp_path, hub, "tests.service.fakes:SleeperAuditor", limits=SandboxLimits(wall_s=4))
    assert (job.state, job.verdict) == ("done", "fail") and "wall-clock limit" in job.result
    assert elapsed < 20


def test_a_crashing_audit_is_retried_then_recorded_as_an_error(tmp_path, hub):
    job, _ = run_one(tmp_path, hub, "tests.service.fakes:CrashingAuditor", limits=SandboxLimits(),
                     retry=RetryPolicy(max_attempts=2, backoff_base_s=0, backoff_max_s=0))
    assert (job.state, job.verdict, job.attempts) == ("failed", "error", 2)
    assert "crash" in job.last_error and job.result is None


def test_a_passing_audit_reports_what_it_cost(tmp_path, hub):
    job, _ = run_one(tmp_path, hub, "tests.service.fakes:PassAuditor", limits=SandboxLimits())
    assert (job.state, job.verdict) == ("done", "pass")
    assert '"max_rss_bytes"' in job.result and "files: config.json" in job.result
