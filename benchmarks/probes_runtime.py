"""Runtime of guard's probes per model size, against the floor of reading the same weights.

    python -m benchmarks.probes_runtime [--sizes 10m,50m,100m] [--peers 3] [--data] [--out FILE.md]

For each size a Llama-style base (random init, float32), a candidate and `--peers` peers (the base plus
a random perturbation of 2% of each tensor's norm: a stand-in fine-tune) are written as safetensors. Then,
each in a fresh process (so that its peak RSS is its own):

- the weight pass and every weight-only probe (`guard.probes`, one streaming pass over candidate, base
  and peers; canonicalisation included), CPU seconds and peak RSS;
- the floor: `safetensors.torch.load_file` of the same files, one file at a time, with every tensor then
  summed so that every byte is really read (load_file maps the file; without touching the bytes it costs
  nothing and measures nothing), CPU seconds and peak RSS: what any weight-space scanner pays at least;
- with `--data`, the causal-LM data-driven probes (insertion, target inversion) on 16 random prompts:
  time-bounded by their `max_seconds`, so the table says how far each got.

Seconds per 100M candidate parameters = CPU seconds x 1e8 / parameters. The machine is shared: CPU time
(user + sys) is the figure to compare, wall time is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

SIZES = {  # hidden, layers, intermediate, vocab -> roughly the named parameter count
    "10m": (256, 8, 1024, 8192),
    "50m": (512, 10, 2048, 16384),
    "100m": (768, 10, 3072, 32000),
}


def build(size: str, root: pathlib.Path, peers: int) -> dict[str, pathlib.Path]:
    import torch
    import transformers

    hidden, layers, intermediate, vocab = SIZES[size]
    config = transformers.LlamaConfig(hidden_size=hidden, num_hidden_layers=layers, intermediate_size=intermediate,
                                      num_attention_heads=hidden // 64, num_key_value_heads=max(1, hidden // 128),
                                      vocab_size=vocab, max_position_embeddings=256, bos_token_id=1, eos_token_id=2,
                                      pad_token_id=0, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    base = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out = {}
    for i, name in enumerate(["base", "candidate"] + [f"peer{j}" for j in range(peers)]):
        gen = torch.Generator().manual_seed(100 + i)
        with torch.no_grad():
            for key, param in model.state_dict().items():
                noise = torch.randn(param.shape, generator=gen) if name != "base" else torch.zeros(param.shape)
                param.copy_(base[key] + 0.02 * base[key].norm() / max(noise.norm(), 1e-12) * noise)
        transformers.utils.logging.disable_progress_bar()
        model.save_pretrained(root / name, safe_serialization=True)
        out[name] = root / name
    return out


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2 ** 20


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so that the imports' transient peak is not the job's."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    """VmHWM (reset by _reset_peak_rss), else ru_maxrss."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(job: dict) -> dict:
    """Run one job in this process and report CPU seconds, wall seconds and the peak RSS it added over the
    process after its imports (torch alone is a few hundred MB)."""
    import torch  # imported before the clock starts: imports are not the job's cost
    from safetensors.torch import load_file

    import guard.probes.library  # noqa: F401
    from guard.probes.models import load_model  # noqa: F401  (transformers)

    baseline = _rss_mb()
    _reset_peak_rss()
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    detail = {}
    if job["kind"] == "floor":
        for path in job["paths"]:
            for shard in sorted(pathlib.Path(path).glob("*.safetensors")):
                state = load_file(shard)
                # Touch every byte: load_file maps the file, so unread pages would cost nothing.
                detail["checksum"] = detail.get("checksum", 0.0) + sum(float(t.sum(dtype=torch.float64)) for t in state.values())
                detail["tensors"] = detail.get("tensors", 0) + len(state)
                del state
    else:
        import torch

        from guard.artifacts import open_model_dir
        from guard.probes.inputs import ScanInputs, read_calibration
        from guard.probes.scan import scan
        from guard.probes.settings import ProbeSettings

        torch.set_num_threads(1)
        inputs = ScanInputs(candidate=open_model_dir(job["candidate"]), base=open_model_dir(job["base"]),
                            peers=[open_model_dir(p) for p in job["peers"]],
                            calibration=read_calibration(job["calibration"], kind="causal-lm") if job.get("calibration") else None)
        report = scan(inputs, ProbeSettings(), probes=job["probes"])
        detail = {r.probe: {"seconds": r.seconds, "truncated": r.truncated, "status": r.status,
                            "measurements": {k: v for k, v in r.measurements.items() if k.startswith("tested")}}
                  for r in report.results if r.status == "ran"}
        detail["parameters"] = inputs.candidate.parameter_count()
    peak = _peak_rss_mb()
    return {"cpu": time.process_time() - start_cpu, "wall": time.perf_counter() - start_wall,
            "peak_rss_mb": peak - baseline, "detail": detail}


def in_subprocess(job: dict) -> dict:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.probes_runtime", "--job", json.dumps(job)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def prompts_file(path: pathlib.Path, vocab: int) -> pathlib.Path:
    import torch
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (16, 12), generator=gen)
    ids[:, 0] = 1
    save_file({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, path)
    return path


WEIGHT_PROBES = ["canonical", "geometry", "embedding"]


def run(sizes: list[str], *, peers: int, data: bool) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="guard-probes-runtime-") as tmp:
        for size in sizes:
            root = pathlib.Path(tmp) / size
            paths = build(size, root, peers)
            peer_paths = [str(paths[f"peer{j}"]) for j in range(peers)]
            for with_peers in ([0, peers] if peers else [0]):
                job = {"kind": "probes", "candidate": str(paths["candidate"]), "base": str(paths["base"]),
                       "peers": peer_paths[:with_peers], "probes": WEIGHT_PROBES}
                floor = {"kind": "floor", "paths": [str(paths["candidate"]), str(paths["base"]), *peer_paths[:with_peers]]}
                rows.append({"size": size, "peers": with_peers, "probes": in_subprocess(job), "floor": in_subprocess(floor)})
            if data:
                calib = prompts_file(root / "prompts.safetensors", SIZES[size][3])
                job = {"kind": "probes", "candidate": str(paths["candidate"]), "base": str(paths["base"]), "peers": [],
                       "probes": ["insertion", "target_inversion"], "calibration": str(calib)}
                rows.append({"size": size, "peers": 0, "data": in_subprocess(job)})
            for path in paths.values():  # free the disk before the next size
                import shutil

                shutil.rmtree(path)
    return rows


def _per_probe(detail: dict) -> str:
    """Each probe's own wall seconds; the first probe that needs the streaming weight pass pays for it."""
    return ", ".join(f"{name} {detail[name]['seconds']:.1f}" for name in WEIGHT_PROBES if name in detail)


def markdown(rows: list[dict]) -> str:
    import os
    import platform

    lines = [f"{platform.machine()}, {os.cpu_count()} cores (shared), Python {platform.python_version()}; float32 "
             "Llama-style models, one thread.", "",
             "| size | parameters | peers | weight probes CPU s | per 100M params | wall s | peak RSS MB (over "
             "imports) | floor: load_file CPU s | floor RSS MB | ratio to floor | wall s per probe |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "probes" not in r:
            continue
        p, f = r["probes"], r["floor"]
        params = p["detail"]["parameters"]
        lines.append(f"| {r['size']} | {params:,} | {r['peers']} | {p['cpu']:.1f} | {p['cpu'] * 1e8 / params:.1f} | "
                     f"{p['wall']:.1f} | {p['peak_rss_mb']:.0f} | {f['cpu']:.1f} | {f['peak_rss_mb']:.0f} | "
                     f"{p['cpu'] / max(f['cpu'], 1e-9):.1f}x | {_per_probe(p['detail'])} |")
    data = [r for r in rows if "data" in r]
    if data:
        lines += ["", "Data-driven LM probes (16 prompts; each stops at its `max_seconds`):", "",
                  "| size | probe | seconds | cases tested | stopped by the budget |", "|---|---|---|---|---|"]
        for r in data:
            for probe, d in r["data"]["detail"].items():
                if probe == "parameters":
                    continue
                tested = ", ".join(f"{k} {v}" for k, v in d["measurements"].items()) or "-"
                lines.append(f"| {r['size']} | {probe} | {d['seconds']:.1f} | {tested} | {'yes' if d['truncated'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10m,50m,100m")
    parser.add_argument("--peers", type=int, default=3)
    parser.add_argument("--data", action="store_true")
    parser.add_argument("--out", type=pathlib.Path)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.job:
        print(json.dumps(measure(json.loads(args.job))))
        return
    unknown = [s for s in args.sizes.split(",") if s not in SIZES]
    if unknown:
        parser.error(f"unknown size {unknown[0]!r}; known: {', '.join(SIZES)}")
    text = markdown(run(args.sizes.split(","), peers=args.peers, data=args.data))
    if args.out:
        from guard.artifacts.atomic import write_atomically

        write_atomically(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
