"""Benchmark: `guard protect` end to end (the CLI a user runs) against `cp -r` of the same directory,
measured in the same run, several rounds each, medians.

    python -m benchmarks.protect                 # 0.6 GB and 2.0 GB float32 Llama-style models
    python -m benchmarks.protect --sizes medium  # one size (small | medium | large)
    python -m benchmarks.protect --small         # seconds; what tests/lock/test_benchmark.py runs
    python -m benchmarks.protect --precision     # the self-check error per dtype and bound (docs/lock.md)
    python -m benchmarks.protect --roundtrip     # float32 unlock round-trip error per bound (docs/lock.md)

Per size: cp -r seconds and `guard protect SRC --out OUT --lock-key K --unsigned` seconds (rounds
interleaved; the source is read once beforehand so both sides start from a warm page cache, and
`sync` runs untimed before every timed command so neither inherits the other's dirty pages), their
ratio (throughput of protect / throughput of cp; goal >= 0.5), the same against `cp -r` plus an fsync
of the copy (protect fsyncs its output before renaming it into place; cp -r does not), one signed run
(`--sign-key`) reported separately, the peak RSS of the protect process (wait4) next to the largest
tensor, and the fixed cost: the same command on a tiny model (interpreter, torch and transformers
imports, config, two model builds).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from guard.artifacts.writer import fsync_tree

SIZES = {
    "small": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=1000),
    "medium": dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=8, num_attention_heads=16,
                   num_key_value_heads=4, vocab_size=32000),  # 623 MB, largest tensor 131 MB
    "large": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=8, num_attention_heads=16,
                  num_key_value_heads=4, vocab_size=32000),  # 2.0 GB, largest tensor 262 MB
}
_REPO = pathlib.Path(__file__).resolve().parents[1]
_ENV = {"PYTHONPATH": str(_REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GUARD_KEY_PASSPHRASE": "benchmark-passphrase",
        "HOME": os.environ.get("HOME", "/tmp")}

_PHASES = """
import json, sys
from guard.lock.keys import LockKey
from guard.lock.protect import protect_model
result = protect_model(sys.argv[1], sys.argv[2], key=LockKey(bytes(32)))
print(json.dumps({"phases": result.seconds, "error": result.selfcheck.max_relative_error,
                  "mode": result.selfcheck.mode, "peak_tensor_bytes": result.selfcheck.peak_tensor_bytes}))
"""


def make_model(size: str, out: pathlib.Path) -> pathlib.Path:
    """A random float32 Llama-style model saved by transformers (built in a child process, so that the
    benchmark process itself stays small)."""
    code = ("import sys, json, torch, transformers\n"
            "torch.manual_seed(0)\n"
            "config = transformers.LlamaConfig(**json.loads(sys.argv[1]), max_position_embeddings=256)\n"
            "with torch.no_grad():\n"
            "    transformers.LlamaForCausalLM(config).eval().save_pretrained(sys.argv[2])\n")
    subprocess.run([sys.executable, "-c", code, json.dumps(SIZES[size]), str(out)], check=True, env=_ENV,
                   cwd=_REPO, capture_output=True)
    return out


def dir_bytes(path: pathlib.Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def largest_tensor_bytes(path: pathlib.Path) -> int:
    from guard.artifacts import open_model_dir

    return max(t.nbytes for t in open_model_dir(path).tensors.values())


def _timed(argv: list[str]) -> tuple[float, int]:
    """Run argv; (wall seconds, peak RSS bytes of that process) via wait4."""
    subprocess.run(["sync"], check=True)
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=_ENV, cwd=_REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:4]} failed ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
    proc.stderr.close()
    return seconds, usage.ru_maxrss * 1024


def _warm(path: pathlib.Path) -> None:
    for p in path.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                while f.read(64 << 20):
                    pass


def _protect_argv(src, out, key, *extra) -> list[str]:
    return [sys.executable, "-m", "guard", "protect", str(src), "--out", str(out), "--lock-key", str(key), *extra]


def run(*, size: str = "medium", rounds: int = 3, workdir: pathlib.Path | None = None) -> dict:
    import shutil

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        root = pathlib.Path(tmp)
        src = make_model(size, root / "model")
        key = root / "lock.key"
        subprocess.run([sys.executable, "-m", "guard", "lock-keygen", str(key)], check=True, env=_ENV, cwd=_REPO,
                       capture_output=True)
        nbytes = dir_bytes(src)
        _warm(src)
        cp_s, cp_sync_s, protect_s, rss = [], [], [], []
        for _ in range(rounds):
            seconds, _ = _timed(["cp", "-r", str(src), str(root / "copy")])
            cp_s.append(seconds)
            shutil.rmtree(root / "copy")
            subprocess.run(["sync"], check=True)
            started = time.perf_counter()
            subprocess.run(["cp", "-r", str(src), str(root / "copy")], check=True)
            fsync_tree(root / "copy")
            cp_sync_s.append(time.perf_counter() - started)
            shutil.rmtree(root / "copy")
            seconds, peak = _timed(_protect_argv(src, root / "protected", key, "--unsigned"))
            protect_s.append(seconds)
            rss.append(peak)
            shutil.rmtree(root / "protected")
        sign_key = root / "sign.key"
        subprocess.run([sys.executable, "-m", "guard", "keygen", str(sign_key)], check=True, env=_ENV, cwd=_REPO,
                       capture_output=True)
        signed_s, _ = _timed(_protect_argv(src, root / "signed", key, "--sign-key", str(sign_key)))
        shutil.rmtree(root / "signed")
        child = subprocess.run([sys.executable, "-c", _PHASES, str(src), str(root / "phases")], check=True,
                               capture_output=True, text=True, cwd=_REPO, env=_ENV)
        phases = json.loads(child.stdout.strip().splitlines()[-1])
        largest = largest_tensor_bytes(src)
    cp, cp_sync, protect = statistics.median(cp_s), statistics.median(cp_sync_s), statistics.median(protect_s)
    return {
        "size": size, "model_bytes": nbytes, "largest_tensor_bytes": largest, "rounds": rounds,
        "cp_seconds": cp, "cp_seconds_all": cp_s, "cp_bytes_per_s": nbytes / cp,
        "protect_seconds": protect, "protect_seconds_all": protect_s, "protect_bytes_per_s": nbytes / protect,
        "ratio_protect_over_cp": cp / protect,
        "cp_fsync_seconds": cp_sync, "ratio_protect_over_cp_fsync": cp_sync / protect,
        "protect_signed_seconds": signed_s,
        "peak_rss_bytes": max(rss), "peak_rss_over_largest_tensor": max(rss) / largest,
        "phases_seconds_in_process": phases["phases"], "selfcheck_error": phases["error"],
        "selfcheck_mode": phases["mode"], "selfcheck_peak_tensor_bytes": phases["peak_tensor_bytes"],
        "load_average": os.getloadavg(),
    }


def fixed_cost(*, rounds: int = 3, workdir: pathlib.Path | None = None) -> dict:
    """`guard protect` on the tiny model: what every invocation pays whatever the model size."""
    report = run(size="small", rounds=rounds, workdir=workdir)
    return {"protect_seconds": report["protect_seconds"], "protect_seconds_all": report["protect_seconds_all"],
            "model_bytes": report["model_bytes"], "peak_rss_bytes": report["peak_rss_bytes"]}


def precision(*, bounds=(2.0, 8.0, 16.0), families=None) -> dict:
    """Max relative logit error of protected vs original, per bound and stored dtype, over the factory's
    families and the real MiniLM (probe: guard.lock.selfcheck's batch, run in the stored dtype)."""
    import torch
    import transformers

    from guard.lock.keys import LockKey
    from guard.lock.selfcheck import probe_inputs
    from guard.lock.state import protect_state
    from guard.testing import factory

    key = LockKey(bytes(range(32))).for_run(bytes(32))
    families = families or (*factory.ALL_FAMILIES, "minilm")

    def output(model, inputs):
        with torch.no_grad():
            out = model(**inputs)
        return (out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state).double()

    table: dict = {}
    for bound in bounds:
        for dtype in (torch.float32, torch.bfloat16, torch.float16):
            errors = {}
            for family in families:
                if family == "minilm":
                    model = transformers.BertModel.from_pretrained(factory.minilm_dir())
                else:
                    model = factory.build_model(family)
                model = model.to(dtype).eval()
                inputs = probe_inputs(model.config)
                if "pixel_values" in inputs:
                    inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
                ref = output(model, inputs)
                locked = type(model)(model.config).to(dtype).eval()
                locked.load_state_dict(protect_state(model.state_dict(), config=model.config, key=key, bound=bound))
                errors[family] = float((output(locked, inputs) - ref).abs().max() / ref.abs().max())
            worst = max(errors, key=errors.get)
            table[f"bound {bound:g} {str(dtype).removeprefix('torch.')}"] = {
                "max": errors[worst], "worst_family": worst, "minilm": errors.get("minilm"), "per_family": errors}
    return table


def roundtrip(*, bounds=(2.0, 8.0, 16.0), families=None) -> dict:
    """float32 unlock(protect(W)) against W, per bound: the worst relative Frobenius error of any tensor,
    over the factory's families plus GPT-J (protect applies the transforms in float32, unlock in float64)."""

    from guard.lock.keys import LockKey
    from guard.lock.state import protect_state
    from tests.lock.conftest import LOCK_FAMILIES, build

    key = LockKey(bytes(range(32))).for_run(bytes(32))
    table: dict = {}
    for bound in bounds:
        errors = {}
        for family in families or LOCK_FAMILIES:
            model = build(family)
            state = model.state_dict()
            back = protect_state(protect_state(state, config=model.config, key=key, bound=bound),
                                 config=model.config, key=key, bound=bound, inverse=True)
            errors[family] = max(float((back[k] - v).norm() / v.norm()) for k, v in state.items()
                                 if v.is_floating_point() and v.norm() > 0)
        worst = max(errors, key=errors.get)
        table[f"bound {bound:g}"] = {"max": errors[worst], "worst_family": worst, "per_family": errors}
    return table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="guard protect vs cp -r")
    parser.add_argument("--small", action="store_true", help="tiny model, one round: seconds (the test's mode)")
    parser.add_argument("--sizes", default="medium,large", help="comma-separated: small, medium, large")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", action="store_true", help="self-check error per dtype and bound")
    parser.add_argument("--roundtrip", action="store_true", help="float32 unlock round-trip error per bound")
    args = parser.parse_args(argv)
    if args.roundtrip:
        print(json.dumps(roundtrip(), indent=2))
        return
    if args.precision:
        print(json.dumps(precision(), indent=2))
        return
    if args.small:
        print(json.dumps(run(size="small", rounds=1), indent=2))
        return
    report = {"fixed_cost": fixed_cost(rounds=args.rounds)}
    for size in args.sizes.split(","):
        report[size] = run(size=size, rounds=args.rounds)
        # What the model adds to the process: peak RSS above the tiny model's (interpreter, torch, transformers).
        above = report[size]["peak_rss_bytes"] - report["fixed_cost"]["peak_rss_bytes"]
        report[size]["peak_rss_above_fixed_bytes"] = above
        report[size]["peak_rss_above_fixed_over_largest_tensor"] = above / report[size]["largest_tensor_bytes"]
        print(json.dumps({size: report[size]}, indent=2), flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
