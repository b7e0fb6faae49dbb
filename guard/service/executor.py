"""Where sandboxed audit jobs run: one interface, two engines.

`LocalExecutor` runs each job in a limited child process on this machine. `RayExecutor` hands the same
job to a Ray task, which runs the same sandbox on whichever node Ray picks; the durable queue stays in
the database, Ray only places work. Every Ray node needs guard installed (same version) and reach to
the Hub; nothing else is shared (each job downloads into the node's own temporary directory).
"""

from __future__ import annotations

import abc
import dataclasses
import pathlib
import tempfile

from guard.service.config import ServiceConfig
from guard.service.sandbox import Outcome, run_sandboxed


class Executor(abc.ABC):
    @abc.abstractmethod
    def run(self, spec: dict) -> Outcome:
        """Run one job spec to an Outcome; never raise for what the job does."""

    def close(self) -> None:
        pass


class LocalExecutor(Executor):
    def __init__(self, *, limits: dict, work_root: str | pathlib.Path) -> None:
        self._limits, self._work_root = limits, pathlib.Path(work_root)

    def run(self, spec: dict) -> Outcome:
        return run_sandboxed(spec, limits=self._limits, work_root=self._work_root)


def _ray_job(spec: dict, limits: dict) -> dict:
    """The Ray task: the same sandbox, on the node that runs it."""
    return dataclasses.asdict(run_sandboxed(spec, limits=limits, work_root=pathlib.Path(tempfile.gettempdir())
                                            / "guard-audits"))


class RayExecutor(Executor):
    def __init__(self, *, limits: dict, address: str | None = None, num_cpus: int | None = None) -> None:
        import os

        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # the service never phones home
        import ray

        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
            if address is None and num_cpus is not None:
                kwargs["num_cpus"] = num_cpus
            ray.init(address=address, **kwargs)
        self._ray = ray
        self._limits = limits
        # one CPU per audit; no Ray-level retries: the job table owns retries (and counts them)
        self._task = ray.remote(num_cpus=1, max_retries=0)(_ray_job)

    def run(self, spec: dict) -> Outcome:
        try:
            return Outcome(**self._ray.get(self._task.remote(spec, self._limits)))
        except self._ray.exceptions.RayError as exc:  # a node or worker died: the job is retried
            return Outcome("crash", message=f"ray: {type(exc).__name__}: {' '.join(str(exc).split())[:500]}")

    def close(self) -> None:
        self._ray.shutdown()


def make_executor(config: ServiceConfig) -> Executor:
    limits = config.sandbox.model_dump()
    if config.executor == "ray":
        return RayExecutor(limits=limits, address=config.ray_address)
    return LocalExecutor(limits=limits, work_root=pathlib.Path(config.work_dir) / "guard-audits")
