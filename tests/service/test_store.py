import threading
import time

import pytest
import sqlalchemy as sa

from guard.service.store import JobKey, JobStore, LeaseLost, RetryPolicy

SHA = "a" * 40


def key(i: int = 0) -> JobKey:
    return JobKey("acme/model", "refs/heads/main", f"{i:040x}")


def test_schema_comes_from_alembic(database_url):
    store = JobStore(database_url)
    JobStore(database_url).close()  # upgrading twice is a no-op
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0001"
        if store.engine.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert set(sa.inspect(store.engine).get_table_names()) == {"jobs", "deliveries", "alembic_version"}


def test_enqueue_is_idempotent_on_repo_ref_sha(database_url):
    store = JobStore(database_url)
    assert store.enqueue([key(1), key(1), key(2)]) == (2, 0)
    assert store.enqueue([key(1)]) == (0, 1)
    assert store.enqueue([JobKey("acme/model", "refs/pr/1", key(1).sha)]) == (1, 0)  # another ref: another job
    jobs = {(j.ref, j.sha): j for j in store.jobs()}
    assert len(jobs) == 3 and jobs[("refs/heads/main", key(1).sha)].deliveries == 2


def test_claim_complete_and_fencing(database_url):
    store = JobStore(database_url)
    store.enqueue([key()])
    claim = store.claim(owner="w1", lease_s=60)
    assert claim.key == key() and claim.attempt == 1
    assert store.claim(owner="w2", lease_s=60) is None  # leased
    with pytest.raises(LeaseLost):
        store.complete(claim, report_state="off")  # no result recorded yet
    store.record_result(claim, {"verdict": "pass"})
    with pytest.raises(LeaseLost):
        store.record_result(claim, {"verdict": "fail"})  # one result per job
    store.complete(claim, report_state="posted", report_discussion=3)
    job = store.job(claim.id)
    assert (job.state, job.verdict, job.audit_runs, job.report_discussion) == ("done", "pass", 1, 3)
    assert store.claim(owner="w2", lease_s=60) is None


def test_expired_lease_is_requeued_and_the_old_worker_is_fenced_off(database_url):
    store = JobStore(database_url)
    store.enqueue([key()])
    dead = store.claim(owner="dead", lease_s=0.2)
    time.sleep(0.3)
    alive = store.claim(owner="alive", lease_s=60)
    assert alive.id == dead.id and alive.attempt == 2 and alive.token != dead.token
    for write in (lambda: store.record_result(dead, {"verdict": "pass"}), lambda: store.heartbeat(dead, lease_s=60),
                  lambda: store.fail(dead, "x", retryable=True)):
        with pytest.raises(LeaseLost):
            write()
    store.record_result(alive, {"verdict": "fail"})
    store.complete(alive, report_state="off")
    assert store.job(alive.id).verdict == "fail"


def test_heartbeat_keeps_the_lease(database_url):
    store = JobStore(database_url)
    store.enqueue([key()])
    claim = store.claim(owner="w", lease_s=0.3)
    for _ in range(3):
        time.sleep(0.15)
        store.heartbeat(claim, lease_s=0.3)
    assert store.claim(owner="other", lease_s=60) is None


def test_retries_back_off_then_give_up(database_url):
    store = JobStore(database_url, retry=RetryPolicy(max_attempts=3, backoff_base_s=0.2, backoff_max_s=0.4))
    store.enqueue([key()])
    claim = store.claim(owner="w", lease_s=60)
    store.fail(claim, "hub down", retryable=True)
    job = store.job(claim.id)
    assert job.state == "queued" and job.next_attempt_at > time.time() + 0.05
    assert store.claim(owner="w", lease_s=60) is None  # not due yet
    time.sleep(0.25)
    claim = store.claim(owner="w", lease_s=60)
    assert claim.attempt == 2
    store.fail(claim, "bad input", retryable=False)
    job = store.job(claim.id)
    assert (job.state, job.verdict, job.last_error) == ("failed", "error", "bad input")


def test_a_job_whose_workers_keep_dying_fails_for_good(database_url):
    store = JobStore(database_url, retry=RetryPolicy(max_attempts=2))
    store.enqueue([key()])
    for _ in range(2):
        assert store.claim(owner="w", lease_s=0.05) is not None
        time.sleep(0.1)
    assert store.claim(owner="w", lease_s=0.05) is None
    job = store.jobs()[0]
    assert job.state == "failed" and "gave up after 2 attempts" in job.last_error


def test_a_result_survives_a_crash_before_reporting(database_url):
    store = JobStore(database_url)
    store.enqueue([key()])
    first = store.claim(owner="w", lease_s=0.1)
    store.record_result(first, {"verdict": "pass", "n": 1})
    time.sleep(0.2)
    second = store.claim(owner="w", lease_s=60)
    assert second.result == {"verdict": "pass", "n": 1}  # reused, not audited again
    store.complete(second, report_state="posted")
    assert store.job(second.id).audit_runs == 1


def test_concurrent_claims_never_share_a_job(database_url):
    store = JobStore(database_url)
    store.enqueue([key(i) for i in range(60)])
    taken: list[int] = []
    lock = threading.Lock()

    def worker(name):
        while (claim := store.claim(owner=name, lease_s=60)) is not None:
            store.record_result(claim, {"verdict": "pass"})
            store.complete(claim, report_state="off")
            with lock:
                taken.append(claim.id)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken) == sorted({j.id for j in store.jobs(limit=1000)})
    assert store.counts()["done"] == 60
