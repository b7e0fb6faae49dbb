"""Fault test: 1,000 webhook deliveries (duplicates, wrong and missing secrets, oversized bodies, unknown event
kinds, malformed JSON) into `guard serve --role web`, while worker processes (`guard serve --role worker`) are
killed with SIGKILL mid-audit and restarted. Afterwards every valid (repo, ref, sha) was audited exactly once
and reported exactly once, none was lost, nothing else was queued, and every bad secret was refused: on SQLite
and on PostgreSQL.

The audit is the fast fake (tests.service.fakes.PassAuditor, 0.3 s) inside the real sandbox and real download
from the fake Hub: the subject here is the queue, not the checks (test_audit_e2e.py runs the real audit).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx2
import pytest
import yaml

from guard.hub.discussions import report_marker
from guard.testing.fake_hub import FakeHub
from tests.helpers import REPO_ROOT
from tests.service.helpers import SECRET, push_payload

pytestmark = pytest.mark.slow

EVENTS = 1000
WORKER_PROCESSES = 3
MAX_KILLS = 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(config_path, role: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "GUARD_TEST_AUDIT_S": "0.3", "HF_HUB_OFFLINE": "0"}
    return subprocess.Popen([sys.executable, "-m", "guard", "serve", "--config", str(config_path), "--role", role,
                             *extra], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _events(keys: list[tuple[str, str, str]], rng: random.Random):
    """(kind, payload or raw body, headers, valid keys it carries) for EVENTS deliveries."""
    good = {"X-Webhook-Secret": SECRET, "Content-Type": "application/json"}
    out = []
    for repo, ref, sha in keys:  # every key at least once
        out.append(("valid", push_payload(repo, [(ref, sha)]), good))
    bad_key = ("evil/never", "refs/heads/main")
    while len(out) < EVENTS:
        roll = rng.random()
        fresh_sha = f"{rng.getrandbits(160):040x}"
        if roll < 0.35:  # duplicates and replays, sometimes two refs in one event
            picks = rng.sample(keys, rng.choice((1, 1, 2)))
            by_repo = picks[:1] if len({p[0] for p in picks}) > 1 else picks
            out.append(("valid", push_payload(by_repo[0][0], [(r, s) for _, r, s in by_repo]), good))
        elif roll < 0.47:
            out.append(("wrong-secret", push_payload(*bad_key[:1], [(bad_key[1], fresh_sha)]),
                        {"X-Webhook-Secret": SECRET[:-1] + "!", "Content-Type": "application/json"}))
        elif roll < 0.59:
            out.append(("missing-secret", push_payload(*bad_key[:1], [(bad_key[1], fresh_sha)]),
                        {"Content-Type": "application/json"}))
        elif roll < 0.69:
            payload = push_payload(*bad_key[:1], [(bad_key[1], fresh_sha)])
            payload["padding"] = "x" * 70_000
            out.append(("oversized", payload, good))
        elif roll < 0.90:
            scope = rng.choice(["discussion", "discussion.comment", "repo.config", "repo", "space.build", ""])
            payload = push_payload(*bad_key[:1], [(bad_key[1], fresh_sha)], scope=scope)
            if rng.random() < 0.3:
                payload = push_payload(*bad_key[:1], [(bad_key[1], fresh_sha)], repo_type="dataset")
            out.append(("unknown-kind", payload, good))
        else:
            out.append(("malformed", '{"event": {"scope": "repo.content"', good))
    rng.shuffle(out)
    return out


def test_faults_every_key_audited_exactly_once(database_url, online, tmp_path):
    rng = random.Random(20261207)
    hub = FakeHub().start()
    keys = []
    for r in range(6):
        repo = f"acme/model-{r}"
        for c in range(6):
            ref = "refs/heads/main" if c % 3 else f"refs/heads/dev-{c}"
            keys.append((repo, ref, hub.push(repo, {"config.json": f'{{"r": {r}, "c": {c}}}'.encode()}, ref=ref)))
    port = _free_port()
    config_path = tmp_path / "serve.yaml"
    config_path.write_text(yaml.safe_dump({
        "database": database_url, "webhook_secret": SECRET, "port": port, "max_body_bytes": 65_536,
        "hub": {"endpoint": hub.endpoint, "token": "hf_fake_guard_token"}, "audit": "tests.service.fakes:PassAuditor",
        "workers": 2, "lease_s": 2.0, "poll_s": 0.1, "max_attempts": 50, "backoff_base_s": 0.2, "backoff_max_s": 1.0,
        "work_dir": str(tmp_path / "work"), "bot_user_ids": [FakeHub.user_id("guard-bot")]}))
    web = _serve(config_path, "web")
    workers = [_serve(config_path, "worker") for _ in range(WORKER_PROCESSES)]
    stop_killing = threading.Event()
    kills = []

    def killer():
        while len(kills) < MAX_KILLS and not stop_killing.wait(rng.uniform(1.0, 2.5)):
            i = rng.randrange(len(workers))
            os.killpg(workers[i].pid, signal.SIGKILL)
            workers[i].wait()
            kills.append(time.monotonic())
            workers[i] = _serve(config_path, "worker")

    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx2.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            assert time.monotonic() < deadline and web.poll() is None, "guard serve did not start"
            time.sleep(0.2)
        kill_thread = threading.Thread(target=killer, daemon=True)
        kill_thread.start()
        events = _events(keys, rng)

        def send(event):
            kind, body, headers = event
            content = body if isinstance(body, str) else json.dumps(body)
            with httpx2.Client(timeout=30) as client:
                return kind, client.post(f"{base}/webhooks/hub", headers=headers, content=content).status_code

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(send, events))
        deadline = time.monotonic() + 600
        with httpx2.Client(base_url=base, timeout=30) as client:
            while True:
                stats = client.get("/api/stats").json()
                if stats.get("done", 0) + stats.get("failed", 0) >= len(keys) and not stats.get("queued") \
                        and not stats.get("running"):
                    break
                assert time.monotonic() < deadline, stats
                time.sleep(1)
            stop_killing.set()
            kill_thread.join()
            audits = client.get("/api/audits", params={"limit": 1000}).json()["audits"]
            details = [client.get(f"/api/audits/{a['id']}").json() for a in audits]
        hub.wait_for_deliveries()
    finally:
        stop_killing.set()
        for proc in [web, *workers]:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        hub.close()

    by_kind: dict[str, list[int]] = {}
    for kind, status in answers:
        by_kind.setdefault(kind, []).append(status)
    assert sum(map(len, by_kind.values())) == EVENTS
    assert set(by_kind["valid"]) == {202}
    assert set(by_kind["wrong-secret"]) == {403} and set(by_kind["missing-secret"]) == {401}
    assert set(by_kind["oversized"]) == {413} and set(by_kind["unknown-kind"]) == {202}
    assert set(by_kind["malformed"]) == {400}
    # none lost, nothing extra: exactly the valid keys were queued
    assert sorted((a["repo"], a["ref"], a["sha"]) for a in audits) == sorted(keys)
    # each audited exactly once: one recorded result per key, every job finished with it
    assert {(a["state"], a["verdict"]) for a in audits} == {("done", "pass")}
    assert all(d["result"] is not None and d["result"]["attempt"] >= 1 for d in details)
    # reported exactly once: one discussion per key on the Hub, carrying that key's marker
    for repo, ref, sha in keys:
        marked = [d for d in hub.discussion_list(repo)
                  if any(report_marker(repo, ref, sha) in e["data"]["latest"]["raw"] for e in d.events)]
        assert len(marked) == 1, (repo, ref, sha, len(marked))
    assert sum(len(hub.discussion_list(repo)) for repo in {k[0] for k in keys}) == len(keys)
    summary = {"events": {k: len(v) for k, v in by_kind.items()}, "keys": len(keys), "kills": len(kills),
               "jobs_reclaimed": sum(a["attempts"] > 1 for a in audits), "max_attempts": max(a["attempts"] for a in audits),
               "deliveries_per_key_max": max(a["deliveries"] for a in audits)}
    (tmp_path / "summary.json").write_text(json.dumps(summary, indent=2))
    # the kills really landed mid-audit: some jobs needed more than one claim
    assert len(kills) >= 10 and sum(a["attempts"] > 1 for a in audits) >= 1, (len(kills), [a["attempts"] for a in audits])
