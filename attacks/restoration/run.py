"""Reproduce the MergeLock figures of docs/threat-model.md in one command:

    python -m attacks.restoration.run --out docs/mergelock-figures.md

    python -m attacks.restoration.run --zoo lm-small --out docs/mergelock-figures-zoo-lm.md

On the trained digits-ViT setup (attacks/restoration/experts.py), or with --zoo on the model zoo's
vision family (small, full) or LM family (lm-small, lm-full; attacks/restoration/lm_experts.py): for
each task in turn protected,
and for task arithmetic, TIES and DARE: the protected task's accuracy after a clean merge, after a
merge with the protected expert, after the AGA attack restored that expert, and after merging in
circuit space; plus AGA's recovery of the task vector and the detector's numbers. The protected expert
is hardened (MLP hidden units permuted, the default of `guard protect`); the attention-only lock
(`--no-mlp-permute`) is measured alongside for comparison.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import pathlib
import statistics
import time

import torch

from attacks.restoration.aga import aga_restore
from attacks.restoration.circuits import circuit_merge
from attacks.restoration.experts import MergeSetup, load_setup, load_zoo_setup
from attacks.restoration.lm_experts import load_lm_zoo_setup
from guard.errors import InputError
from guard.lock.detect import detect_with_base, detect_without_base
from guard.lock.keys import LockKey
from guard.lock.plan import plan_lock
from guard.lock.state import DEFAULT_BOUND, protect_state
from guard.merge import merge_state_dicts
from guard.signing.bundle import write_atomically

METHODS: dict[str, dict] = {
    "task_arithmetic": {"scale": 0.3},
    "ties": {"density": 0.2, "scale": 1.0},
    "dare": {"drop": 0.9, "scale": 0.3, "combine": "task_arithmetic"},
}
BOUNDS = (2.0, 4.0, 8.0, 16.0)
ATTACK_BOUNDS = (8.0, 16.0)  # the default bound and the strongest
# A fixed key and nonce: reproducible figures.
FIGURE_KEY = LockKey(hashlib.sha256(b"guard threat-model figures").digest()).for_run(
    hashlib.sha256(b"guard threat-model figures: nonce").digest())


def retained(acc: float, clean: float, floor: float) -> float:
    """Share of the clean merge's above-chance accuracy that is kept: 1 = unharmed, 0 = chance."""
    return (acc - floor) / max(clean - floor, 1e-9)


def _attention_names(setup: MergeSetup) -> list[str]:
    return sorted(k for k in plan_lock(setup.base.keys(), setup.config).block_of() if k.endswith("weight"))


def recovery(restored, truth, base, names) -> dict[str, float]:
    tau = torch.cat([(truth[k] - base[k]).flatten().double() for k in names])
    tau_hat = torch.cat([(restored[k] - base[k]).flatten().double() for k in names])
    return {"error_over_tau": float((tau_hat - tau).norm() / tau.norm()),
            "cosine": float(torch.nn.functional.cosine_similarity(tau_hat, tau, dim=0))}


def run(*, setup: MergeSetup | None = None, bounds=BOUNDS, attack_bounds=ATTACK_BOUNDS) -> dict:
    # One thread: these are many small solves/SVDs, which multi-threaded kernels make far slower (up to 60x
    # for complex SVDs measured on the shared 2-core machine).
    torch.set_num_threads(1)
    started = time.time()
    setup = setup or load_setup()
    tasks, config, experts = list(setup.tasks), setup.config, setup.experts
    methods = dict(setup.methods or METHODS)
    names = _attention_names(setup)
    protected = {(b, t): protect_state(experts[t], config=config, key=FIGURE_KEY, bound=b)
                 for b in sorted(set(bounds) | set(attack_bounds)) for t in tasks}
    attention_only = {(b, t): protect_state(experts[t], config=config, key=FIGURE_KEY, bound=b, mlp_permute=False)
                      for b in bounds for t in tasks}
    restored = {(b, t): aga_restore(protected[(b, t)], setup.base, config=config) for b in attack_bounds for t in tasks}
    # On RoPE models AGA fits QK in the lock's own (public) form; the general fit is kept for comparison.
    rope = bool(plan_lock(setup.base.keys(), config).geometry.rotary_dims)
    general = {(b, t): aga_restore(protected[(b, t)], setup.base, config=config, structured=False)
               for b in attack_bounds for t in tasks} if rope else {}

    per_task = {}
    for t in tasks:
        locked = protected[(DEFAULT_BOUND, t)]
        with_base, without = detect_with_base(locked, setup.base, config=config), detect_without_base(locked, config=config)
        per_task[t] = {
            "chance": setup.chance(t), "base": setup.evaluate(setup.base, t), "expert": setup.evaluate(experts[t], t),
            "protected_standalone": {str(b): setup.evaluate(protected[(b, t)], t) for b in bounds},
            "aga_recovery": {str(b): recovery(restored[(b, t)], experts[t], setup.base, names) for b in attack_bounds},
            "aga_general_recovery": {str(b): recovery(general[(b, t)], experts[t], setup.base, names)
                                     for b in attack_bounds if (b, t) in general},
            "attention_distance_clean": detect_with_base(experts[t], setup.base, config=config).measurements[
                "attention_distance_median"],
            "attention_distance_locked": with_base.measurements["attention_distance_median"],
            "mlp_distance_locked": with_base.measurements["mlp_distance_median"],
            "flagged_with_base": with_base.flagged,
            "ov_imbalance_clean": detect_without_base(experts[t], config=config).measurements["ov_imbalance_median"],
            "ov_imbalance_locked": without.measurements["ov_imbalance_median"],
        }

    sweep, attacks = [], []
    for method, params in methods.items():
        def merge(pool):
            return merge_state_dicts(method, setup.base, pool, exclude=setup.exclude, **params)

        def circuit(pool):
            return circuit_merge(method, setup.base, pool, config=config, exclude=setup.exclude, **params)

        clean = merge([experts[t] for t in tasks])
        circuit_clean = circuit([experts[t] for t in tasks])
        for t in tasks:
            floor = per_task[t]["chance"]
            clean_acc = setup.evaluate(clean, t)

            def swapped(replacement):
                return [replacement if u == t else experts[u] for u in tasks]

            row = {"method": method, "protected_task": t, "clean_merge": clean_acc, "chance": floor,
                   "base": per_task[t]["base"]}
            for b in bounds:
                merged = merge(swapped(protected[(b, t)]))
                acc = setup.evaluate(merged, t)
                row[f"locked_{b:g}"] = acc
                row[f"locked_{b:g}_retained"] = retained(acc, clean_acc, floor)
                acc = setup.evaluate(merge(swapped(attention_only[(b, t)])), t)
                row[f"attention_only_{b:g}"] = acc
                row[f"attention_only_{b:g}_retained"] = retained(acc, clean_acc, floor)
                if b == DEFAULT_BOUND:  # collateral damage to the tasks that were not protected
                    row["others_clean"] = statistics.mean(setup.evaluate(clean, u) for u in tasks if u != t)
                    row["others_locked"] = statistics.mean(setup.evaluate(merged, u) for u in tasks if u != t)
                    if setup.secondary is not None:
                        score = setup.secondary[1]
                        row["secondary"] = {"base": score(setup.base, t), "clean_merge": score(clean, t),
                                            "locked": score(merged, t)}
            sweep.append(row)
            circuit_clean_acc = setup.evaluate(circuit_clean, t)
            for b in attack_bounds:
                aga = setup.evaluate(merge(swapped(restored[(b, t)])), t)
                circ = setup.evaluate(circuit(swapped(protected[(b, t)])), t)
                if general:
                    acc = setup.evaluate(merge(swapped(general[(b, t)])), t)
                    extra = {"aga_general_merge": acc, "aga_general_retained": retained(acc, clean_acc, floor)}
                else:
                    extra = {}
                attacks.append({**extra, "method": method, "protected_task": t, "bound": b, "clean_merge": clean_acc,
                                "locked_merge": row[f"locked_{b:g}"] if b in bounds else None,
                                "aga_merge": aga, "aga_retained": retained(aga, clean_acc, floor),
                                "circuit_clean_merge": circuit_clean_acc, "circuit_locked_merge": circ,
                                "circuit_retained": retained(circ, clean_acc, floor)})
    return {"setup": setup.name, "built": setup.root.name, "metric": setup.metric,
            "secondary": None if setup.secondary is None else setup.secondary[0], "per_task": per_task,
            "sweep": sweep, "attacks": attacks, "methods": methods, "bounds": list(bounds),
            "attack_bounds": list(attack_bounds), "key_id": FIGURE_KEY.key_id, "seconds": time.time() - started}


def markdown(results: dict, *, command: str = "python -m attacks.restoration.run --out docs/mergelock-figures.md") -> str:
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
    bounds, first = results["bounds"], DEFAULT_BOUND
    metric = results.get("metric", "accuracy")
    if all(v["chance"] == 0 for v in results["per_task"].values()):
        retained_note = (f"Metric: {metric} on held-out prompts, which has no chance level, so retained = acc / "
                         "clean merge acc (0% = nothing right, 100% = unharmed); the base's own score is in the "
                         "first table.")
    else:
        retained_note = (f"Metric: {metric}. retained = (acc - chance) / (clean merge acc - chance): 0% = chance, "
                         "100% = unharmed.")
    lines = [f"<!-- generated by: {command} -->",
             f"# MergeLock figures: {results['setup']}", "",
             f"Models: cache entry `{results.get('built', '?')}` (content-hashed build spec).", "",
             f"## Experts, protected experts alone, detection (bound {first:g})", "",
             "| task | chance | base | expert | protected expert alone (bound " + ", ".join(f"{b:g}" for b in bounds)
             + ") | attention distance clean / locked | MLP distance locked | flagged | OV imbalance clean / locked |",
             "|---|---|---|---|---|---|---|---|---|"]
    for t, v in results["per_task"].items():
        alone = " / ".join(pct(v["protected_standalone"][str(b)]) for b in bounds)
        lines.append(
            f"| {t} | {pct(v['chance'])} | {pct(v['base'])} | {pct(v['expert'])} | {alone} | "
            f"{v['attention_distance_clean']:.3f} / {v['attention_distance_locked']:.3f} | "
            f"{v['mlp_distance_locked']:.3f} | {v['flagged_with_base']} | "
            f"{v['ov_imbalance_clean']:.3f} / {v['ov_imbalance_locked']:.3f} |")
    n_experts = len(results["per_task"])
    lines += ["", f"## Unmergeability: accuracy on the protected task after merging all {n_experts} experts, one protected",
              "",
              "Protected = attention transforms plus MLP hidden-unit permutation (the default). "
              + retained_note + " The acceptance goal is retained <= 5%.",
              "Merge settings: " + "; ".join(f"{m} " + ", ".join(f"{k} {v}" for k, v in p.items())
                                             for m, p in results["methods"].items()) + ".", "",
              "| method | protected task | base alone | clean merge | "
              + " | ".join(f"bound {b:g} (retained)" for b in bounds)
              + f" | the other {n_experts - 1} tasks, mean: clean merge / with protected (bound {first:g}) |",
              "|---|---|---|---|" + "---|" * (len(bounds) + 1)]
    for r in results["sweep"]:
        cells = " | ".join(f"{pct(r[f'locked_{b:g}'])} ({pct(r[f'locked_{b:g}_retained'])})" for b in bounds)
        others = f"{pct(r['others_clean'])} / {pct(r['others_locked'])}" if "others_clean" in r else "n/a"
        lines.append(f"| {r['method']} | {r['protected_task']} | {pct(r['base'])} | {pct(r['clean_merge'])} | "
                     f"{cells} | {others} |")
    if results.get("secondary"):
        name = results["secondary"]
        lines += ["", f"{name.capitalize()} on the protected task (a softer score than {metric}), bound {first:g}:", "",
                  "| method | protected task | base alone | clean merge | with protected expert |", "|---|---|---|---|---|"]
        for r in results["sweep"]:
            v = r["secondary"]
            lines.append(f"| {r['method']} | {r['protected_task']} | {pct(v['base'])} | {pct(v['clean_merge'])} | "
                         f"{pct(v['locked'])} |")
    lines += ["", "### The same with the attention-only lock (`guard protect --no-mlp-permute`)", "",
              "| method | protected task | clean merge | " + " | ".join(f"bound {b:g} (retained)" for b in bounds) + " |",
              "|---|---|---|" + "---|" * len(bounds)]
    for r in results["sweep"]:
        cells = " | ".join(f"{pct(r[f'attention_only_{b:g}'])} ({pct(r[f'attention_only_{b:g}_retained'])})"
                           for b in bounds)
        lines.append(f"| {r['method']} | {r['protected_task']} | {pct(r['clean_merge'])} | {cells} |")
    lines += ["", "## Attacks: the protected task after merging the attacker's version of the protected expert", "",
              "| bound | method | protected task | clean merge | with protected expert | AGA restore, then merge "
              "(retained) | circuit-space merge: clean / with protected (retained) |",
              "|---|---|---|---|---|---|---|"]
    for r in results["attacks"]:
        locked = "n/a" if r["locked_merge"] is None else pct(r["locked_merge"])
        aga = f"{pct(r['aga_merge'])} ({pct(r['aga_retained'])})"
        if "aga_general_merge" in r:
            aga += f"; general QK fit: {pct(r['aga_general_merge'])} ({pct(r['aga_general_retained'])})"
        lines.append(
            f"| {r['bound']:g} | {r['method']} | {r['protected_task']} | {pct(r['clean_merge'])} | {locked} | "
            f"{aga} | {pct(r['circuit_clean_merge'])} / "
            f"{pct(r['circuit_locked_merge'])} ({pct(r['circuit_retained'])}) |")
    lines += ["", "AGA (with Hungarian matching of heads and of MLP hidden units; on RoPE models QK is fitted as one "
              "scaled rotation per rotary plane, the only form the lock may use there) recovery of the attention "
              "task vector (cosine with the true tau; error / ||tau||):", ""]
    for t, v in results["per_task"].items():
        parts = [f"bound {b}: cos {r['cosine']:.3f}, err {r['error_over_tau']:.3f}" for b, r in v["aga_recovery"].items()]
        parts += [f"general QK fit, bound {b}: cos {r['cosine']:.3f}, err {r['error_over_tau']:.3f}"
                  for b, r in v.get("aga_general_recovery", {}).items()]
        lines.append(f"- {t}: " + "; ".join(parts))
    lines += ["", f"Lock key id {results['key_id']} (a fixed figure key); run time {results['seconds']:.0f} s.", ""]
    return "\n".join(lines)


def _methods_arg(text: str) -> dict[str, dict]:
    """--methods: a JSON object {method: {param: value}} (argparse turns the ValueError into exit 2)."""
    value = json.loads(text)
    if not isinstance(value, dict) or not value or not all(isinstance(p, dict) for p in value.values()):
        raise ValueError("expected a JSON object {method: {param: value}}")
    return value



ZOO_SETUPS = ("small", "full", "lm-small", "lm-full")


def zoo_setup(name: str) -> MergeSetup:
    if name.startswith("lm-"):
        return load_lm_zoo_setup(name.removeprefix("lm-"))
    return load_zoo_setup(name)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, required=True, help="markdown file to write")
    parser.add_argument("--json", type=pathlib.Path, help="also write the raw numbers here")
    parser.add_argument("--zoo", choices=ZOO_SETUPS, help="use a model zoo family instead: the vision family "
                        "(small, full) or the LM family (lm-small, lm-full)")
    parser.add_argument("--methods", type=_methods_arg, help="merge settings instead of the setup's, as JSON: "
                        "'{\"task_arithmetic\": {\"scale\": 0.3}, \"ties\": {\"density\": 0.2, \"scale\": 1.0}}'")
    args = parser.parse_args(argv)
    setup = zoo_setup(args.zoo) if args.zoo else load_setup()
    if args.methods:
        setup = dataclasses.replace(setup, methods=args.methods)
    try:
        results = run(setup=setup)
    except InputError as exc:  # e.g. an unknown merge method or parameter in --methods
        parser.error(str(exc))
    command = ("python -m attacks.restoration.run" + (f" --zoo {args.zoo}" if args.zoo else "")
               + (f" --methods '{json.dumps(args.methods)}'" if args.methods else "") + f" --out {args.out}")
    write_atomically(args.out, markdown(results, command=command))
    if args.json:
        write_atomically(args.json, json.dumps(results, indent=2))
    print(markdown(results, command=command))


if __name__ == "__main__":
    main()
