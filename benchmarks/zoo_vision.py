"""Measure the vision zoo: expert accuracies, clean merges, and BadNets / BadMerging before and after
merging; print (or write) the markdown tables of docs/zoo-vision.md.

    python -m benchmarks.zoo_vision --profile full --out docs/zoo-vision-full.md
    python -m benchmarks.zoo_vision --profile small

Builds are cached (`$GUARD_ZOO_CACHE`); the timings reported are of this run (0 when cached).
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import platform
import time

import torch

from attacks.backdoor.vision import OFF_TASK, ON_TASK, BadNetsSpec, build_badmerging, build_badnets, evaluate_backdoor
from guard.testing.zoo.vision import MERGES, build_family, merged_accuracies


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


# The attacks measured on a family, by name (the tests' warm-up, tests/zoo_warm.py, builds the same).
ATTACKS = {
    "badnets": lambda family: build_badnets(family, BadNetsSpec()),
    "badmerging-on": lambda family: build_badmerging(family, ON_TASK),
    "badmerging-off": lambda family: build_badmerging(family, OFF_TASK),
}


def run(*, profile: str = "small", seed: int = 0, root: pathlib.Path | None = None) -> dict:
    """Build (or load) everything and measure it; returns a dict of the figures and timings."""
    timings = {}
    start = time.perf_counter()
    family = build_family(profile, seed=seed, root=root)
    timings["family"] = time.perf_counter() - start
    heads = {t: family.head(t) for t in family.tasks}
    experts = family.info["experts"]
    clean = {}
    for method, params in MERGES.items():
        accs = merged_accuracies(family.base_dir, family.expert_dirs, heads, method,
                                 image_size=family.profile.image_size, **params)
        normalised = {t: accs[t] / experts[t]["accuracy"] for t in family.tasks}
        clean[method] = {"accuracy": accs, "normalised": normalised,
                         "mean_normalised": sum(normalised.values()) / len(normalised)}
    attacks = {}
    for name, build in ATTACKS.items():
        start = time.perf_counter()
        backdoor = build(family)
        timings[name] = time.perf_counter() - start
        attacks[name] = dataclasses.asdict(evaluate_backdoor(family, backdoor))
    return {"profile": profile, "seed": seed, "family": family.info, "root": str(family.root),
            "clean_merges": clean, "attacks": attacks, "build_seconds": timings}


def markdown(result: dict) -> str:
    fam = result["family"]
    lines = [f"Profile `{result['profile']}`, seed {result['seed']}; base pre-training accuracy (10 digits, upright): "
             f"{_pct(fam['base']['accuracy'])}%.", "",
             "| task | description | base + probe head | expert |", "|---|---|---|---|"]
    for task in fam["tasks"]:
        e = fam["experts"][task]
        lines.append(f"| {task} | {e['description']} | {_pct(e['base_probe_accuracy'])} | {_pct(e['accuracy'])} |")
    lines += ["", "| merge | " + " | ".join(fam["tasks"]) + " | normalised mean |",
              "|---|" + "---|" * (len(fam["tasks"]) + 1)]
    for method, c in result["clean_merges"].items():
        params = ", ".join(f"{k}={v}" for k, v in MERGES[method].items())
        cells = [f"{_pct(c['accuracy'][t])} ({_pct(c['normalised'][t])}%)" for t in fam["tasks"]]
        lines.append(f"| {method} ({params}) | " + " | ".join(cells) + f" | **{_pct(c['mean_normalised'])}%** |")
    lines += ["", "| attack | attacker task -> target | ASR before merge | ASR on θ0 (control) | merge | ASR | "
              "ASR clean merge (control) | CA | BA | CA mean | BA mean |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, a in result["attacks"].items():
        for method, m in a["merges"].items():
            lines.append(
                f"| {name} | {a['attacker_task']} -> {a['target_task']}:{a['target_class']} | {_pct(a['asr_before'])} | "
                f"{_pct(a['asr_base'])} | {method} | **{_pct(m['asr'])}** | {_pct(m['asr_clean_merge'])} | "
                f"{_pct(m['ca'])} | {_pct(m['ba'])} | {_pct(m['ca_mean'])} | {_pct(m['ba_mean'])} |")
    lines += ["", "Attacker's expert vs the benign expert it replaces (clean accuracy on the attacker's task): " + "; ".join(
        f"{n} {_pct(a['attacker_accuracy'])} vs {_pct(a['benign_accuracy'])}" for n, a in result["attacks"].items()),
        "", "Build seconds this run (0 = cached): " + ", ".join(f"{k} {v:.0f}" for k, v in result["build_seconds"].items())
        + f"; device {'cuda' if torch.cuda.is_available() else 'cpu'}, {platform.machine()}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="small", choices=("small", "full"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", type=pathlib.Path, default=None, help="cache root (default: $GUARD_ZOO_CACHE)")
    parser.add_argument("--out", type=pathlib.Path, default=None, help="write the markdown here too")
    args = parser.parse_args(argv)
    text = markdown(run(profile=args.profile, seed=args.seed, root=args.root))
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
