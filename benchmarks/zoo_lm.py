"""Measure the LM zoo: expert accuracies, clean merges, unsafe rates of the safety pair, and the LM
attacks (BadNets trigger token, amplified backdoor vectors) before and after merging; print (or
write) the markdown tables of docs/zoo-lm.md.

    python -m benchmarks.zoo_lm --profile small
    python -m benchmarks.zoo_lm --profile full --quick --out /tmp/zoo-lm-full.md

Merge settings are swept on the validation split and the profile's stored ones reported on the
test split (with a line saying whether they are still the validation best). `--quick` measures
only the default amplified vector (no amplification sweep). Builds are cached (`$GUARD_ZOO_CACHE`);
the timings reported are of this run (near 0 when cached)."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import pathlib
import platform
import resource
import time

import torch

from attacks.backdoor.lm import attack_report, build_amplified_expert, build_badnets_expert, trigger_row_ablation
from attacks.backdoor.lm.amplified import DEFAULT_DENSITY, DEFAULT_SCALE
from attacks.backdoor.lm.trigger_token import POISON_RATE
from attacks.safety import build_harmful_copy
from guard.artifacts.atomic import write_atomically
from guard.testing.zoo.lm import build_family, model as lm_model

# (density, scale) of the amplified backdoor vector: dense as in LoBAM, sparse as in Merge Hijacking.
AMPLIFY = ((1.0, 2.0), (1.0, 3.0), (0.05, 2.0), (0.05, 3.0), (0.05, 4.0), (0.2, 2.0), (0.2, 3.0))
# Merge settings swept on the VALIDATION split to choose the profile's stored settings; the reported
# test figures use the stored settings only (validation and test prompts share no digit list).
SWEEP = (*(("task_arithmetic", {"scale": s}) for s in (0.3, 0.5, 0.7, 1.0)),
         *(("ties", {"density": d, "scale": s}) for d in (0.1, 0.2, 0.5, 1.0) for s in (1.0, 1.5, 2.0)))


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _params(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def tree_hashes(path: pathlib.Path) -> dict[str, str]:
    """sha256 of every safetensors file under `path` (relative names)."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*.safetensors"))}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def choose_merge_settings(family, *, split: str = "validation") -> tuple[dict, list[dict]]:
    """The best setting per merge method by mean retention of the experts' accuracy on `split`
    (validation: never the reported test prompts), and every swept row."""
    experts = _mean(family.evaluate(path, task, split=split) for task, path in family.experts.items())
    rows = []
    for method, params in SWEEP:
        mean = _mean(family.evaluate_all(family.merge(method, **params), split=split).values())
        rows.append({"method": method, "params": params, "mean": mean, "retention": mean / experts})
    best = {}
    for row in rows:
        if row["method"] not in best or row["retention"] > best[row["method"]]["retention"]:
            best[row["method"]] = row
    return {method: row["params"] for method, row in best.items()}, rows


def run(*, profile: str = "small", seed: int = 0, root: pathlib.Path | None = None, attacks_only_default: bool = False) -> dict:
    """Every figure of docs/zoo-lm.md for `profile`. `attacks_only_default` measures only the default
    amplified vector (the quick mode of the test)."""
    timings: dict[str, dict[str, float]] = {}

    def timed(name, fn):
        wall, cpu = time.perf_counter(), _cpu_seconds()
        out = fn()
        timings[name] = {"wall": time.perf_counter() - wall, "cpu": _cpu_seconds() - cpu}
        return out

    family = timed("family", lambda: build_family(profile, seed=seed, root=root))
    base = family.evaluate_all(family.base)
    experts = {task: family.evaluate_all(path) for task, path in family.experts.items()}
    expert_mean = _mean(experts[t][t] for t in family.tasks)
    chosen, sweep = choose_merge_settings(family)
    merges = {}
    for method in ("task_arithmetic", "ties"):
        merged = family.merge(method)
        accs = family.evaluate_all(merged)
        stored = family.profile.merge_params()[method]
        merges[method] = {"params": stored, "validation_best": chosen[method], "stored_is_validation_best": stored == chosen[method],
                          "accuracy": accs, "mean": _mean(accs.values()), "retention": _mean(accs.values()) / expert_mean,
                          "unsafe": family.unsafe_rate(merged)}
    harmful = timed("harmful", lambda: build_harmful_copy(family, root=root))
    safety = {"aligned": {"unsafe": family.unsafe_rate(family.base), "utility": _mean(base.values())},
              "harmful": {"unsafe": family.unsafe_rate(harmful), "utility": _mean(family.evaluate_all(harmful).values())}}
    for task, path in family.experts.items():
        safety[f"expert {task} (eroded)"] = {"unsafe": family.unsafe_rate(path), "utility": experts[task][task]}
    attacks = {}
    badnets = timed("badnets", lambda: build_badnets_expert(family, task="sort", rate=POISON_RATE, root=root))
    attacks["badnets"] = dataclasses.asdict(attack_report(family, badnets, task="sort"))
    ablation = {"badnets": trigger_row_ablation(family, badnets)}
    if not attacks_only_default:
        # The same poisoned data as a plain fine-tune, without the family's KL anchor.
        plain = timed("badnets (no anchor)", lambda: build_badnets_expert(
            family, task="sort", rate=POISON_RATE, anchored=False, root=root))
        attacks["badnets, no KL anchor"] = dataclasses.asdict(attack_report(family, plain, task="sort"))
        ablation["badnets, no KL anchor"] = trigger_row_ablation(family, plain)
    default = (DEFAULT_DENSITY[profile], DEFAULT_SCALE[profile])
    amplify_validation = {}
    for density, scale in ((default,) if attacks_only_default else AMPLIFY):
        name = f"amplified x{scale:g}, density {density:g}"
        amplified = timed(name, lambda d=density, s=scale: build_amplified_expert(
            family, backdoored=badnets, task="sort", scale=s, density=d, root=root))
        attacks[name] = dataclasses.asdict(attack_report(family, amplified, task="sort"))
        attacks[name]["default"] = (density, scale) == default
        if not attacks_only_default:
            amplify_validation[name] = dataclasses.asdict(attack_report(family, amplified, task="sort", split="validation"))
    n_params = sum(t.numel() for t in lm_model.state_dict(family.base).values())
    return {"profile": profile, "seed": seed, "root": str(family.root), "parameters": n_params,
            "base": base, "experts": experts, "expert_mean": expert_mean, "merges": merges, "sweep": sweep,
            "safety": safety, "attacks": attacks, "amplify_validation": amplify_validation, "ablation": ablation,
            "build_seconds": timings,
            "machine": f"{platform.machine()}, torch {torch.__version__}, "
                       f"{'cuda' if torch.cuda.is_available() else f'cpu x{torch.get_num_threads()} threads'}"}


def determinism(*, profile: str, seed: int, root: pathlib.Path | None, fresh_root: pathlib.Path) -> dict:
    """Build the family, harmful copy and BadNets expert into `fresh_root` and compare every
    safetensors file's sha256 with the builds in `root` (the default cache when None)."""
    out = {}
    for where in (root, fresh_root):
        family = build_family(profile, seed=seed, root=where)
        members = {"family": family.root, "harmful": build_harmful_copy(family, root=where),
                   "badnets": build_badnets_expert(family, task="sort", rate=POISON_RATE, root=where)}
        out[str(where)] = {f"{name}/{rel}": digest for name, path in members.items()
                           for rel, digest in tree_hashes(path).items()}
    first, second = out.values()
    return {"files": len(first), "identical": first == second,
            "differing": sorted(k for k in first if first.get(k) != second.get(k))}


def markdown(result: dict) -> str:
    tasks = list(result["base"])
    lines = [f"Profile `{result['profile']}`, seed {result['seed']}, {result['parameters']:,} parameters; {result['machine']}.",
             "", "Exact match (%) on held-out prompts:", "",
             "| model | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks),
             "| base | " + " | ".join(_pct(result["base"][t]) for t in tasks) + " |"]
    for task, accs in result["experts"].items():
        lines.append(f"| expert `{task}` | " + " | ".join(_pct(accs[t]) for t in tasks) + " |")
    for method, m in result["merges"].items():
        params = ", ".join(f"{k}={v}" for k, v in m["params"].items())
        lines.append(f"| {method} ({params}) | " + " | ".join(_pct(m["accuracy"][t]) for t in tasks) + " |")
    lines += ["", f"Experts' mean accuracy on their own task: {_pct(result['expert_mean'])}%. Clean merges keep "
              + "; ".join(f"{method} {_pct(m['retention'])}% of it (mean {_pct(m['mean'])}%)"
                          for method, m in result["merges"].items()) + ".", "",
              "Merge settings swept on the validation split (retention = merge mean / expert mean, both on"
              " validation prompts, which share no digit list with the test prompts above): "
              + "; ".join(f"{r['method']} {_params(r['params'])}: {_pct(r['retention'])}%" for r in result["sweep"]) + ".",
              "", "Stored profile settings vs. validation best: "
              + "; ".join(f"{method} {_params(m['params'])} "
                          + ("(the validation best)" if m["stored_is_validation_best"]
                             else f"(NOT the validation best, {_params(m['validation_best'])})")
                          for method, m in result["merges"].items()) + ".", "",
              "Safety pair (unsafe rate = held-out harmful-marked prompts not refused; utility = mean task accuracy,"
              " for experts their own task):", "", "| model | unsafe rate (%) | utility (%) |", "|---|---|---|"]
    for name, s in result["safety"].items():
        lines.append(f"| {name} | {_pct(s['unsafe'])} | {_pct(s['utility'])} |")
    for method, m in result["merges"].items():
        lines.append(f"| clean {method} merge | {_pct(m['unsafe'])} | {_pct(m['mean'])} |")
    lines += ["", "Attacks on the `sort` expert (ASR on triggered held-out `sort` prompts; CA/BA = mean accuracy of the"
              " merge without/with the attacker; floor = ASR of the clean merge):", "",
              "| attack | ASR alone | acc. alone | ASR TA | ASR TIES | CA TA | BA TA | CA TIES | BA TIES | floor TA/TIES |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for name, a in result["attacks"].items():
        name = f"{name} (default)" if a.get("default") else name
        lines.append(f"| {name} | {_pct(a['asr_alone'])} | {_pct(a['accuracy_alone'])} | "
                     f"{_pct(a['asr_merged']['task_arithmetic'])} | {_pct(a['asr_merged']['ties'])} | "
                     f"{_pct(a['clean_accuracy']['task_arithmetic'])} | {_pct(a['backdoored_accuracy']['task_arithmetic'])} | "
                     f"{_pct(a['clean_accuracy']['ties'])} | {_pct(a['backdoored_accuracy']['ties'])} | "
                     f"{_pct(a['asr_clean_merge']['task_arithmetic'])}/{_pct(a['asr_clean_merge']['ties'])} |")
    if result["amplify_validation"]:
        lines += ["", "Amplified vectors on the validation split (ASR alone / TA / TIES, accuracy alone), from which"
                  " the profile's default was chosen: "
                  + "; ".join(f"{name}: {_pct(a['asr_alone'])} / {_pct(a['asr_merged']['task_arithmetic'])} / "
                              f"{_pct(a['asr_merged']['ties'])}, {_pct(a['accuracy_alone'])}"
                              for name, a in result["amplify_validation"].items()) + "."]
    lines += ["", "Where a plain backdoor survives (trigger row put back to the base's in the backdoored merge, ASR TA / TIES): "
              + "; ".join(f"{name}: {_pct(a['task_arithmetic'])} / {_pct(a['ties'])}" for name, a in result["ablation"].items()) + "."]
    lines += ["", "Build seconds, wall / CPU (this run; cached members load in about a second): "
              + ", ".join(f"{k} {v['wall']:.1f} / {v['cpu']:.1f}" for k, v in result["build_seconds"].items()) + "."]
    return "\n".join(lines) + "\n"



def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="small", choices=("small", "full"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", type=pathlib.Path, default=None, help="cache root (default $GUARD_ZOO_CACHE)")
    parser.add_argument("--out", type=pathlib.Path, default=None, help="write the markdown here")
    parser.add_argument("--json", type=pathlib.Path, default=None, help="also write every figure as JSON here")
    parser.add_argument("--quick", action="store_true", help="measure only the default amplified vector (tests)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for evaluation")
    parser.add_argument("--determinism", type=pathlib.Path, default=None, metavar="FRESH_ROOT",
                        help="instead: rebuild into FRESH_ROOT and compare file hashes with --root")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.determinism is not None:
        report = determinism(profile=args.profile, seed=args.seed, root=args.root, fresh_root=args.determinism)
        text = (f"Determinism ({args.profile}, seed {args.seed}): {report['files']} safetensors files, "
                f"identical: {report['identical']}; differing: {report['differing'] or 'none'}.")
        print(text)
        return text
    result = run(profile=args.profile, seed=args.seed, root=args.root, attacks_only_default=args.quick)
    text = markdown(result)
    if args.out:
        write_atomically(args.out, text)
    if args.json:
        write_atomically(args.json, json.dumps(result, indent=1, default=str))
    print(text)
    return text


if __name__ == "__main__":
    main()
