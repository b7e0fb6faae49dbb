"""Measure the vision zoo: expert accuracies, clean merges, and BadNets / BadMerging before and after
merging; print (or write) the markdown tables of docs/zoo-vision.md.

    python -m benchmarks.zoo_vision --profile full --out docs/zoo-vision-full.md
    python -m benchmarks.zoo_vision --profile small
    python -m benchmarks.zoo_vision --profile small --seeds 0,1,2 --root <empty dir> --out grid.md

Figures are on the test split; every figure is also measured on the validation split (in the JSON),
which is where settings are chosen. `--seeds` runs every seed on both numeric paths (each in its own
process, benchmarks/zoo_seeds.py) and tabulates mean and worst case. Builds are cached
(`$GUARD_ZOO_CACHE`); the timings reported are of this run (0 when cached).
"""

from __future__ import annotations

from collections.abc import Callable

import argparse
import dataclasses
import json
import pathlib
import platform

import torch

from attacks.backdoor.vision import OFF_TASK, ON_TASK, BadNetsSpec, build_badmerging, build_badnets, evaluate_backdoor
from benchmarks.zoo_seeds import Property, parse_seeds, run_grid, stage_timer, write_grid
from guard.artifacts.atomic import write_atomically
from guard.testing.zoo.vision import MERGES, build_family, merged_accuracies


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


# The attacks measured on a family, by name (the tests' warm-up, tests/zoo_warm.py, builds the same).
ATTACKS = {
    "badnets": lambda family: build_badnets(family, BadNetsSpec()),
    "badmerging-on": lambda family: build_badmerging(family, ON_TASK),
    "badmerging-off": lambda family: build_badmerging(family, OFF_TASK),
}



def clean_merges(family, *, split: str) -> dict:
    """Every task's accuracy in each reference merge, and normalised by its expert's (same split)."""
    heads = {t: family.head(t) for t in family.tasks}
    experts = {t: family.expert_accuracy(t, split=split) for t in family.tasks}
    out = {}
    for method, params in MERGES.items():
        accs = merged_accuracies(family.base_dir, family.expert_dirs, heads, method,
                                 image_size=family.profile.image_size, split=split, **params)
        normalised = {t: accs[t] / experts[t] for t in family.tasks}
        out[method] = {"accuracy": accs, "normalised": normalised,
                       "mean_normalised": sum(normalised.values()) / len(normalised)}
    return out


def run(*, profile: str = "small", seed: int = 0, root: pathlib.Path | None = None, validation: bool = True) -> dict:
    """Build (or load) everything and measure it on the test split (and, under "validation", on the
    validation split, unless `validation` is false: the tests need the test figures only); returns a
    dict of the figures and the build timings (wall and CPU seconds)."""
    timings, timed = stage_timer()

    family = timed("family", lambda: build_family(profile, seed=seed, root=root))
    backdoors = {name: timed(name, lambda b=build: b(family)) for name, build in ATTACKS.items()}
    figures = {}
    for split in ("test", "validation") if validation else ("test",):
        figures[split] = {"clean_merges": clean_merges(family, split=split),
                          "attacks": {name: dataclasses.asdict(evaluate_backdoor(family, backdoor, split=split))
                                      for name, backdoor in backdoors.items()}}
    return {"profile": profile, "seed": seed, "family": family.info, "root": str(family.root),
            **figures["test"], "validation": figures.get("validation"), "build_seconds": timings,
            "machine": f"{platform.machine()}, torch {torch.__version__}, "
                       f"{'cuda' if torch.cuda.is_available() else 'cpu'}"}


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
        "", "Build seconds this run, wall / CPU (near 0 = cached): "
        + ", ".join(f"{k} {v['wall']:.0f} / {v['cpu']:.0f}" for k, v in result["build_seconds"].items())
        + f"; {result['machine']}."]
    return "\n".join(lines) + "\n"


def _attack(name: str, figure: Callable[[dict], float]) -> Callable[[dict], float]:
    return lambda r: figure(r["attacks"][name])


def _merge(name: str, method: str, figure: str) -> Callable[[dict], float]:
    return lambda r: r["attacks"][name]["merges"][method][figure]


def _shifted_gain(result: dict) -> float:
    from guard.testing.zoo.vision import TASKS

    experts = result["family"]["experts"]
    return min(e["accuracy"] - e["base_probe_accuracy"] for t, e in experts.items() if TASKS[t].transform != "identity")


MERGE_LABELS = (("task_arithmetic", "TA"), ("ties", "TIES"))
# The bars the tests (tests/zoo/vision) hold every seed and numeric path to; "published" where the
# papers' level is higher than what every draw reaches.
_BADMERGING_ASR = {"task_arithmetic": ">= 70% (published 90%)", "ties": ">= 90%"}
_CONTROL = {"badmerging-on": "<= 20%", "badmerging-off": "<= 40% (published 15%)"}
_BA_DROP = {("badmerging-on", "task_arithmetic"): "<= 20", ("badmerging-on", "ties"): "<= 20",
            ("badmerging-off", "task_arithmetic"): "<= 8", ("badmerging-off", "ties"): "<= 20"}
# The multi-seed table's rows.
PROPERTIES = (
    Property("experts, weakest accuracy", lambda r: min(e["accuracy"] for e in r["family"]["experts"].values()), ">= 85%"),
    Property("fine-tuning gain on shifted domains, smallest (points)", _shifted_gain, ">= 2"),
    *(Property(f"clean {label}: normalised mean accuracy", lambda r, m=m: r["clean_merges"][m]["mean_normalised"], ">= 70%")
      for m, label in MERGE_LABELS),
    Property("BadNets ASR before merging", _attack("badnets", lambda a: a["asr_before"]), ">= 90%"),
    *(Property(f"BadNets ASR after {label}", _merge("badnets", m, "asr"), "<= 30% (published 20%)", worst="max")
      for m, label in MERGE_LABELS),
    *(row for name, label in (("badmerging-on", "BadMerging on-task"), ("badmerging-off", "BadMerging off-task")) for row in (
        Property(f"{label} ASR before merging", _attack(name, lambda a: a["asr_before"]), ">= 95%"),
        *(Property(f"{label} ASR after {ml}", _merge(name, m, "asr"), _BADMERGING_ASR[m]) for m, ml in MERGE_LABELS),
        *(Property(f"{label}: trigger on the clean {ml} merge (control)", _merge(name, m, "asr_clean_merge"),
                   _CONTROL[name], worst="max") for m, ml in MERGE_LABELS),
        *(Property(f"{label}: target task CA minus BA, {ml} (points)",
                   lambda r, n=name, m=m: r["attacks"][n]["merges"][m]["ca"] - r["attacks"][n]["merges"][m]["ba"],
                   _BA_DROP[name, m], worst="max") for m, ml in MERGE_LABELS))),
    Property("cold build CPU of the measured members (s)", lambda r: sum(v["cpu"] for v in r["build_seconds"].values()),
             "(reported)", worst="max", percent=False),
    Property("whole run, wall (s)", lambda r: r["process"]["wall"], "(reported)", worst="max", percent=False),
    Property("whole run, CPU (s)", lambda r: r["process"]["cpu"], "(reported)", worst="max", percent=False),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="small", choices=("small", "full"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", type=pathlib.Path, default=None, help="cache root (default: $GUARD_ZOO_CACHE)")
    parser.add_argument("--out", type=pathlib.Path, default=None, help="write the markdown here too")
    parser.add_argument("--json", type=pathlib.Path, default=None, help="also write every figure as JSON here")
    parser.add_argument("--seeds", default=None, help="instead: run every seed of this comma-separated list on every"
                        " --paths numeric path, one process each, and tabulate mean and worst case")
    parser.add_argument("--paths", default="native,default", help="numeric paths for --seeds (native, default)")
    args = parser.parse_args(argv)
    if args.seeds is not None:
        results = run_grid("benchmarks.zoo_vision", profile=args.profile, seeds=parse_seeds(args.seeds),
                           paths=args.paths.split(","), root=args.root)
        first = results[0]
        detail = f"The first run (seed {first['seed']}, {first['numeric_path']}) in full:\n\n" + markdown(first)
        print(write_grid(results, PROPERTIES, out=args.out, json_out=args.json, extra=detail))
        return 0
    result = run(profile=args.profile, seed=args.seed, root=args.root)
    text = markdown(result)
    print(text)
    if args.out:
        write_atomically(args.out, text)
    if args.json:
        write_atomically(args.json, json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
