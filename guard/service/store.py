"""Durable audit jobs on SQLAlchemy: idempotent enqueue, leased claims, fenced results, retries with backoff.

Every state change after a claim is fenced by the claim's `lease_token`: a worker that lost its lease
(it stalled past `lease_s` and someone re-claimed the job) can no longer record, complete or fail it.
A claim takes a due queued job, or a running job whose lease expired (its worker died): that is the
re-queue. Attempts count claims; past `max_attempts` a job fails for good, with the reason kept.
On PostgreSQL claims use `FOR UPDATE SKIP LOCKED`; on SQLite the whole claim is one IMMEDIATE transaction.
"""

from __future__ import annotations

import dataclasses
import json
import random
import threading
import time
import uuid
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from guard.service.db import Delivery, Job, make_engine, upgrade


@dataclasses.dataclass(frozen=True)
class JobKey:
    repo: str
    ref: str
    sha: str


@dataclasses.dataclass(frozen=True)
class Claim:
    """A leased job: what to audit, and the token every later write must show."""

    id: int
    key: JobKey
    token: str
    attempt: int
    result: dict | None  # set when an earlier attempt audited but did not finish reporting


@dataclasses.dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff_base_s: float = 30.0
    backoff_max_s: float = 3600.0

    def delay(self, attempt: int) -> float:
        """Exponential back-off with full jitter on the upper half (attempt counts from 1)."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** max(0, attempt - 1))
        return ceiling / 2 + random.random() * ceiling / 2


class LeaseLost(Exception):
    """The job's lease passed to another worker; this worker's result is discarded."""


class JobStore:
    def __init__(self, url: str, *, retry: RetryPolicy | None = None, migrate: bool = True) -> None:
        self.engine = make_engine(url)
        if migrate:
            upgrade(self.engine)
        self.retry = retry or RetryPolicy()
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._pg = self.engine.dialect.name == "postgresql"
        self._statements()
        self._closed = threading.Event()
        if not self._pg:
            threading.Thread(target=self._checkpoint_loop, name="guard-sqlite-checkpoint", daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        self.engine.dispose()

    def _checkpoint_loop(self, every_s: float = 1.0) -> None:
        """Copy the SQLite WAL back into the database file without blocking writers (PASSIVE)."""
        while not self._closed.wait(every_s):
            try:
                with self.engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            except sa.exc.SQLAlchemyError:
                pass  # busy or closing: the next round catches up

    def session(self) -> Session:
        return self._sessions()

    # ---- the webhook side ------------------------------------------------------------------------------
    def enqueue(self, keys: Iterable[JobKey], *, delivery: dict | None = None) -> tuple[int, int]:
        """Insert one queued job per new key; count a repeat delivery on existing ones. Returns (new, dup).
        One transaction with the delivery record: acknowledged means stored."""
        return self.enqueue_many([(tuple(keys), delivery)])[0]

    def enqueue_many(self, batch: list[tuple[tuple[JobKey, ...], dict | None]]) -> list[tuple[int, int]]:
        """Several deliveries in one transaction (group commit); Core statements compiled once: the webhook's
        hot path."""
        now = time.time()
        out = []
        with self.engine.begin() as conn:
            for keys, delivery in batch:
                new = dup = 0
                for key in dict.fromkeys(keys):
                    params = {"k_repo": key.repo, "k_ref": key.ref, "k_sha": key.sha}
                    if conn.execute(self._insert_job, {**params, "now": now}).first() is not None:
                        new += 1
                    else:
                        dup += 1
                        conn.execute(self._count_delivery, params)
                if delivery is not None:
                    conn.execute(self._insert_delivery, {"received_at": now, "jobs_created": new,
                                                         "jobs_duplicate": dup, **delivery})
                out.append((new, dup))
        return out

    def _statements(self) -> None:
        if self._pg:
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        bp = sa.bindparam
        jobs, deliveries = Job.__table__, Delivery.__table__
        self._insert_job = insert(jobs).values(
            repo=bp("k_repo"), ref=bp("k_ref"), sha=bp("k_sha"), state="queued", attempts=0, deliveries=1,
            next_attempt_at=bp("now"), created_at=bp("now"), updated_at=bp("now"), audit_runs=0,
        ).on_conflict_do_nothing(index_elements=["repo", "ref", "sha"]).returning(jobs.c.id)
        self._count_delivery = (sa.update(jobs).where(jobs.c.repo == bp("k_repo"), jobs.c.ref == bp("k_ref"),
                                                      jobs.c.sha == bp("k_sha"))
                                .values(deliveries=jobs.c.deliveries + 1))
        self._insert_delivery = sa.insert(deliveries)

    # ---- the worker side -------------------------------------------------------------------------------
    def claim(self, *, owner: str, lease_s: float) -> Claim | None:
        while True:
            now = time.time()
            due = sa.or_(sa.and_(Job.state == "queued", Job.next_attempt_at <= now),
                         sa.and_(Job.state == "running", Job.lease_expires < now))
            with self.session() as s, s.begin():
                pick = sa.select(Job.id).where(due).order_by(Job.next_attempt_at, Job.id).limit(1)
                if self._pg:
                    pick = pick.with_for_update(skip_locked=True)
                job_id = s.execute(pick).scalar()
                if job_id is None:
                    return None
                token = str(uuid.uuid4())
                taken = s.execute(sa.update(Job).where(Job.id == job_id, due).values(
                    state="running", lease_owner=owner, lease_token=token, lease_expires=now + lease_s,
                    attempts=Job.attempts + 1, updated_at=now)).rowcount
                if taken != 1:
                    continue  # another worker won this one; pick again
                job = s.get(Job, job_id)
                if job.attempts > self.retry.max_attempts:
                    self._finish(job, now, state="failed", verdict="error",
                                 error=f"gave up after {job.attempts - 1} attempts; last: {job.last_error or 'lease expired'}")
                    continue
                return Claim(id=job.id, key=JobKey(job.repo, job.ref, job.sha), token=token, attempt=job.attempts,
                             result=json.loads(job.result) if job.result else None)

    def heartbeat(self, claim: Claim, *, lease_s: float) -> None:
        self._fenced(claim, lease_expires=time.time() + lease_s)

    def record_result(self, claim: Claim, result: dict) -> None:
        """Store the audit's report (once per job: a later attempt reuses it instead of auditing again)."""
        now = time.time()
        self._fenced(claim, result=json.dumps(result, sort_keys=True), verdict=result.get("verdict", "error"),
                     audited_at=now, audit_runs=Job.audit_runs + 1, extra_where=Job.result.is_(None))

    def complete(self, claim: Claim, *, report_state: str, report_discussion: int | None = None) -> None:
        now = time.time()
        self._fenced(claim, state="done", finished_at=now, lease_owner=None, lease_token=None, lease_expires=None,
                     report_state=report_state, report_discussion=report_discussion, extra_where=Job.result.is_not(None))

    def fail(self, claim: Claim, error: str, *, retryable: bool) -> None:
        """Retry later (back-off), or fail for good: then the job is finished with verdict `error`."""
        now = time.time()
        with self.session() as s, s.begin():
            job = s.get(Job, claim.id, with_for_update=self._pg)
            if job is None or job.lease_token != claim.token or job.state != "running":
                raise LeaseLost(claim.id)
            if retryable and job.attempts < self.retry.max_attempts:
                job.state, job.next_attempt_at = "queued", now + self.retry.delay(job.attempts)
                job.lease_owner = job.lease_token = job.lease_expires = None
                job.last_error, job.updated_at = error[:4000], now
            else:
                self._finish(job, now, state="failed", verdict="error", error=error)

    def _finish(self, job: Job, now: float, *, state: str, verdict: str, error: str) -> None:
        job.state, job.verdict, job.last_error = state, job.verdict or verdict, error[:4000]
        job.finished_at = job.updated_at = now
        job.lease_owner = job.lease_token = job.lease_expires = None

    def _fenced(self, claim: Claim, *, extra_where=None, **values) -> None:
        values.setdefault("updated_at", time.time())
        where = [Job.id == claim.id, Job.lease_token == claim.token, Job.state == "running"]
        if extra_where is not None:
            where.append(extra_where)
        with self.session() as s, s.begin():
            if s.execute(sa.update(Job).where(*where).values(**values)).rowcount != 1:
                raise LeaseLost(claim.id)

    # ---- reading ---------------------------------------------------------------------------------------
    def jobs(self, *, limit: int = 100, offset: int = 0, repo: str | None = None,
             state: str | None = None) -> list[Job]:
        query = sa.select(Job).order_by(Job.id.desc()).limit(limit).offset(offset)
        if repo:
            query = query.where(Job.repo == repo)
        if state:
            query = query.where(Job.state == state)
        with self.session() as s:
            return list(s.execute(query).scalars())

    def job(self, job_id: int) -> Job | None:
        with self.session() as s:
            return s.get(Job, job_id)

    def counts(self) -> dict[str, int]:
        with self.session() as s:
            rows = s.execute(sa.select(Job.state, sa.func.count()).group_by(Job.state)).all()
            verdicts = s.execute(sa.select(Job.verdict, sa.func.count()).where(Job.verdict.is_not(None))
                                 .group_by(Job.verdict)).all()
        return {**{state: n for state, n in rows}, **{f"verdict_{v}": n for v, n in verdicts}}

    def deliveries(self, *, limit: int = 50) -> list[Delivery]:
        with self.session() as s:
            return list(s.execute(sa.select(Delivery).order_by(Delivery.id.desc()).limit(limit)).scalars())
