"""Workers: claim a job -> run it in the executor -> record the result -> report to the Hub -> complete.

A heartbeat thread renews the lease every `lease_s / 4` while the job runs; a worker that loses its
lease (it stalled, someone else took the job) drops its work and writes nothing. The audit result is
recorded before the report is posted, so a worker that dies in between leaves a job the next worker
only has to report (guard.hub.discussions finds its own marker and never posts twice).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

from guard import __version__
from guard.errors import GuardError
from guard.service.audit import check, summary_markdown
from guard.service.config import ServiceConfig
from guard.service.executor import Executor
from guard.service.store import Claim, JobStore, LeaseLost

log = logging.getLogger("guard.serve.worker")


def job_spec(config: ServiceConfig, claim: Claim) -> dict:
    key = claim.key
    return {"repo": key.repo, "ref": key.ref, "sha": key.sha, "hub": config.hub.model_dump(),
            "download": config.download.model_dump(), "trust": config.trust.for_repo(key.repo).model_dump(),
            "audit": config.audit}


def limit_result(message: str) -> dict:
    """A hostile upload that broke a sandbox limit fails closed, with the limit named."""
    return {"verdict": "fail", "checks": [check("resources", "Audit resource limits", "fail", message)],
            "model": {}, "base": {}}


class _Heartbeat:
    def __init__(self, store: JobStore, claim: Claim, lease_s: float) -> None:
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(store, claim, lease_s), daemon=True)
        self._thread.start()

    def _run(self, store: JobStore, claim: Claim, lease_s: float) -> None:
        while not self._stop.wait(lease_s / 4):
            try:
                store.heartbeat(claim, lease_s=lease_s)
            except LeaseLost:
                self.lost.set()
                return
            except Exception:  # noqa: BLE001 - a database hiccup: try again next beat
                log.exception("heartbeat failed for job %d", claim.id)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class Worker:
    def __init__(self, *, store: JobStore, executor: Executor, config: ServiceConfig, name: str | None = None,
                 stop: threading.Event | None = None) -> None:
        self.store, self.executor, self.config = store, executor, config
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stop = stop or threading.Event()

    def loop(self) -> None:
        while not self.stop.is_set():
            try:
                if not self.run_once():
                    self.stop.wait(self.config.poll_s)
            except Exception:  # noqa: BLE001 - the loop outlives any one job or a database outage
                log.exception("worker %s: unexpected error", self.name)
                self.stop.wait(self.config.poll_s)

    def run_once(self) -> bool:
        claim = self.store.claim(owner=self.name, lease_s=self.config.lease_s)
        if claim is None:
            return False
        beat = _Heartbeat(self.store, claim, self.config.lease_s)
        try:
            self._process(claim, beat)
        except LeaseLost:
            log.warning("worker %s lost the lease of job %d; its work is dropped", self.name, claim.id)
        finally:
            beat.stop()
        return True

    def _process(self, claim: Claim, beat: _Heartbeat) -> None:
        result = claim.result
        if result is None:
            outcome = self.executor.run(job_spec(self.config, claim))
            if beat.lost.is_set():
                raise LeaseLost(claim.id)
            if outcome.kind in ("retry", "crash"):
                self.store.fail(claim, f"{outcome.kind}: {outcome.message}", retryable=True)
                return
            result = limit_result(outcome.message) if outcome.kind == "limit" else dict(outcome.result)
            result.update({"repo": claim.key.repo, "ref": claim.key.ref, "sha": claim.key.sha,
                           "attempt": claim.attempt, "guard_version": __version__, "resources": outcome.resources})
            self.store.record_result(claim, result)
        report_state, discussion = "off", None
        if self.config.report:
            from guard.hub.discussions import post_report

            markdown = summary_markdown(result, repo=claim.key.repo, ref=claim.key.ref, sha=claim.key.sha)
            try:
                posted = post_report(repo_id=claim.key.repo, ref=claim.key.ref, sha=claim.key.sha,
                                     markdown=markdown, settings=self.config.hub)
            except GuardError as exc:
                self.store.fail(claim, f"report: {exc.one_line()}", retryable=True)
                return
            report_state, discussion = ("posted" if posted.created else "exists"), posted.discussion
        self.store.complete(claim, report_state=report_state, report_discussion=discussion)


class WorkerPool:
    """`n` worker threads in this process (each runs its jobs in sandboxed children)."""

    def __init__(self, *, store: JobStore, executor: Executor, config: ServiceConfig, n: int) -> None:
        self.stop = threading.Event()
        self.workers = [Worker(store=store, executor=executor, config=config, stop=self.stop) for _ in range(n)]
        self._threads = [threading.Thread(target=w.loop, name=f"guard-worker-{i}", daemon=True)
                         for i, w in enumerate(self.workers)]

    def start(self) -> WorkerPool:
        for t in self._threads:
            t.start()
        return self

    def close(self, timeout: float | None = None) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(timeout)
