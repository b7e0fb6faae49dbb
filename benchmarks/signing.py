"""Benchmark: `guard sign` / `guard verify` against the `model_signing` 1.1.1 CLI, in the same run.

Builds a synthetic sharded model (default 2 GiB in 4 shards) in a temp dir under /tmp, warms the page
cache, then runs interleaved rounds of:
  model_signing sign key / verify key     (its CLI: sha256, one digest per file, thread pool)
  guard sign / verify --hash sha256       (default: files serialization, OMS-compatible)
  guard sign / verify --hash blake3
  hashlib sha256 over the same files with 2 threads, in-process, no start-up (the two-thread limit)
Every command is a fresh process, as a user runs it, so start-up costs count. Reports the median wall
time per operation, its CPU time (user + sys: the machine may be shared), the peak RSS of each
command's own process (the highest over the rounds; both measured by a small middle process, see timed), throughput (bytes / median wall), and the
ratios the acceptance criteria name:
  sha256: guard / model_signing >= 1.2, guard / hashlib-2-thread >= 0.85; blake3: guard / model_signing >= 3;
  peak RSS of every guard sign / verify < 300 MB.
It also records whether `guard verify` imported torch (it must not).

    python -m benchmarks.signing                 # 2 GiB, 4 shards, 5 rounds
    python -m benchmarks.signing --small         # 16 MiB, 1 round: the mode tests exercise
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import mmap
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
PASSPHRASE = "benchmark-passphrase"
TARGETS = {"sha256_vs_model_signing": 1.2, "sha256_vs_hashlib_2thread": 0.85, "blake3_vs_model_signing": 3.0,
           "guard_peak_rss_mb": 300}


def build_model(root: pathlib.Path, *, total_bytes: int, shards: int) -> int:
    root.mkdir(parents=True)
    per_shard = total_bytes // shards
    block = 64 * 1024 * 1024
    for i in range(1, shards + 1):
        with open(root / f"model-{i:05d}-of-{shards:05d}.safetensors", "wb") as handle:
            left = per_shard
            while left:
                n = min(block, left)
                handle.write(os.urandom(n))
                left -= n
    (root / "config.json").write_text('{"model_type": "llama", "architectures": ["LlamaForCausalLM"]}')
    return sum(p.stat().st_size for p in root.iterdir())


def warm(root: pathlib.Path) -> None:
    for path in sorted(root.iterdir()):
        with open(path, "rb") as handle:
            while handle.read(16 * 1024 * 1024):
                pass


def hashlib_two_threads(root: pathlib.Path) -> float:
    """sha256 of every file, 2 threads, mmap (no copies), in-process: the two-core hashlib limit."""
    def one(path: pathlib.Path) -> str:
        hasher = hashlib.sha256()
        size = path.stat().st_size
        if size:
            with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                hasher.update(memoryview(mm))
        return hasher.hexdigest()

    files = sorted(root.iterdir(), key=lambda p: -p.stat().st_size)
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(one, files))
    return time.perf_counter() - start


@dataclasses.dataclass(frozen=True)
class Measured:
    seconds: float  # wall
    cpu_seconds: float  # user + sys of that process
    max_rss_bytes: int  # its own peak resident set


# A small middle process runs the command and reports its child's usage. Measured straight from here,
# ru_maxrss would be wrong: Linux carries the forking parent's high-water RSS (this process built the
# model and mapped it for the hashlib reference: over 1 GB) into the child's ru_maxrss across exec.
_MEASURE = (
    "import json, resource, subprocess, sys, time\n"
    "start = time.perf_counter()\n"
    "rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
    "wall = time.perf_counter() - start\n"
    "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(json.dumps({'rc': rc, 'wall': wall, 'cpu': u.ru_utime + u.ru_stime, 'rss': u.ru_maxrss * 1024}))\n"
)


def timed(cmd: list[str], env: dict[str, str]) -> Measured:
    proc = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], capture_output=True, text=True, env=env)
    try:
        usage = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(f"{' '.join(cmd)}: no measurement ({proc.stderr.strip()[-500:]})") from None
    if usage["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({usage['rc']}): {proc.stderr.strip()[-500:]}")
    return Measured(usage["wall"], usage["cpu"], usage["rss"])


def guard_verify_imports_torch(model: pathlib.Path, sig: pathlib.Path, pub: pathlib.Path, env: dict) -> bool:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "guard", "verify", str(model), "--signature",
                           str(sig), "--key", str(pub)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-500:])
    return any(line.split("|")[-1].strip().split(".")[0] == "torch" for line in proc.stderr.splitlines()
               if line.startswith("import time:"))


def run(*, total_bytes: int, shards: int, rounds: int, workdir: str | None = None) -> dict:
    from cryptography.hazmat.primitives import serialization

    from guard.signing import keys

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="guard-bench-signing-", dir=workdir))
    try:
        model = tmp / "model"
        size = build_model(model, total_bytes=total_bytes, shards=shards)
        key = keys.generate_private_key("p256")
        (tmp / "enc.key").write_bytes(keys.private_key_pem(key, PASSPHRASE.encode()))
        (tmp / "plain.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
        (tmp / "ec.pub").write_bytes(keys.public_key_pem(key.public_key()))
        env = dict(os.environ, GUARD_KEY_PASSPHRASE=PASSPHRASE)
        env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        py = sys.executable
        ms_sig, g_sig, b_sig = tmp / "ms.sig", tmp / "guard.sig", tmp / "guard-b3.sig"
        ops = {
            "model_signing sign": [py, "-m", "model_signing", "sign", "key", str(model), "--private_key",
                                   str(tmp / "plain.key"), "--signature", str(ms_sig)],
            "model_signing verify": [py, "-m", "model_signing", "verify", "key", str(model), "--public_key",
                                     str(tmp / "ec.pub"), "--signature", str(ms_sig)],
            "guard sign sha256": [py, "-m", "guard", "sign", str(model), "--key", str(tmp / "enc.key"), "--signature",
                                  str(g_sig)],
            "guard verify sha256": [py, "-m", "guard", "verify", str(model), "--key", str(tmp / "ec.pub"),
                                    "--signature", str(g_sig)],
            "guard sign blake3": [py, "-m", "guard", "sign", str(model), "--key", str(tmp / "enc.key"), "--hash",
                                  "blake3", "--signature", str(b_sig)],
            "guard verify blake3": [py, "-m", "guard", "verify", str(model), "--key", str(tmp / "ec.pub"),
                                    "--signature", str(b_sig)],
        }
        warm(model)
        for cmd in ops.values():  # one untimed pass: caches, .pyc files, signatures for the verify steps
            timed(cmd, env)
        times: dict[str, list[float]] = {name: [] for name in [*ops, "hashlib sha256 2 threads"]}
        cpu: dict[str, list[float]] = {name: [] for name in ops}
        peak_rss: dict[str, int] = dict.fromkeys(ops, 0)
        for _ in range(rounds):
            for name, cmd in ops.items():
                run_ = timed(cmd, env)
                times[name].append(run_.seconds)
                cpu[name].append(run_.cpu_seconds)
                peak_rss[name] = max(peak_rss[name], run_.max_rss_bytes)
            times["hashlib sha256 2 threads"].append(hashlib_two_threads(model))
        medians = {name: statistics.median(values) for name, values in times.items()}
        throughput = {name: size / seconds / 1e9 for name, seconds in medians.items()}
        ratios = {
            "sign sha256 vs model_signing": medians["model_signing sign"] / medians["guard sign sha256"],
            "verify sha256 vs model_signing": medians["model_signing verify"] / medians["guard verify sha256"],
            "sign sha256 vs hashlib 2 threads": medians["hashlib sha256 2 threads"] / medians["guard sign sha256"],
            "verify sha256 vs hashlib 2 threads": medians["hashlib sha256 2 threads"] / medians["guard verify sha256"],
            "sign blake3 vs model_signing": medians["model_signing sign"] / medians["guard sign blake3"],
            "verify blake3 vs model_signing": medians["model_signing verify"] / medians["guard verify blake3"],
        }
        return {
            "model_bytes": size, "files": shards + 1, "rounds": rounds, "cpu_count": os.cpu_count(),
            "median_seconds": medians, "all_seconds": times, "throughput_gb_per_s": throughput, "ratios": ratios,
            "median_cpu_seconds": {name: statistics.median(values) for name, values in cpu.items()},
            "peak_rss_mb": {name: rss / 1e6 for name, rss in peak_rss.items()},
            "guard_peak_rss_mb": max(rss for name, rss in peak_rss.items() if name.startswith("guard")) / 1e6,
            "targets": TARGETS, "guard_verify_imports_torch": guard_verify_imports_torch(model, g_sig, tmp / "ec.pub",
                                                                                         env),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--small", action="store_true", help="16 MiB, 2 shards, 1 round (for tests)")
    parser.add_argument("--workdir", default=None, help="parent of the temp dir (default: the system temp dir)")
    parser.add_argument("--out", type=pathlib.Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.small:
        args.size_mib, args.shards, args.rounds = 16, 2, 1
    report = run(total_bytes=args.size_mib * 1024 * 1024, shards=args.shards, rounds=args.rounds,
                 workdir=args.workdir)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
