"""Reproduce the MergeLock figures of docs/threat-model.md in one command:

    python -m attacks.restoration.run --out docs/mergelock-figures.md

    python -m attacks.restoration.run --zoo lm-small --seeds 0,1,2 --out docs/mergelock-figures-zoo-lm.md

On the trained digits-ViT setup (attacks/restoration/experts.py), or with --zoo on the model zoo's
vision family (small, full) or LM family (lm-small, lm-full; attacks/restoration/lm_experts.py), for
each seed: every task in turn protected, and for task arithmetic, TIES and DARE the protected task's
score after a clean merge and after a merge with the protected expert, for the default lock (attention
transforms, MLP hidden-unit permutation, residual-stream signed permutation) over a sweep of bounds and the
lock's variants at the default bound; then the attacks: Procrustes (residual stream) plus AGA restores
the expert before merging, and circuit-space merging after Procrustes; plus the detector's numbers.

Setups with per-task heads (the ViTs) score the protected task with the head published with the
protected expert, which the residual transform rotates along with the body: that is the head a merger
has. (The clean expert's head is reported alongside: a merger does not have it.)
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
from attacks.restoration.stream import estimate_stream_map, restore_stream
from guard.errors import InputError
from guard.lock.detect import detect_with_base, detect_without_base
from guard.lock.keys import LockKey
from guard.lock.plan import plan_lock
from guard.lock.state import DEFAULT_BOUND, DEFAULT_RESIDUAL, protect_state
from guard.merge import merge_state_dicts
from guard.artifacts.atomic import write_atomically

METHODS: dict[str, dict] = {
    "task_arithmetic": {"scale": 0.3},
    "ties": {"density": 0.2, "scale": 1.0},
    "dare_linear": {"density": 0.1, "scale": 0.3},
}
BOUNDS = (2.0, 4.0, 8.0, 16.0)
ATTACK_BOUNDS = (8.0, 16.0)  # the default bound and the strongest
GOAL = 0.05  # the acceptance goal: at most 5% of the clean merge retained
# The lock as `guard protect` writes it, and its variants (each at the default bound).
VARIANTS: dict[str, dict] = {
    "default": {"mlp_permute": True, "residual": DEFAULT_RESIDUAL},
    "rotation": {"mlp_permute": True, "residual": "rotation"},
    "no-residual": {"mlp_permute": True, "residual": "none"},
    "attention-only": {"mlp_permute": False, "residual": "none"},
}
VARIANT_FLAGS = {"default": "`guard protect`", "rotation": "`--residual rotation`",
                 "no-residual": "`--residual none` (issue 4's lock)",
                 "attention-only": "`--residual none --no-mlp-permute` (the paper's lock)"}
# A fixed key and nonce: reproducible figures.
FIGURE_KEY = LockKey(hashlib.sha256(b"guard threat-model figures").digest()).for_run(
    hashlib.sha256(b"guard threat-model figures: nonce").digest())


def retained(acc: float, clean: float, floor: float) -> float:
    """Share of the clean merge's above-chance accuracy that is kept: 1 = unharmed, 0 = chance."""
    return (acc - floor) / max(clean - floor, 1e-9)


def retained_se(acc: float, clean: float, floor: float, n: int) -> float:
    """Binomial standard error of `retained` from the protected cell's accuracy over n test examples."""
    if n <= 0:
        return float("nan")
    return (max(acc * (1 - acc), 1e-12) / n) ** 0.5 / max(clean - floor, 1e-9)


def _attention_names(setup: MergeSetup) -> list[str]:
    return sorted(k for k in plan_lock(setup.base.keys(), setup.config).block_of() if k.endswith("weight"))


def recovery(restored, truth, base, names) -> dict[str, float]:
    tau = torch.cat([(truth[k] - base[k]).flatten().double() for k in names])
    tau_hat = torch.cat([(restored[k] - base[k]).flatten().double() for k in names])
    return {"error_over_tau": float((tau_hat - tau).norm() / tau.norm()),
            "cosine": float(torch.nn.functional.cosine_similarity(tau_hat, tau, dim=0))}


def residual_form(setup: MergeSetup, variant: str) -> str:
    """The residual form the lock actually uses on this setup (public: guard_lock.json's residual_form)."""
    requested = VARIANTS[variant]["residual"]
    plan = plan_lock(setup.base.keys(), setup.config, residual=requested)
    return "none" if plan.residual is None else plan.residual.form


def stream_recovery(locked, setup: MergeSetup, form: str) -> dict | None:
    """How well Procrustes against the base recovers the lock's residual transform (the attacker does not
    see the key; we compare with the transform the figure key derives): the share of stream dims sent
    to the right place with the right sign, and the largest entry error of the matrix."""
    if form == "none":
        return None
    from guard.lock.residual import derive_residual

    plan = plan_lock(setup.base.keys(), setup.config, residual="rotation" if form == "rotation" else "permutation")
    truth = derive_residual(FIGURE_KEY, dim=plan.residual.dim, form=form,
                            layer_norm=plan.residual.layout.norm_kind == "layer")
    guess = estimate_stream_map(locked, setup.base, config=setup.config, form=form)
    if form == "rotation":
        return {"max_abs_error": float(abs(guess.matrix - truth.matrix).max())}
    right = (guess.perm == truth.perm) & (guess.signs == truth.signs)
    return {"dims_recovered": float(right.mean())}


def run(*, setup: MergeSetup | None = None, bounds=BOUNDS, attack_bounds=ATTACK_BOUNDS,
        variants=tuple(VARIANTS)) -> dict:
    # One thread: these are many small solves/SVDs, which multi-threaded kernels make far slower (up to 60x
    # for complex SVDs measured on the shared 2-core machine).
    torch.set_num_threads(1)
    started = time.time()
    setup = setup or load_setup()
    tasks, config, experts = list(setup.tasks), setup.config, setup.experts
    methods = dict(setup.methods or METHODS)
    names = _attention_names(setup)
    forms = {v: residual_form(setup, v) for v in variants}
    default_bounds = sorted(set(bounds) | set(attack_bounds))
    protected = {("default", b, t): protect_state(experts[t], config=config, key=FIGURE_KEY, bound=b,
                                                  **VARIANTS["default"])
                 for b in default_bounds for t in tasks}
    protected.update({(v, DEFAULT_BOUND, t): protect_state(experts[t], config=config, key=FIGURE_KEY,
                                                          bound=DEFAULT_BOUND, **VARIANTS[v])
                      for v in variants if v != "default" for t in tasks})
    form = forms["default"]
    restored = {(b, t): aga_restore(protected[("default", b, t)], setup.base, config=config, residual_form=form)
                for b in attack_bounds for t in tasks}
    # On RoPE models AGA fits QK in the lock's own (public) form; the general fit is kept for comparison.
    rope = bool(plan_lock(setup.base.keys(), config).geometry.rotary_dims)
    general = {(b, t): aga_restore(protected[("default", b, t)], setup.base, config=config, structured=False,
                                   residual_form=form)
               for b in attack_bounds for t in tasks} if rope else {}
    # The circuit-space attacker brings the stream back first (Procrustes) and keeps that expert's head.
    realigned = {(b, t): restore_stream(protected[("default", b, t)], setup.base, config=config, form=form)
                 for b in attack_bounds for t in tasks}

    per_task = {}
    for t in tasks:
        locked = protected[("default", DEFAULT_BOUND, t)]
        stream = stream_recovery(locked, setup, form)
        with_base = detect_with_base(locked, setup.base, config=config)
        clean_detect = detect_with_base(experts[t], setup.base, config=config)
        per_task[t] = {
            "chance": setup.chance(t), "base": setup.evaluate(setup.base, t), "expert": setup.evaluate(experts[t], t),
            "test_size": setup.test_size(t),
            "protected_standalone": {str(b): setup.evaluate(protected[("default", b, t)], t,
                                                            head_source=protected[("default", b, t)])
                                     for b in bounds},
            "aga_recovery": {str(b): recovery(restored[(b, t)], experts[t], setup.base, names) for b in attack_bounds},
            "aga_general_recovery": {str(b): recovery(general[(b, t)], experts[t], setup.base, names)
                                     for b in attack_bounds if (b, t) in general},
            "attention_distance_clean": clean_detect.measurements["attention_distance_median"],
            "attention_distance_locked": with_base.measurements["attention_distance_median"],
            "mlp_distance_locked": with_base.measurements["mlp_distance_median"],
            "stream_distance_clean": clean_detect.measurements["stream_distance"],
            "stream_distance_locked": with_base.measurements["stream_distance"],
            "stream_gram_distance_locked": with_base.measurements["stream_gram_distance"],
            "flagged_with_base": with_base.flagged, "flagged_clean": clean_detect.flagged,
            "ov_imbalance_clean": detect_without_base(experts[t], config=config).measurements["ov_imbalance_median"],
            "ov_imbalance_locked": detect_without_base(locked, config=config).measurements["ov_imbalance_median"],
            "stream_recovery": stream,
        }

    sweep, attacks = [], []
    for method, params in methods.items():
        def merge(pool):
            return merge_state_dicts(method, setup.base, pool, exclude=setup.exclude, **params)

        def circuit(pool, forms_of_pool=None):
            return circuit_merge(method, setup.base, pool, config=config, exclude=setup.exclude,
                                 residual_forms=forms_of_pool, **params)

        clean = merge([experts[t] for t in tasks])
        circuit_clean = circuit([experts[t] for t in tasks])
        for t in tasks:
            floor, n = per_task[t]["chance"], per_task[t]["test_size"]
            clean_acc = setup.evaluate(clean, t)

            def swapped(replacement):
                return [replacement if u == t else experts[u] for u in tasks]

            row = {"method": method, "protected_task": t, "clean_merge": clean_acc, "chance": floor,
                   "base": per_task[t]["base"], "cells": {}}
            cells = [("default", b) for b in bounds] + [(v, DEFAULT_BOUND) for v in variants if v != "default"]
            for variant, b in cells:
                locked = protected[(variant, b, t)]
                merged = merge(swapped(locked))
                acc = setup.evaluate(merged, t, head_source=locked)  # the head published with the expert
                cell = {"acc": acc, "retained": retained(acc, clean_acc, floor),
                        "se": retained_se(acc, clean_acc, floor, n)}
                if variant == "default" and b == DEFAULT_BOUND:
                    # collateral damage to the tasks that were not protected
                    row["others_clean"] = statistics.mean(setup.evaluate(clean, u) for u in tasks if u != t)
                    row["others_locked"] = statistics.mean(setup.evaluate(merged, u) for u in tasks if u != t)
                    if setup.has_heads:  # the clean expert's head, which a merger does not have
                        acc_clean_head = setup.evaluate(merged, t)
                        row["clean_head"] = {"acc": acc_clean_head,
                                             "retained": retained(acc_clean_head, clean_acc, floor)}
                    if setup.secondary is not None:
                        score = setup.secondary[1]
                        row["secondary"] = {"base": score(setup.base, t), "clean_merge": score(clean, t),
                                            "locked": score(merged, t)}
                row["cells"][f"{variant}@{b:g}"] = cell
            sweep.append(row)
            circuit_clean_acc = setup.evaluate(circuit_clean, t)
            for b in attack_bounds:
                aga = setup.evaluate(merge(swapped(restored[(b, t)])), t, head_source=restored[(b, t)])
                pool_forms = [form if u == t else "none" for u in tasks]
                circ = setup.evaluate(circuit(swapped(protected[("default", b, t)]), pool_forms), t,
                                      head_source=realigned[(b, t)])
                extra = {}
                if general:
                    acc = setup.evaluate(merge(swapped(general[(b, t)])), t, head_source=general[(b, t)])
                    extra = {"aga_general_merge": acc, "aga_general_retained": retained(acc, clean_acc, floor)}
                locked_cell = row["cells"].get(f"default@{b:g}")
                attacks.append({**extra, "method": method, "protected_task": t, "bound": b, "clean_merge": clean_acc,
                                "locked_merge": None if locked_cell is None else locked_cell["acc"],
                                "aga_merge": aga, "aga_retained": retained(aga, clean_acc, floor),
                                "circuit_clean_merge": circuit_clean_acc, "circuit_locked_merge": circ,
                                "circuit_retained": retained(circ, clean_acc, floor)})
    return {"setup": setup.name, "seed": setup.seed, "built": setup.root.name, "metric": setup.metric,
            "secondary": None if setup.secondary is None else setup.secondary[0], "has_heads": setup.has_heads,
            "per_task": per_task, "sweep": sweep, "attacks": attacks, "methods": methods, "bounds": list(bounds),
            "attack_bounds": list(attack_bounds), "variants": list(variants), "forms": forms,
            "key_id": FIGURE_KEY.key_id, "seconds": time.time() - started}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _cell(cell: dict) -> str:
    return f"{_pct(cell['acc'])} ({_pct(cell['retained'])})"


def markdown(results: dict, *, command: str = "python -m attacks.restoration.run --out docs/mergelock-figures.md",
             level: int = 1) -> str:
    h = "#" * level
    bounds, first = results["bounds"], DEFAULT_BOUND
    metric = results.get("metric", "accuracy")
    forms = results["forms"]
    if all(v["chance"] == 0 for v in results["per_task"].values()):
        retained_note = (f"Metric: {metric} on held-out prompts, which has no chance level, so retained = acc / "
                         "clean merge acc (0% = nothing right, 100% = unharmed); the base's own score is in the "
                         "first table.")
    else:
        retained_note = (f"Metric: {metric}. retained = (acc - chance) / (clean merge acc - chance): 0% = chance, "
                         "100% = unharmed.")
    head_note = (" The protected task is scored with the head published with the protected expert (rotated with "
                 "its body); the other tasks with their own heads.") if results.get("has_heads") else ""
    lines = [f"{h} MergeLock figures: {results['setup']}", "",
             f"Models: cache entry `{results.get('built', '?')}` (content-hashed build spec). Default lock: "
             f"attention transforms, MLP hidden-unit permutation and the residual stream as "
             f"`{forms['default']}`.", "",
             f"{h}# Experts, protected experts alone, detection (bound {first:g})", "",
             "| task | chance | base | expert | protected expert alone (bound " + ", ".join(f"{b:g}" for b in bounds)
             + ") | attention distance clean / locked | MLP distance locked | embeddings: distance clean / locked, "
               "Gram distance locked | flagged: protected / clean | OV imbalance clean / locked |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for t, v in results["per_task"].items():
        alone = " / ".join(_pct(v["protected_standalone"][str(b)]) for b in bounds)
        stream = "n/a" if v["stream_distance_locked"] is None else (
            f"{v['stream_distance_clean']:.3f} / {v['stream_distance_locked']:.3f}, {v['stream_gram_distance_locked']:.3f}")
        lines.append(
            f"| {t} | {_pct(v['chance'])} | {_pct(v['base'])} | {_pct(v['expert'])} | {alone} | "
            f"{v['attention_distance_clean']:.3f} / {v['attention_distance_locked']:.3f} | "
            f"{v['mlp_distance_locked']:.3f} | {stream} | {v['flagged_with_base']} / {v['flagged_clean']} | "
            f"{v['ov_imbalance_clean']:.3f} / {v['ov_imbalance_locked']:.3f} |")
    n_experts = len(results["per_task"])
    lines += ["", f"{h}# Unmergeability: the protected task after merging all {n_experts} experts, one protected",
              "", "Default lock, bound swept. " + retained_note + head_note
              + f" The acceptance goal is retained <= {100 * GOAL:g}%. The standard error of a retained figure "
                "(binomial, from the test-set size) is in the JSON output (`se`).",
              "Merge settings: " + "; ".join(f"{m} " + ", ".join(f"{k} {v}" for k, v in p.items())
                                             for m, p in results["methods"].items()) + ".", "",
              "| method | protected task | base alone | clean merge | "
              + " | ".join(f"bound {b:g} (retained)" for b in bounds)
              + f" | the other {n_experts - 1} tasks, mean: clean merge / with protected (bound {first:g}) |",
              "|---|---|---|---|" + "---|" * (len(bounds) + 1)]
    for r in results["sweep"]:
        cells = " | ".join(_cell(r["cells"][f"default@{b:g}"]) for b in bounds)
        others = f"{_pct(r['others_clean'])} / {_pct(r['others_locked'])}" if "others_clean" in r else "n/a"
        lines.append(f"| {r['method']} | {r['protected_task']} | {_pct(r['base'])} | {_pct(r['clean_merge'])} | "
                     f"{cells} | {others} |")
    variants = [v for v in results["variants"] if v != "default"]
    if variants:
        lines += ["", f"{h}## The lock's variants at bound {first:g}", "",
                  "| method | protected task | clean merge | " + " | ".join(
                      f"{v}: {VARIANT_FLAGS[v]}, stream `{forms[v]}` (retained)" for v in ["default", *variants]) + " |",
                  "|---|---|---|" + "---|" * (len(variants) + 1)]
        for r in results["sweep"]:
            cells = " | ".join(_cell(r["cells"][f"{v}@{first:g}"]) for v in ["default", *variants])
            lines.append(f"| {r['method']} | {r['protected_task']} | {_pct(r['clean_merge'])} | {cells} |")
    if results.get("has_heads"):
        lines += ["", f"Scored with the clean expert's own head instead (which a merger does not have), default lock, "
                      f"bound {first:g}:", "", "| method | protected task | clean merge | with protected expert (retained) |",
                  "|---|---|---|---|"]
        for r in results["sweep"]:
            lines.append(f"| {r['method']} | {r['protected_task']} | {_pct(r['clean_merge'])} | {_cell(r['clean_head'])} |")
    if results.get("secondary"):
        name = results["secondary"]
        lines += ["", f"{name.capitalize()} on the protected task (a softer score than {metric}), default lock, bound "
                      f"{first:g}:", "", "| method | protected task | base alone | clean merge | with protected expert |",
                  "|---|---|---|---|---|"]
        for r in results["sweep"]:
            v = r["secondary"]
            lines.append(f"| {r['method']} | {r['protected_task']} | {_pct(v['base'])} | {_pct(v['clean_merge'])} | "
                         f"{_pct(v['locked'])} |")
    lines += ["", f"{h}# Attacks: the protected task after merging the attacker's version of the protected expert", "",
              "Default lock. AGA: Procrustes undoes the residual stream against the base (embeddings and matched MLP "
              "units, attacks/restoration/stream.py), then per-head least squares and unit matching "
              "(aga.py, neurons.py). Circuit-space merge: Procrustes, then merging W_Q^T W_K and W_O W_V.", "",
              "| bound | method | protected task | clean merge | with protected expert | AGA restore, then merge "
              "(retained) | circuit-space merge: clean / with protected (retained) |",
              "|---|---|---|---|---|---|---|"]
    for r in results["attacks"]:
        locked = "n/a" if r["locked_merge"] is None else _pct(r["locked_merge"])
        aga = f"{_pct(r['aga_merge'])} ({_pct(r['aga_retained'])})"
        if "aga_general_merge" in r:
            aga += f"; general QK fit: {_pct(r['aga_general_merge'])} ({_pct(r['aga_general_retained'])})"
        lines.append(
            f"| {r['bound']:g} | {r['method']} | {r['protected_task']} | {_pct(r['clean_merge'])} | {locked} | "
            f"{aga} | {_pct(r['circuit_clean_merge'])} / "
            f"{_pct(r['circuit_locked_merge'])} ({_pct(r['circuit_retained'])}) |")
    recovered = [v["stream_recovery"] for v in results["per_task"].values() if v.get("stream_recovery")]
    if recovered:
        lines += ["", "Procrustes against the base recovers the residual transform (`" + forms["default"] + "`): "
                  + "; ".join(f"{t}: " + (f"{100 * v['stream_recovery']['dims_recovered']:.1f}% of the dims"
                                          if "dims_recovered" in v["stream_recovery"]
                                          else f"max entry error {v['stream_recovery']['max_abs_error']:.3g}")
                              for t, v in results["per_task"].items() if v.get("stream_recovery")) + "."]
    lines += ["", "AGA's recovery of the attention task vector after the full attack (cosine with the true tau; "
                  "error / ||tau||):", ""]
    for t, v in results["per_task"].items():
        parts = [f"bound {b}: cos {r['cosine']:.3f}, err {r['error_over_tau']:.3f}" for b, r in v["aga_recovery"].items()]
        parts += [f"general QK fit, bound {b}: cos {r['cosine']:.3f}, err {r['error_over_tau']:.3f}"
                  for b, r in v.get("aga_general_recovery", {}).items()]
        lines.append(f"- {t}: " + "; ".join(parts))
    lines += ["", f"Lock key id {results['key_id']} (a fixed figure key and nonce); run time {results['seconds']:.0f} s.",
              ""]
    return "\n".join(lines)


def goal_table(all_results: list[dict], *, variant: str = "default") -> list[str]:
    """Per method and task, retained at the default bound on every seed, the worst, and the verdict."""
    seeds = [r["seed"] for r in all_results]
    lines = ["| method | protected task | " + " | ".join(f"seed {s}: retained (se)" for s in seeds)
             + f" | worst | <= {100 * GOAL:g}%? |", "|---|---|" + "---|" * (len(seeds) + 2)]
    for i, row in enumerate(all_results[0]["sweep"]):
        cells = [r["sweep"][i]["cells"][f"{variant}@{DEFAULT_BOUND:g}"] for r in all_results]
        worst = max(c["retained"] for c in cells)
        lines.append(f"| {row['method']} | {row['protected_task']} | "
                     + " | ".join(f"{_pct(c['retained'])} ({_pct(c['se'])})" for c in cells)
                     + f" | {_pct(worst)} | {'yes' if worst <= GOAL else '**no**'} |")
    return lines


def markdown_seeds(all_results: list[dict], *, command: str) -> str:
    first = all_results[0]
    variants = first["variants"]
    lines = [f"<!-- generated by: {command} -->",
             f"# MergeLock figures: {first['setup'].split(', seed')[0]}, seeds "
             + ", ".join(str(r["seed"]) for r in all_results), "",
             f"## Goal check: retained on the protected task at bound {DEFAULT_BOUND:g}, every seed", "",
             f"Default lock (`guard protect`: residual stream `{first['forms']['default']}`). se: binomial standard "
             "error of the retained figure from the test-set size.", "", *goal_table(all_results), ""]
    for variant in variants:
        if variant == "default":
            continue
        lines += [f"The same for the {variant} variant ({VARIANT_FLAGS[variant]}, stream `{first['forms'][variant]}`):",
                  "", *goal_table(all_results, variant=variant), ""]
    for r in all_results:
        lines += [markdown(r, command=command, level=2), ""]
    return "\n".join(lines)


def _methods_arg(text: str) -> dict[str, dict]:
    """--methods: a JSON object {method: {param: value}} (argparse turns the ValueError into exit 2)."""
    value = json.loads(text)
    if not isinstance(value, dict) or not value or not all(isinstance(p, dict) for p in value.values()):
        raise ValueError("expected a JSON object {method: {param: value}}")
    return value


def _bounds_arg(text: str) -> tuple[float, ...]:
    bounds = tuple(float(b) for b in text.split(",") if b.strip())
    if not bounds or any(not 1.0 < b <= 64.0 for b in bounds):
        raise ValueError("expected comma-separated bounds in (1, 64]")
    return bounds


def _variants_arg(text: str) -> tuple[str, ...]:
    variants = tuple(v for v in text.split(",") if v.strip())
    if not variants or "default" not in variants or set(variants) - set(VARIANTS):
        raise ValueError(f"expected comma-separated variants among {', '.join(VARIANTS)}, default included")
    return variants


def _seeds_arg(text: str) -> list[int]:
    seeds = [int(s) for s in text.split(",") if s.strip()]
    if not seeds or any(s < 0 for s in seeds):
        raise ValueError("expected comma-separated non-negative seeds")
    return seeds


ZOO_SETUPS = ("small", "full", "lm-small", "lm-full")


def zoo_setup(name: str, *, seed: int = 0) -> MergeSetup:
    if name.startswith("lm-"):
        return load_lm_zoo_setup(name.removeprefix("lm-"), seed=seed)
    return load_zoo_setup(name, seed=seed)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, required=True, help="markdown file to write")
    parser.add_argument("--json", type=pathlib.Path, help="also write the raw numbers here")
    parser.add_argument("--zoo", choices=ZOO_SETUPS, help="use a model zoo family instead: the vision family "
                        "(small, full) or the LM family (lm-small, lm-full)")
    parser.add_argument("--seeds", type=_seeds_arg, default=[0], help="zoo seeds, comma-separated (default 0)")
    parser.add_argument("--bounds", type=_bounds_arg, default=BOUNDS, help="bounds swept for the default lock, "
                        "comma-separated (default 2,4,8,16; must include 8)")
    parser.add_argument("--attack-bounds", type=_bounds_arg, default=ATTACK_BOUNDS, help="bounds the attacks run at "
                        "(default 8,16)")
    parser.add_argument("--variants", type=_variants_arg, default=tuple(VARIANTS),
                        help=f"lock variants measured at bound 8, comma-separated (default {','.join(VARIANTS)})")
    parser.add_argument("--methods", type=_methods_arg, help="merge settings instead of the setup's, as JSON: "
                        "'{\"task_arithmetic\": {\"scale\": 0.3}, \"ties\": {\"density\": 0.2, \"scale\": 1.0}}'")
    args = parser.parse_args(argv)
    if not args.zoo and args.seeds != [0]:
        parser.error("--seeds needs --zoo (the digits setup has one seed)")
    if DEFAULT_BOUND not in args.bounds:
        parser.error(f"--bounds must include the default bound {DEFAULT_BOUND:g}")
    all_results = []
    for seed in args.seeds:
        setup = zoo_setup(args.zoo, seed=seed) if args.zoo else load_setup()
        if args.methods:
            setup = dataclasses.replace(setup, methods=args.methods)
        try:
            all_results.append(run(setup=setup, bounds=args.bounds, attack_bounds=args.attack_bounds,
                                   variants=args.variants))
        except InputError as exc:  # e.g. an unknown merge method or parameter in --methods
            parser.error(str(exc))
    command = ("python -m attacks.restoration.run" + (f" --zoo {args.zoo}" if args.zoo else "")
               + (f" --seeds {','.join(map(str, args.seeds))}" if args.zoo else "")
               + (f" --bounds {','.join(f'{b:g}' for b in args.bounds)}" if tuple(args.bounds) != BOUNDS else "")
               + (f" --attack-bounds {','.join(f'{b:g}' for b in args.attack_bounds)}"
                  if tuple(args.attack_bounds) != ATTACK_BOUNDS else "")
               + (f" --variants {','.join(args.variants)}" if tuple(args.variants) != tuple(VARIANTS) else "")
               + (f" --methods '{json.dumps(args.methods)}'" if args.methods else "") + f" --out {args.out}")
    text = markdown_seeds(all_results, command=command)
    write_atomically(args.out, text)
    if args.json:
        write_atomically(args.json, json.dumps(all_results, indent=2))
    print(text)


if __name__ == "__main__":
    main()
