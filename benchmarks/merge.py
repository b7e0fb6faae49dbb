"""Benchmark: guard's streaming merge against the mergekit CLI (mergekit-yaml 0.1.5), one paired run.

    python -m benchmarks.merge                  # three ~311 MB bf16 Llama-shaped models, 3 rounds
    python -m benchmarks.merge --rounds 5
    python -m benchmarks.merge --device cuda    # guard's merge on the GPU too (end to end from disk)
    python -m benchmarks.merge --small          # seconds; what tests/benchmarks/test_merge_small.py runs
    python -m benchmarks.merge --gate-only      # the gate's overhead: guard's plain ties merge and the gates, no mergekit
    python -m benchmarks.merge verify-cost KEY.pub DIR...   # the gate's verification: hash only, verified read, copy

Models (generated, nothing downloaded): a random-init base `LlamaConfig(hidden 1024, 8 layers, 16 heads,
4 kv heads, intermediate 2816, vocab 32000, untied lm_head)` = 155.7M parameters in bf16, saved by
transformers in ~100 MB shards, and two synthetic fine-tunes (every parameter + N(0, (0.05 std)^2),
`guard.testing.factory.synthetic_fine_tune`); each is signed with a fresh key (untimed).
Per round, interleaved, each a fresh process measured with wait4 (wall, user+sys CPU, peak RSS):
  mergekit-yaml task_arithmetic, guard task_arithmetic (plain merge: the engine on the unverified
  directories, `python -m benchmarks.merge plain`), mergekit-yaml ties, guard ties, and the gate:
  `guard safe-merge` with probes off, i.e. the strict policy without MergeLock detection (probe P1):
  artifact checks, signature verification of every input (guard.signing.open_verified_model: re-hashed,
  read in place when nobody else can write the inputs), the merge, provenance and OMS signature of the
  output, fsync. Once, in the last round: `guard safe-merge` under the shipped
  strict policy, MergeLock detection included.
Both sides read the same config (weight 0.5 each, density 0.5, dtype bfloat16); mergekit with
`--no-copy-tokenizer --random-seed 42`. Inputs are read once before the rounds (warm page cache) and
`sync` runs untimed before each command. Reports medians, ratios (throughput = input bytes / wall
seconds), the output difference against mergekit, and the load average (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

SIZES = {
    "small": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=1000),
    "bench": dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=8, num_attention_heads=16,
                  num_key_value_heads=4, vocab_size=32000),  # 311.5 MB bf16, largest tensor 65.5 MB
}
_REPO = pathlib.Path(__file__).resolve().parents[1]
_BIN = pathlib.Path(sys.executable).parent
PASSPHRASE = "benchmark-passphrase"
_ENV = {"PYTHONPATH": str(_REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error",
        "PATH": f"{_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}", "GUARD_KEY_PASSPHRASE": PASSPHRASE,
        "HOME": os.environ.get("HOME", "/tmp"), "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
PARAMS = {"task_arithmetic": {"weight": 0.5}, "ties": {"weight": 0.5, "density": 0.5}}

_BUILD = """
import json, sys, torch, transformers
from guard.testing.factory import synthetic_fine_tune
config = transformers.LlamaConfig(**json.loads(sys.argv[1]), max_position_embeddings=256, tie_word_embeddings=False)
torch.manual_seed(0)
model = transformers.LlamaForCausalLM(config).to(torch.bfloat16).eval()
synthetic_fine_tune(model, seed=int(sys.argv[3]))
model.save_pretrained(sys.argv[2], max_shard_size="100MB")
"""


def plain_merge(config_path: str, out: str, device: str = "cpu") -> None:
    """The engine alone on unverified directories (what the ratio against mergekit measures)."""
    from guard.artifacts import open_model_dir
    from guard.merge.config import load_merge_config
    from guard.merge.engine import MergeJob, run_merge

    config = load_merge_config(config_path)
    job = MergeJob.from_config(config, base=open_model_dir(config.base_model),
                               models=[open_model_dir(m.model) for m in config.experts()], device=device)
    print(json.dumps(run_merge(job, out).to_json()))


def verify_cost(public_key: str, dirs: list[str], rounds: int = 2) -> dict:
    """CPU and wall seconds to verify signed model directories, interleaved: hashing only (`verify_model`),
    the verified-bytes path the gate reads through (`open_verified_model`: in place when nobody else can
    change the files), and the same forced to its private copy (`copy=True`: hash + copy)."""
    import resource

    from guard.signing import load_verifier, open_verified_model, verify_model

    verifier = load_verifier(public_key=public_key)

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    results: dict[str, list] = {"hash only": [], "open_verified_model": [], "hash + copy": []}
    reads = set()
    for _ in range(rounds):
        for label in results:
            c0, w0 = cpu(), time.perf_counter()
            for d in dirs:
                if label == "hash only":
                    verify_model(d, verifier=verifier)
                else:
                    with open_verified_model(d, verifier=verifier, copy=label == "hash + copy") as model:
                        reads.add(model.verification.read)
            results[label].append({"cpu": round(cpu() - c0, 3), "wall": round(time.perf_counter() - w0, 3)})
    return {"dirs": dirs, "bytes": dir_bytes(pathlib.Path(d) for d in dirs), "runs": results,
            "reads": sorted(reads), "load_average": os.getloadavg()}


def build_models(size: str, root: pathlib.Path) -> list[pathlib.Path]:
    dirs = []
    for name, seed in (("base", 0), ("ft1", 1), ("ft2", 2)):
        out = root / name
        subprocess.run([sys.executable, "-c", _BUILD, json.dumps(SIZES[size]), str(out), str(seed)], check=True,
                       env=_ENV, cwd=_REPO, capture_output=True)
        dirs.append(out)
    return dirs


def sign_models(dirs: list[pathlib.Path], root: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    from guard.signing import keys, load_signer, sign_model
    from guard.artifacts.atomic import write_atomically

    key = keys.generate_private_key("p256")
    private, public = root / "publisher.key", root / "publisher.pub"
    write_atomically(private, keys.private_key_pem(key, PASSPHRASE.encode()).decode("ascii"), mode=0o600)
    write_atomically(public, keys.public_key_pem(key.public_key()).decode("ascii"))
    signer = load_signer(key=private, key_passphrase=PASSPHRASE.encode())
    for d in dirs:
        sign_model(d, signer=signer)
    return private, public


def write_policy_without_detection(path: pathlib.Path) -> pathlib.Path:
    """policies/strict.yaml with MergeLock detection off (the gate "with probes off")."""
    import yaml

    from guard.policy.load import policies_dir

    raw = yaml.safe_load((policies_dir() / "strict.yaml").read_text())
    raw.update(name="strict-without-mergelock-detection", required_checks=["artifacts", "signature"],
               mergelock={"action": "off"})
    path.write_text(yaml.safe_dump(raw))
    return path


def write_config(method: str, dirs: list[pathlib.Path], path: pathlib.Path) -> pathlib.Path:
    import yaml

    base, *experts = dirs
    config = {"merge_method": method, "base_model": str(base), "dtype": "bfloat16",
              "models": [{"model": str(e), "parameters": PARAMS[method]} for e in experts]}
    path.write_text(yaml.safe_dump(config))
    return path


def dir_bytes(paths) -> int:
    return sum(p.stat().st_size for d in paths for p in d.rglob("*.safetensors"))


def _warm(dirs) -> None:
    for d in dirs:
        for p in d.rglob("*"):
            if p.is_file():
                with open(p, "rb") as f:
                    while f.read(64 << 20):
                        pass


def timed(argv: list[str]) -> dict:
    """Run argv in a fresh process: wall seconds, user+sys CPU seconds, peak RSS bytes (wait4)."""
    subprocess.run(["sync"], check=True)
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=_ENV, cwd=_REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    stdout, stderr = proc.stdout.read().decode(), proc.stderr.read().decode()
    proc.stdout.close()
    proc.stderr.close()
    if code != 0:
        raise RuntimeError(f"{argv[:5]} failed ({code}): {stderr[-2000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss * 1024, "stdout": stdout}


def _tensors(path: pathlib.Path) -> dict:
    from guard.artifacts import open_model_dir

    return dict(open_model_dir(path).iter_tensors())


def _difference(ours: pathlib.Path, theirs: pathlib.Path) -> dict:
    import torch

    a, b = _tensors(ours), _tensors(theirs)
    differing = sum(int((a[k].view(torch.int16) != b[k].view(torch.int16)).sum()) for k in a)
    total = sum(t.numel() for t in a.values())
    return {"same_names": sorted(a) == sorted(b), "differing_elements": differing, "elements": total,
            "differing_fraction": differing / total}


def run(*, size: str = "bench", rounds: int = 3, device: str = "cpu", workdir: pathlib.Path | None = None,
        peers: bool = True) -> dict:
    """`peers=False`: only guard's plain ties merge and the two gates (the gate's overhead, without mergekit)."""
    with tempfile.TemporaryDirectory(dir=workdir, prefix="guard-merge-bench-") as tmp:
        root = pathlib.Path(tmp)
        dirs = build_models(size, root)
        private, public = sign_models(dirs, root)
        input_bytes = dir_bytes(dirs)
        configs = {m: write_config(m, dirs, root / f"{m}.yml") for m in PARAMS}
        no_detection = write_policy_without_detection(root / "strict-without-detection.yaml")
        runs: dict[str, list[dict]] = {}
        differences = {}

        def once(label: str, argv: list[str], out: pathlib.Path, *, keep: bool = False) -> None:
            runs.setdefault(label, []).append(timed(argv))
            if not keep:
                shutil.rmtree(out)

        _warm(dirs)
        for i in range(rounds):
            last = i == rounds - 1
            for method in PARAMS if peers else ("ties",):
                mk_out, g_out = root / f"mk-{method}", root / f"g-{method}"
                if not peers:
                    once(f"guard {method}", [sys.executable, "-m", "benchmarks.merge", "plain", str(configs[method]),
                                             str(g_out)], g_out)
                    continue
                once(f"mergekit {method}", ["mergekit-yaml", str(configs[method]), str(mk_out), "--no-copy-tokenizer",
                                            "--random-seed", "42"], mk_out, keep=last)
                once(f"guard {method}", [sys.executable, "-m", "benchmarks.merge", "plain", str(configs[method]),
                                         str(g_out)], g_out, keep=last)
                if device != "cpu":
                    gpu_out = root / f"gpu-{method}"
                    once(f"guard {method} {device}", [sys.executable, "-m", "benchmarks.merge", "plain",
                                                      str(configs[method]), str(gpu_out), "--device", device],
                         gpu_out)
                if last:
                    differences[method] = _difference(g_out, mk_out)
                    shutil.rmtree(mk_out)
                    shutil.rmtree(g_out)
            gate = [sys.executable, "-m", "guard", "safe-merge", str(configs["ties"]), "--out", str(root / "gate"),
                    "--key", str(public), "--sign-key", str(private), "--json"]
            once("guard safe-merge ties", gate + ["--policy", str(no_detection)], root / "gate")
            if last:
                once("guard safe-merge ties, strict with MergeLock detection", gate, root / "gate")
    med = {label: {k: statistics.median(r[k] for r in rs) for k in ("wall", "cpu", "rss")} for label, rs in runs.items()}
    report = {
        "size": size, "rounds": rounds, "input_bytes": input_bytes, "device": device,
        "medians": med, "all_wall_seconds": {label: [round(r["wall"], 3) for r in rs] for label, rs in runs.items()},
        "throughput_bytes_per_s": {label: input_bytes / m["wall"] for label, m in med.items()},
        "gate_over_plain_ties": med["guard safe-merge ties"]["wall"] / med["guard ties"]["wall"],
        "gate_over_plain_ties_cpu": med["guard safe-merge ties"]["cpu"] / med["guard ties"]["cpu"],
        "strict_gate_over_plain_ties": (med["guard safe-merge ties, strict with MergeLock detection"]["wall"]
                                        / med["guard ties"]["wall"]),
        "strict_gate_over_plain_ties_cpu": (med["guard safe-merge ties, strict with MergeLock detection"]["cpu"]
                                            / med["guard ties"]["cpu"]),
        "load_average": os.getloadavg(), "cpus": os.cpu_count(),
    }
    if not peers:
        return report
    report.update({
        "ratio_ties": med["mergekit ties"]["wall"] / med["guard ties"]["wall"],
        "ratio_task_arithmetic": med["mergekit task_arithmetic"]["wall"] / med["guard task_arithmetic"]["wall"],
        "rss_ratio_ties": med["guard ties"]["rss"] / med["mergekit ties"]["rss"],
        "rss_ratio_task_arithmetic": med["guard task_arithmetic"]["rss"] / med["mergekit task_arithmetic"]["rss"],
        "difference_vs_mergekit": differences,
    })
    return report


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "verify-cost":
        print(json.dumps(verify_cost(argv[1], argv[2:]), indent=2))
        return
    if argv and argv[0] == "plain":
        parser = argparse.ArgumentParser(prog="benchmarks.merge plain")
        parser.add_argument("config")
        parser.add_argument("out")
        parser.add_argument("--device", default="cpu")
        args = parser.parse_args(argv[1:])
        plain_merge(args.config, args.out, args.device)
        return
    parser = argparse.ArgumentParser(prog="benchmarks.merge", description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny models, one round (tests)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--workdir", type=pathlib.Path, default=None)
    parser.add_argument("--gate-only", action="store_true",
                        help="guard's plain ties merge and the two gates only (the gate's overhead; no mergekit)")
    args = parser.parse_args(argv)
    report = run(size="small" if args.small else "bench", rounds=1 if args.small else args.rounds, device=args.device,
                 workdir=args.workdir, peers=not args.gate_only)
    print(json.dumps(report, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
