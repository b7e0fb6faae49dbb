"""guard serve: webhook acknowledgement latency at a fixed request rate, and audits per hour for a ~100M model.

    python -m benchmarks.service                      # 200 req/s for 30 s; 3 audits of a ~106M-parameter Llama
    python -m benchmarks.service --small --json       # 50 req/s for 2 s; 1 audit of a tiny model (tests run this)
    python -m benchmarks.service --no-probes          # the same, audits with the probe stage off (trust entry)
    python -m benchmarks.service zoo-probes --seeds 0,1 [--peers] [--calibration]   # the audit's probes check

zoo-probes: StageAuditor (no sandbox, no Hub) on each clean expert and each backdoored expert of the small LM
zoo against the family's base, as a Hub audit sees an upload: alone, or with the other clean experts as the
trust entry's peers (--peers), calibration prompts of every task if --calibration; one row per case with the
probes check's status and each probe's score / threshold.

Acknowledgement: `guard serve --role web` (SQLite WAL, the embedded default) in one process, an open-loop load
generator in a second process (`python -m benchmarks.service loadgen`): request i is due at t0 + i/rate,
whether or not earlier answers came back, and its latency counts from when it was due, so a stall is not
hidden (no coordinated omission). Every request is a valid `repo.content` delivery with the secret; one in
five repeats an earlier sha (a Hub retry). Peer, same run, same generator: a bare Starlette app on the same
uvicorn answering 202 without reading anything (the floor of the stack).

Audits per hour: the fake Hub on loopback serves a ~106M-parameter Llama-shaped model (float32, one shard)
whose card names a base of the same shape; one worker audits successive commits end to end (sandbox, download
of model and base by sha, digest checks, artifacts, MergeLock against the base, per-layer weights, report).
Peer, same run: `huggingface_hub.snapshot_download` of model and base plus reading every tensor with
safetensors (what any consumer does before using the model).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import platform
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

SECRET = "benchmark-webhook-secret-0123456789"
FULL = {"rate": 200.0, "seconds": 30.0, "audits": 3, "model": "llama-100m"}
SMALL = {"rate": 50.0, "seconds": 2.0, "audits": 1, "model": "tiny"}
# ~106M parameters: 8 layers of hidden 768 / MLP 2048 (56.6M), 32k-token embedding and untied head (49.2M)
LLAMA_100M = dict(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=8,
                  num_attention_heads=12, num_key_value_heads=12, tie_word_embeddings=False)


# ---- load generator (runs in its own process) ---------------------------------------------------------------
def _payload(i: int, rng: random.Random, seen: list[tuple[str, str]]) -> bytes:
    if seen and rng.random() < 0.2:
        repo, sha = rng.choice(seen)  # a Hub retry or replay of an earlier delivery
    else:
        repo, sha = f"bench/model-{i % 50}", f"{rng.getrandbits(160):040x}"
        seen.append((repo, sha))
    body = {"event": {"action": "update", "scope": "repo.content"},
            "repo": {"type": "model", "name": repo, "id": "x", "owner": {"id": "o"}},
            "updatedRefs": [{"ref": "refs/heads/main", "oldSha": None, "newSha": sha}], "webhook": {"version": 3}}
    return json.dumps(body).encode()


async def _generate(url: str, rate: float, seconds: float, seed: int) -> dict:
    import httpx2

    rng = random.Random(seed)
    seen: list[tuple[str, str]] = []
    n = int(rate * seconds)
    bodies = [_payload(i, rng, seen) for i in range(n)]
    headers = {"X-Webhook-Secret": SECRET, "Content-Type": "application/json"}
    latencies: list[float] = [float("nan")] * n
    statuses: dict[int | str, int] = {}
    # idle connections are dropped before uvicorn's 5 s keep-alive timeout closes them under the client
    limits = httpx2.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=2.0)
    async with httpx2.AsyncClient(limits=limits, timeout=30) as client:
        await client.get(url.rsplit("/webhooks", 1)[0] + "/healthz")  # warm a connection

        async def one(i: int, due: float) -> None:
            try:
                response = await client.post(url, content=bodies[i], headers=headers)
                status: int | str = response.status_code
                latencies[i] = time.perf_counter() - due
            except httpx2.HTTPError as exc:  # counted, never hidden: a failed request has no latency
                status = f"error: {type(exc).__name__}"
            statuses[status] = statuses.get(status, 0) + 1

        start = time.perf_counter() + 0.05
        tasks = []
        for i in range(n):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)
        sent_s = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"latencies_s": latencies, "statuses": statuses, "offered_rate": rate, "achieved_rate": n / sent_s,
            "loadgen_cpu_s": usage.ru_utime + usage.ru_stime}


def _loadgen(argv: list[str]) -> int:
    url, rate, seconds = argv[0], float(argv[1]), float(argv[2])
    sys.stdout.write(json.dumps(asyncio.run(_generate(url, rate, seconds, seed=7))) + "\n")
    return 0


# ---- servers ---------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(base: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    import httpx2

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx2.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not become healthy")


PEER_APP = '''
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
async def hook(request):
    return Response(status_code=202)
async def health(request):
    return JSONResponse({"ok": True})
app = Starlette(routes=[Route("/webhooks/hub", hook, methods=["POST"]), Route("/healthz", health)])
'''


def _server_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(name: str, cmd: list[str], env: dict, port: int, rate: float, seconds: float, work: pathlib.Path) -> dict:
    proc = subprocess.Popen(cmd, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(base, proc)
        cpu_before = _server_cpu(proc.pid)
        gen = subprocess.run([sys.executable, "-m", "benchmarks.service", "loadgen", f"{base}/webhooks/hub",
                              str(rate), str(seconds)], capture_output=True, text=True, check=True,
                             cwd=pathlib.Path(__file__).resolve().parents[1])
        server_cpu = _server_cpu(proc.pid) - cpu_before
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = json.loads(gen.stdout)
    lat = sorted(v for v in out.pop("latencies_s") if v == v)
    ms = [v * 1000 for v in lat]

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, int(round(p / 100 * (len(ms) - 1))))]

    return {"name": name, "requests": len(ms), "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
            "max_ms": ms[-1], "mean_ms": statistics.fmean(ms), "server_cpu_s": server_cpu, **out}


def ack_latency(*, rate: float, seconds: float, work: pathlib.Path) -> dict:
    env = {**os.environ, "GUARD_WEBHOOK_SECRET": SECRET}
    port = _free_port()
    guard_cmd = [sys.executable, "-m", "guard", "serve", "--role", "web", "--port", str(port),
                 "--db", str(work / "bench-serve.db")]
    guard = _measure("guard serve --role web (SQLite WAL)", guard_cmd, env, port, rate, seconds, work)
    (work / "peer_app.py").write_text(PEER_APP)
    peer_port = _free_port()
    peer_cmd = [sys.executable, "-m", "uvicorn", "peer_app:app", "--port", str(peer_port), "--no-access-log",
                "--log-level", "warning"]
    peer = _measure("bare Starlette 202 on uvicorn (peer)", peer_cmd, {**env, "PYTHONPATH": str(work)}, peer_port,
                    rate, seconds, work)
    import sqlalchemy as sa

    with sa.create_engine(f"sqlite:///{work / 'bench-serve.db'}").connect() as conn:
        jobs = conn.exec_driver_sql("SELECT count(*), sum(deliveries) FROM jobs").one()
    return {"guard": guard, "peer": peer, "p99_ratio_to_peer": guard["p99_ms"] / peer["p99_ms"],
            "goal_p99_ms": 20.0, "goal_met": guard["p99_ms"] <= 20.0,
            "jobs_stored": jobs[0], "deliveries_stored": jobs[1]}


# ---- audits per hour -------------------------------------------------------------------------------------------
def _build_model(kind: str, out: pathlib.Path, seed: int) -> pathlib.Path:
    from guard.testing import factory

    if kind == "tiny":
        return factory.make_model_dir("llama", out, seed=seed)
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.LlamaConfig(**LLAMA_100M)
    model = transformers.LlamaForCausalLM(config)
    return factory.save_model(model, out, max_shard_size="2GB")


def audits_per_hour(*, n: int, kind: str, work: pathlib.Path, probes: bool = True) -> dict:
    os.environ["HF_HUB_OFFLINE"] = "0"
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = False
    from guard.service.config import SandboxLimits, ServiceConfig
    from guard.service.executor import LocalExecutor
    from guard.service.store import JobKey, JobStore
    from guard.service.worker import Worker
    from guard.testing.fake_hub import FakeHub

    model = _build_model(kind, work / "model", seed=1)
    base = _build_model(kind, work / "base", seed=0)
    (model / "README.md").write_text("---\nbase_model: bench/base\n---\n# benchmark model\n")
    params = None
    with FakeHub() as hub:
        hub.push("bench/base", base)
        shas = []
        for i in range(n):
            (model / "README.md").write_text(f"---\nbase_model: bench/base\n---\n# benchmark model, commit {i}\n")
            shas.append(hub.push("bench/model", model))
        config = ServiceConfig(webhook_secret=SECRET, database=str(work / "audit.db"), work_dir=work,
                               hub={"endpoint": hub.endpoint, "token": "hf_fake_guard_token"},
                               sandbox=SandboxLimits(wall_s=3600),
                               trust={"default": {"probes": {"action": "warn" if probes else "off"}}})
        store = JobStore(config.database)
        worker = Worker(store=store, executor=LocalExecutor(limits=config.sandbox.model_dump(),
                                                            work_root=work / "audits"), config=config)
        walls, results = [], []
        for sha in shas:
            store.enqueue([JobKey("bench/model", "refs/heads/main", sha)])
            started = time.perf_counter()
            assert worker.run_once()
            walls.append(time.perf_counter() - started)
            job = store.jobs(limit=1)[0]
            assert job.state == "done", job.last_error
            results.append(json.loads(job.result))
        params = max(r["model"].get("parameter_count") or 0 for r in results)
        peer_walls = [_peer_fetch_and_load(hub.endpoint, sha, work / f"peer-{i}") for i, sha in enumerate(shas)]
    mean, peer_mean = statistics.fmean(walls), statistics.fmean(peer_walls)
    probe_rows = [next((c for c in r["checks"] if c["id"] == "probes"), {}) for r in results]
    return {"model": kind, "parameters": params, "audits": n, "probes": probes, "audit_wall_s": walls,
            "probes_status": [c.get("status") for c in probe_rows],
            "probes_s": [c.get("details", {}).get("seconds") for c in probe_rows],
            "audits_per_hour": 3600 / mean, "verdicts": [r["verdict"] for r in results],
            "audit_cpu_s": [r["resources"].get("cpu_s") for r in results],
            "audit_max_rss_bytes": [r["resources"].get("max_rss_bytes") for r in results],
            "timing": [r.get("timing") for r in results],
            "peer": "snapshot_download (model + base) + read every tensor with safetensors",
            "peer_wall_s": peer_walls, "ratio_to_peer": mean / peer_mean}


def _peer_fetch_and_load(endpoint: str, sha: str, dest: pathlib.Path) -> float:
    from huggingface_hub import snapshot_download
    from safetensors import safe_open

    started = time.perf_counter()
    for repo, rev in (("bench/model", sha), ("bench/base", "main")):
        path = pathlib.Path(snapshot_download(repo, revision=rev, cache_dir=dest, endpoint=endpoint, token=False))
        for shard in sorted(path.glob("*.safetensors")):
            with safe_open(str(shard), framework="pt") as f:
                for name in f.keys():
                    f.get_tensor(name)
    elapsed = time.perf_counter() - started
    shutil.rmtree(dest, ignore_errors=True)
    return elapsed


# ---- the audit's probes check on the zoo -----------------------------------------------------------------------
def zoo_probe_scores(*, seeds: list[int], calibration: bool, peers: bool) -> list[dict]:
    from attacks.backdoor.lm import build_amplified_expert, build_badnets_expert
    from guard.service.audit import AuditRequest, StageAuditor
    from guard.service.trust import RepoTrust
    from guard.testing.zoo.lm import build_family

    rows = []
    for seed in seeds:
        family = build_family("small", seed=seed)
        badnets = build_badnets_expert(family, task="sort")
        cases = {f"clean:{task}": path for task, path in family.experts.items()}
        cases.update(badnets=badnets, amplified=build_amplified_expert(family, backdoored=badnets, task="sort"))
        with tempfile.TemporaryDirectory(prefix="guard-zoo-probes-") as tmp:
            probes = {"action": "warn"}
            if calibration:
                probes["calibration"] = str(_lm_calibration(family, pathlib.Path(tmp) / "calibration.safetensors"))
            trust = RepoTrust.model_validate({"probes": probes})
            for case, path in cases.items():
                started = time.process_time()
                # the trust entry's peers: every clean expert of the family but the upload itself
                others = tuple((f"zoo/clean:{t}", pathlib.Path(p), None) for t, p in family.experts.items()
                               if f"clean:{t}" != case) if peers else ()
                result = StageAuditor().audit(AuditRequest(repo=f"zoo/{case}", ref="refs/heads/main", sha="0" * 40,
                                                           model_dir=pathlib.Path(path), trust=trust, peers=others,
                                                           base_dir=pathlib.Path(family.base), base_ref="zoo/base"))
                probe = next(c for c in result["checks"] if c["id"] == "probes")
                scores = {r["probe"]: (r["score"], r["threshold"]) for r in probe["details"].get("probes", [])
                          if r["status"] == "ran"}
                rows.append({"seed": seed, "case": case, "attacked": not case.startswith("clean"),
                             "status": probe["status"], "scores": scores,
                             "cpu_s": round(time.process_time() - started, 1)})
    return rows


def _lm_calibration(family, out: pathlib.Path) -> pathlib.Path:
    """16 unlabeled prompts of each task's calibration split (what a hub operator could hold), right padded."""
    import torch
    from safetensors.torch import save_file

    from guard.testing.zoo.lm.vocab import PAD_ID

    parts = [family.calibration_inputs(task) for task in sorted(family.experts)]
    width = max(p["input_ids"].shape[1] for p in parts)

    def padded(key: str, value: int) -> torch.Tensor:
        return torch.cat([torch.nn.functional.pad(p[key][:16], (0, width - p[key].shape[1]), value=value)
                          for p in parts])

    save_file({"input_ids": padded("input_ids", PAD_ID), "attention_mask": padded("attention_mask", 0)}, out)
    return out


def _zoo_probes_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="the audit's probes check on the small LM zoo, base only")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--calibration", action="store_true", help="give the audit calibration prompts")
    parser.add_argument("--peers", action="store_true", help="the other clean experts as the trust entry's peers")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = zoo_probe_scores(seeds=[int(s) for s in args.seeds.split(",")], calibration=args.calibration,
                            peers=args.peers)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    names = sorted({name for row in rows for name in row["scores"]})
    print("| seed | case | probes check | " + " | ".join(names) + " | CPU s |")
    print("|---" * (len(names) + 4) + "|")
    for row in rows:
        cells = []
        for name in names:
            score, threshold = row["scores"].get(name, (None, None))
            flag = " **FLAG**" if score is not None and score >= threshold else ""
            cells.append("-" if score is None else f"{score:.3g} / {threshold:g}{flag}")
        print(f"| {row['seed']} | {row['case']} | {row['status']} | " + " | ".join(cells) + f" | {row['cpu_s']} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["loadgen"]:
        return _loadgen(argv[1:])
    if argv[:1] == ["zoo-probes"]:
        return _zoo_probes_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="50 req/s for 2 s; one audit of a tiny model (tests)")
    parser.add_argument("--rate", type=float, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--audits", type=int, default=None)
    parser.add_argument("--skip-audits", action="store_true")
    parser.add_argument("--no-probes", action="store_true", help="audits with the probe stage off")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    mode = dict(SMALL if args.small else FULL)
    for key in ("rate", "seconds", "audits"):
        if getattr(args, key) is not None:
            mode[key] = getattr(args, key)
    with tempfile.TemporaryDirectory(prefix="guard-bench-service-") as tmp:
        work = pathlib.Path(tmp)
        (work / "ack").mkdir()
        report = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                              "load_avg_1m_at_start": os.getloadavg()[0]}, "mode": mode,
                  "ack": ack_latency(rate=mode["rate"], seconds=mode["seconds"], work=work / "ack")}
        if not args.skip_audits:
            (work / "audit").mkdir()
            report["audits"] = audits_per_hour(n=mode["audits"], kind=mode["model"], work=work / "audit",
                                                 probes=not args.no_probes)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        g, p = report["ack"]["guard"], report["ack"]["peer"]
        print(f"ack @ {mode['rate']:g} req/s for {mode['seconds']:g} s (open loop, second process):")
        for row in (g, p):
            print(f"  {row['name']:<40} p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms  max "
                  f"{row['max_ms']:.1f} ms  statuses {row['statuses']}  server CPU {row['server_cpu_s']:.1f} s")
        print(f"  p99 ratio to peer {report['ack']['p99_ratio_to_peer']:.2f}; goal p99 <= 20 ms: "
              f"{'met' if report['ack']['goal_met'] else 'NOT met'}")
        if "audits" in report:
            a = report["audits"]
            print(f"audits of a {a['parameters']:,}-parameter model: {a['audits_per_hour']:.1f} per hour "
                  f"(wall {', '.join(f'{w:.1f}' for w in a['audit_wall_s'])} s; peer fetch+load "
                  f"{', '.join(f'{w:.1f}' for w in a['peer_wall_s'])} s; ratio {a['ratio_to_peer']:.2f}); probes "
                  f"{'on' if a['probes'] else 'off'}: {a['probes_status']}, {a['probes_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
