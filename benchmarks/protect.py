"""Benchmark: `guard protect` throughput against `cp -r` of the same directory, measured in one run.

    python -m benchmarks.protect            # full: a ~150M-parameter Llama-style model
    python -m benchmarks.protect --small    # seconds; what tests/lock/test_benchmark.py runs
    python -m benchmarks.protect --precision  # the self-check error per dtype and bound (docs/lock.md)

Reports bytes/s of cp -r and of protect (whole command: stream + transform + write, self-check, no
signing), the ratio protect/cp (goal >= 0.5), the phase split, and the peak RSS of a protect run in a
fresh process next to the size of the largest tensor.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

SIZES = {
    "small": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=1000),
    "full": dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=8, num_attention_heads=16,
                 num_key_value_heads=4, vocab_size=32000),
}

_CHILD = """
import json, resource, sys, time
from guard.lock.keys import LockKey
from guard.lock.protect import protect_model
started = time.perf_counter()
result = protect_model(sys.argv[1], sys.argv[2], key=LockKey(bytes(32)))
print(json.dumps({"seconds": time.perf_counter() - started, "phases": result.seconds,
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "error": result.selfcheck.max_relative_error}))
"""


def make_model(size: str, out: pathlib.Path) -> pathlib.Path:
    import torch
    import transformers

    config = transformers.LlamaConfig(**SIZES[size], max_position_embeddings=256)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    model.save_pretrained(out)
    return out


def dir_bytes(path: pathlib.Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def largest_tensor_bytes(path: pathlib.Path) -> int:
    from guard.artifacts import open_model_dir

    return max(t.nbytes for t in open_model_dir(path).tensors.values())


def run(*, size: str = "full", workdir: pathlib.Path | None = None) -> dict:
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        root = pathlib.Path(tmp)
        src = make_model(size, root / "model")
        nbytes = dir_bytes(src)
        started = time.perf_counter()
        subprocess.run(["cp", "-r", str(src), str(root / "copy")], check=True)
        cp_seconds = time.perf_counter() - started
        repo = pathlib.Path(__file__).resolve().parents[1]
        child = subprocess.run([sys.executable, "-c", _CHILD, str(src), str(root / "protected")], check=True,
                               capture_output=True, text=True, cwd=repo,
                               env={"PYTHONPATH": str(repo), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error",
                                    "PATH": "/usr/bin:/bin"})
        protect = json.loads(child.stdout.strip().splitlines()[-1])
        largest = largest_tensor_bytes(src)
    return {
        "size": size, "model_bytes": nbytes, "largest_tensor_bytes": largest,
        "cp_seconds": cp_seconds, "cp_bytes_per_s": nbytes / cp_seconds,
        "protect_seconds": protect["seconds"], "protect_bytes_per_s": nbytes / protect["seconds"],
        "ratio_protect_over_cp": cp_seconds / protect["seconds"],
        "transform_only_ratio": cp_seconds / protect["phases"]["transform"],
        "phases_seconds": protect["phases"], "peak_rss_bytes": protect["peak_rss_bytes"],
        "selfcheck_error": protect["error"],
    }


def precision(*, bounds=(2.0, 8.0, 16.0), families=None) -> dict:
    """Max relative logit error of protected vs original, per bound and stored dtype, over the factory's
    families and the real MiniLM (probe: guard.lock.selfcheck's batch, run in the stored dtype)."""
    import torch
    import transformers

    from guard.lock.keys import LockKey
    from guard.lock.selfcheck import probe_inputs
    from guard.lock.state import protect_state
    from guard.testing import factory

    key = LockKey(bytes(range(32)))
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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="guard protect vs cp -r")
    parser.add_argument("--small", action="store_true", help="tiny model: seconds (the test's mode)")
    parser.add_argument("--precision", action="store_true", help="self-check error per dtype and bound")
    args = parser.parse_args(argv)
    if args.precision:
        print(json.dumps(precision(), indent=2))
        return
    print(json.dumps(run(size="small" if args.small else "full"), indent=2))


if __name__ == "__main__":
    main()
