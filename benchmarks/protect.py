"""Benchmark: `guard protect` end to end (the CLI a user runs) against `cp -r` of the same directory,
measured in the same run: start-up seconds and marginal rate, page cache warm and cold.

    python -m benchmarks.protect                  # 4.2 GB bf16 Llama-shaped model, warm and cold, 3 rounds
    python -m benchmarks.protect --size 4gb --modes warm --rounds 5 --workdir /work/tmp
    python -m benchmarks.protect --small          # seconds; what tests/lock/test_benchmark.py runs
    python -m benchmarks.protect --precision      # self-check error per residual form, dtype and bound
    python -m benchmarks.protect --roundtrip      # float32 unlock round-trip error per bound

The model is written directly as safetensors (no model is built): Llama-2-7B's shapes (hidden 4096,
MLP 11008, 32 heads, vocabulary 32000, untied head) with 9 of its 32 layers, random bf16 weights,
2 GiB shards: 4.16 GB, every tensor the shape a 7B model has. A tiny model of the same architecture
(one layer, hidden 64) measures start-up: what `guard protect` costs whatever the size (interpreter,
imports, validation, model builds, the self-check's two forwards on nothing). Then, per mode and
round, interleaved: `cp -r` tiny, `cp -r` big, `guard protect --unsigned` tiny, `guard protect
--unsigned` big, the start-up floor. Warm: every source file is read once before each timed command. Cold: `sync`, then
posix_fadvise(DONTNEED) on every source file (dropping the global page cache may not be permitted).

  start-up = median protect time on the tiny model
  start-up floor = median time of a bare interpreter importing torch and the one modeling module the
      self-check builds (transformers' modeling_llama): what any protect that self-checks with
      transformers pays before it reads a byte; start-up over the floor is guard's own share
  marginal rate = model bytes / (median big time - median tiny time), for protect and for cp alike
  ratio = protect's marginal rate / cp's (goal >= 0.3; start-up goal <= 3 s)

and the 7B extrapolation: start-up + 13.48 GB (Llama-2-7B in bf16) / marginal rate. Each timed
command's CPU seconds (user + sys, wait4) and peak RSS are reported too, with the load average: the
machine is shared.
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

SHAPES = {
    "tiny": dict(hidden=64, intermediate=128, heads=4, kv_heads=4, vocab=128, layers=1),
    "small": dict(hidden=512, intermediate=1376, heads=8, kv_heads=8, vocab=8000, layers=2),  # 29 MB
    # Llama-2-7B's tensors, 9 of its 32 layers: 4.16 GB in bf16.
    "4gb": dict(hidden=4096, intermediate=11008, heads=32, kv_heads=32, vocab=32000, layers=9),
}
LLAMA2_7B_BF16_BYTES = 6_738_415_616 * 2  # 6.74 B parameters
# The benchmark's models are LlamaForCausalLM: the self-check imports this module and nothing else of
# transformers' model code (guard.lock.modeling resolves the class through the auto mappings).
FLOOR_ARGV = [sys.executable, "-c", "import torch, transformers.models.llama.modeling_llama"]
SHARD_BYTES = 2 << 30
_REPO = pathlib.Path(__file__).resolve().parents[1]
_ENV = {"PYTHONPATH": str(_REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}


def make_model(shape: dict, out: pathlib.Path, *, seed: int = 0, shard_bytes: int = SHARD_BYTES) -> pathlib.Path:
    """A random bf16 Llama-shaped checkpoint written tensor by tensor (HF names, shards, index, config)."""
    import torch
    import transformers
    from safetensors.torch import save_file

    out.mkdir(parents=True)
    d, inter, heads, kv, vocab = shape["hidden"], shape["intermediate"], shape["heads"], shape["kv_heads"], shape["vocab"]
    head_dim = d // heads
    config = transformers.LlamaConfig(hidden_size=d, intermediate_size=inter, num_hidden_layers=shape["layers"],
                                      num_attention_heads=heads, num_key_value_heads=kv, vocab_size=vocab,
                                      max_position_embeddings=4096, tie_word_embeddings=False, dtype="bfloat16",
                                      architectures=["LlamaForCausalLM"], bos_token_id=1, eos_token_id=2)
    names = [("model.embed_tokens.weight", (vocab, d))]
    for i in range(shape["layers"]):
        p = f"model.layers.{i}."
        names += [(p + "input_layernorm.weight", (d,)), (p + "self_attn.q_proj.weight", (heads * head_dim, d)),
                  (p + "self_attn.k_proj.weight", (kv * head_dim, d)), (p + "self_attn.v_proj.weight", (kv * head_dim, d)),
                  (p + "self_attn.o_proj.weight", (d, heads * head_dim)), (p + "post_attention_layernorm.weight", (d,)),
                  (p + "mlp.gate_proj.weight", (inter, d)), (p + "mlp.up_proj.weight", (inter, d)),
                  (p + "mlp.down_proj.weight", (d, inter))]
    names += [("model.norm.weight", (d,)), ("lm_head.weight", (vocab, d))]
    gen = torch.Generator().manual_seed(seed)
    shards: list[dict] = [{}]
    size = 0
    for name, tensor_shape in names:
        if len(tensor_shape) == 1:  # norm gains around 1
            tensor = (1.0 + 0.1 * torch.randn(tensor_shape, generator=gen)).bfloat16()
        else:
            tensor = (0.02 * torch.randn(tensor_shape, generator=gen)).bfloat16()
        if shards[-1] and size + tensor.numel() * 2 > shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += tensor.numel() * 2
    weight_map, total = {}, 0
    for i, tensors in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(tensors, str(out / file), metadata={"format": "pt"})
        for name, tensor in tensors.items():
            weight_map[name] = file
            total += tensor.numel() * 2
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    config.save_pretrained(out)
    return out


def dir_bytes(path: pathlib.Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def largest_tensor_bytes(path: pathlib.Path) -> int:
    from guard.artifacts import open_model_dir

    return max(t.nbytes for t in open_model_dir(path).tensors.values())


def _files(path: pathlib.Path) -> list[pathlib.Path]:
    return [p for p in sorted(path.rglob("*")) if p.is_file()]


def warm(path: pathlib.Path) -> None:
    for p in _files(path):
        with open(p, "rb") as f:
            while f.read(64 << 20):
                pass


def drop_cache(path: pathlib.Path) -> None:
    """Evict `path`'s files from the page cache (clean pages only: sync first)."""
    subprocess.run(["sync"], check=True)
    for p in _files(path):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


# Each command runs under a small middle process that times it and reports its usage (its only child's:
# RUSAGE_CHILDREN). Measured straight from here, ru_maxrss would be wrong: Linux carries the forking
# parent's high-water RSS into the child's ru_maxrss across exec, and this process built the model (GBs),
# or is a test run's pytest. The middle process is a bare interpreter (about 10 MB).
_MIDDLE = (
    "import json, resource, subprocess, sys, time\n"
    "started = time.perf_counter()\n"
    "proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "wall = time.perf_counter() - started\n"
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(json.dumps({'rc': proc.returncode, 'wall': wall, 'cpu': usage.ru_utime + usage.ru_stime,\n"
    "                  'rss': usage.ru_maxrss * 1024, 'stdout': proc.stdout, 'stderr': proc.stderr[-2000:]}))\n"
)


def _timed(argv: list[str]) -> dict:
    """Run argv; wall seconds, CPU seconds (user + sys) and peak RSS of that process, stdout."""
    middle = subprocess.run([sys.executable, "-c", _MIDDLE, *argv], env=_ENV, cwd=_REPO, capture_output=True,
                            text=True)
    try:
        measured = json.loads(middle.stdout)
    except ValueError:
        raise RuntimeError(f"{argv[:4]}: no measurement ({middle.stderr[-2000:]})") from None
    if measured["rc"] != 0:
        raise RuntimeError(f"{argv[:4]} failed: {measured['stderr']}")
    return {"seconds": measured["wall"], "cpu_seconds": measured["cpu"], "peak_rss_bytes": measured["rss"],
            "stdout": measured["stdout"]}


def _protect_argv(src, out, key) -> list[str]:
    return [sys.executable, "-m", "guard", "protect", str(src), "--out", str(out), "--lock-key", str(key),
            "--unsigned", "--json"]


def _rate(nbytes: int, big: float, tiny: float) -> float | None:
    """Bytes per second beyond start-up; None where the big model took no longer than the tiny one (a
    model too small for the noise of one machine)."""
    return nbytes / (big - tiny) if big > tiny else None


def run(*, size: str = "4gb", rounds: int = 3, modes=("warm", "cold"), workdir: pathlib.Path | None = None) -> dict:
    import shutil

    report: dict = {"size": size, "rounds": rounds, "shape": SHAPES[size], "modes": {}}
    with tempfile.TemporaryDirectory(dir=workdir, prefix="guard-protect-bench-") as tmp:
        root = pathlib.Path(tmp)
        models = {"big": make_model(SHAPES[size], root / "model"), "tiny": make_model(SHAPES["tiny"], root / "tiny")}
        key = root / "lock.key"
        subprocess.run([sys.executable, "-m", "guard", "lock-keygen", str(key)], check=True, env=_ENV, cwd=_REPO,
                       capture_output=True)
        nbytes = dir_bytes(models["big"])
        report.update(model_bytes=nbytes, tiny_bytes=dir_bytes(models["tiny"]),
                      largest_tensor_bytes=largest_tensor_bytes(models["big"]))
        for mode in modes:
            samples: dict[str, list[dict]] = {k: [] for k in ("cp_tiny", "cp", "protect_tiny", "protect",
                                                              "import_floor")}
            for _ in range(rounds):
                for label, which, tool in (("cp_tiny", "tiny", "cp"), ("cp", "big", "cp"),
                                           ("protect_tiny", "tiny", "protect"), ("protect", "big", "protect"),
                                           ("import_floor", "tiny", "floor")):
                    src, out = models[which], root / f"out-{label}"
                    (warm if mode == "warm" else drop_cache)(src)
                    subprocess.run(["sync"], check=True)  # nobody inherits another command's dirty pages
                    argv = {"cp": ["cp", "-r", str(src), str(out)], "floor": FLOOR_ARGV}.get(tool) \
                        or _protect_argv(src, out, key)
                    sample = _timed(argv)
                    sample["load_average"] = os.getloadavg()[0]
                    if tool == "protect":
                        summary = json.loads(sample["stdout"])
                        sample["phases"] = summary.get("seconds")
                        sample["selfcheck_error"] = summary["selfcheck"]["max_relative_logit_error"]
                    del sample["stdout"]
                    samples[label].append(sample)
                    shutil.rmtree(out, ignore_errors=tool == "floor")  # the floor writes nothing
            med = {label: statistics.median(s["seconds"] for s in runs) for label, runs in samples.items()}
            cp_rate = _rate(nbytes, med["cp"], med["cp_tiny"])
            protect_rate = _rate(nbytes, med["protect"], med["protect_tiny"])
            ratio = protect_rate / cp_rate if protect_rate and cp_rate else None
            report["modes"][mode] = {
                "samples": samples, "median_seconds": med,
                "startup_seconds": med["protect_tiny"],
                "startup_floor_seconds": med["import_floor"],
                "startup_over_floor_seconds": med["protect_tiny"] - med["import_floor"],
                "cp_marginal_bytes_per_s": cp_rate, "protect_marginal_bytes_per_s": protect_rate,
                "ratio_marginal_protect_over_cp": ratio,
                "goals": {"startup_at_most_3s": med["protect_tiny"] <= 3.0,
                          "marginal_at_least_0.3x_cp": ratio is not None and ratio >= 0.3},
                "median_cpu_seconds": {label: statistics.median(s["cpu_seconds"] for s in runs)
                                       for label, runs in samples.items()},
                "peak_rss_bytes": max(s["peak_rss_bytes"] for s in samples["protect"]),
                "peak_rss_tiny_bytes": max(s["peak_rss_bytes"] for s in samples["protect_tiny"]),
                "extrapolated_7b": None if not (protect_rate and cp_rate) else {
                    "bytes": LLAMA2_7B_BF16_BYTES, "protect_seconds": med["protect_tiny"] + LLAMA2_7B_BF16_BYTES / protect_rate,
                    "cp_seconds": med["cp_tiny"] + LLAMA2_7B_BF16_BYTES / cp_rate},
            }
    return report


def precision(*, bounds=(2.0, 8.0, 16.0), forms=("permutation", "rotation"), families=None) -> dict:
    """Max relative logit error of protected vs original, per residual form, bound and stored dtype, over
    the factory's families and MiniLM under a task head (probe: guard.lock.selfcheck's batch, run in the
    stored dtype)."""
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
    for form in forms:
        for bound in bounds:
            for dtype in (torch.float32, torch.bfloat16, torch.float16):
                errors = {}
                for family in families:
                    if family == "minilm":  # a task head: the residual transform applies (test_residual.py)
                        torch.manual_seed(0)
                        model = transformers.BertForSequenceClassification.from_pretrained(factory.minilm_dir(),
                                                                                           num_labels=3)
                        model.config.architectures = ["BertForSequenceClassification"]
                    else:
                        model = factory.build_model(family)
                    model = model.to(dtype).eval()
                    inputs = probe_inputs(model.config)
                    if "pixel_values" in inputs:
                        inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
                    ref = output(model, inputs)
                    locked = type(model)(model.config).to(dtype).eval()
                    locked.load_state_dict(protect_state(model.state_dict(), config=model.config, key=key, bound=bound,
                                                         residual=form))
                    errors[family] = float((output(locked, inputs) - ref).abs().max() / ref.abs().max())
                worst = max(errors, key=errors.get)
                table[f"{form} bound {bound:g} {str(dtype).removeprefix('torch.')}"] = {
                    "max": errors[worst], "worst_family": worst, "minilm": errors.get("minilm"), "per_family": errors}
    return table


def roundtrip(*, bounds=(2.0, 8.0, 16.0), forms=("permutation", "rotation"), families=None) -> dict:
    """float32 unlock(protect(W)) against W, per residual form and bound: the worst relative Frobenius
    error of any tensor, over the factory's families plus GPT-J (protect in float32, unlock in float64)."""
    from guard.lock.keys import LockKey
    from guard.lock.state import protect_state
    from tests.lock.conftest import LOCK_FAMILIES, build

    key = LockKey(bytes(range(32))).for_run(bytes(32))
    table: dict = {}
    for form in forms:
        for bound in bounds:
            errors = {}
            for family in families or LOCK_FAMILIES:
                model = build(family)
                state = model.state_dict()
                back = protect_state(protect_state(state, config=model.config, key=key, bound=bound, residual=form),
                                     config=model.config, key=key, bound=bound, inverse=True, residual=form)
                errors[family] = max(float((back[k] - v).norm() / v.norm()) for k, v in state.items()
                                     if v.is_floating_point() and v.norm() > 0)
            worst = max(errors, key=errors.get)
            table[f"{form} bound {bound:g}"] = {"max": errors[worst], "worst_family": worst, "per_family": errors}
    return table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="guard protect vs cp -r: start-up and marginal rate")
    parser.add_argument("--size", choices=sorted(SHAPES), default="4gb")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default="warm,cold", help="comma-separated: warm, cold")
    parser.add_argument("--workdir", type=pathlib.Path, help="where to write the models (default: $TMPDIR)")
    parser.add_argument("--small", action="store_true", help="small model, warm, one round: seconds (the test)")
    parser.add_argument("--precision", action="store_true", help="self-check error per form, dtype and bound")
    parser.add_argument("--roundtrip", action="store_true", help="float32 unlock round-trip error per bound")
    parser.add_argument("--json", type=pathlib.Path, help="also write the report here")
    args = parser.parse_args(argv)
    if args.roundtrip:
        report = roundtrip()
    elif args.precision:
        report = precision()
    elif args.small:
        report = run(size="small", rounds=1, modes=("warm",), workdir=args.workdir)
    else:
        modes = tuple(m for m in args.modes.split(",") if m)
        if not modes or set(modes) - {"warm", "cold"}:
            parser.error("--modes takes warm and/or cold")
        report = run(size=args.size, rounds=args.rounds, modes=modes, workdir=args.workdir)
    text = json.dumps(report, indent=2)
    if args.json:
        from guard.artifacts.atomic import write_atomically

        write_atomically(args.json, text)
    print(text)


if __name__ == "__main__":
    main()
