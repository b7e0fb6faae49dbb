"""Reproduce the MergeLock figures of docs/threat-model.md in one command:

    python -m attacks.restoration.run --out docs/mergelock-figures.md

On the trained digits-ViT setup (attacks/restoration/experts.py): for each task in turn protected,
and for task arithmetic, TIES and DARE: the protected task's accuracy after a clean merge, after a
merge with the protected expert, after the AGA attack restored that expert, and after merging in
circuit space; plus AGA's recovery of the task vector and the detector's numbers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import statistics
import time

import torch

from attacks.restoration.aga import aga_restore
from attacks.restoration.circuits import circuit_merge
from attacks.restoration.experts import HEAD, TASKS, MergeSetup, load_setup, split, task_data
from guard.lock.detect import detect_with_base, detect_without_base
from guard.lock.keys import LockKey
from guard.lock.state import protect_state
from guard.merge import merge_state_dicts

METHODS: dict[str, dict] = {
    "task_arithmetic": {"scale": 0.3},
    "ties": {"density": 0.2, "scale": 1.0},
    "dare": {"drop": 0.9, "scale": 0.3, "combine": "task_arithmetic"},
}
FIGURE_KEY = LockKey(hashlib.sha256(b"guard threat-model figures").digest())  # fixed: reproducible figures


def _is_head(name: str) -> bool:
    return name.startswith(HEAD)


def chance(task: str) -> float:
    _, y = task_data(task)
    labels = y[split(len(y), "test")]
    return float(torch.bincount(labels).max() / len(labels))


def retained(acc: float, clean: float, floor: float) -> float:
    """Share of the clean merge's above-chance accuracy that is kept: 1 = unharmed, 0 = chance."""
    return (acc - floor) / max(clean - floor, 1e-9)


def _attention_names(setup: MergeSetup) -> list[str]:
    return [k for k in setup.base if ".attention." in k and k.endswith("weight")]


def recovery(restored, truth, base, names) -> dict[str, float]:
    tau = torch.cat([(truth[k] - base[k]).flatten().double() for k in names])
    tau_hat = torch.cat([(restored[k] - base[k]).flatten().double() for k in names])
    return {"error_over_tau": float((tau_hat - tau).norm() / tau.norm()),
            "cosine": float(torch.nn.functional.cosine_similarity(tau_hat, tau, dim=0))}


def run(*, root=None) -> dict:
    torch.set_num_threads(2)
    started = time.time()
    setup = load_setup(root=root)
    tasks = list(TASKS)
    config = setup.config
    experts = setup.experts
    protected = {t: protect_state(experts[t], config=config, key=FIGURE_KEY) for t in tasks}
    restored = {t: aga_restore(protected[t], setup.base, config=config) for t in tasks}
    names = _attention_names(setup)

    per_task = {}
    for t in tasks:
        per_task[t] = {
            "chance": chance(t), "base": setup.evaluate(setup.base, t), "expert": setup.evaluate(experts[t], t),
            "protected_standalone": setup.evaluate(protected[t], t),
            "aga_recovery": recovery(restored[t], experts[t], setup.base, names),
            "detect_clean": detect_with_base(experts[t], setup.base, config=config).measurements[
                "attention_distance_median"],
            "detect_protected": detect_with_base(protected[t], setup.base, config=config).measurements[
                "attention_distance_median"],
            "detect_protected_mlp": detect_with_base(protected[t], setup.base, config=config).measurements[
                "mlp_distance_median"],
            "ov_imbalance_clean": detect_without_base(experts[t], config=config).measurements["ov_imbalance_median"],
            "ov_imbalance_protected": detect_without_base(protected[t], config=config).measurements[
                "ov_imbalance_median"],
        }

    rows = []
    for method, params in METHODS.items():
        def merge(pool):
            return merge_state_dicts(method, setup.base, pool, exclude=_is_head, **params)

        clean = merge([experts[t] for t in tasks])
        circuit_clean = circuit_merge(method, setup.base, [experts[t] for t in tasks], config=config,
                                      exclude=_is_head, **params)
        for t in tasks:
            def with_expert(replacement):
                return [replacement if u == t else experts[u] for u in tasks]

            locked = merge(with_expert(protected[t]))
            attacked = merge(with_expert(restored[t]))
            circuit_locked = circuit_merge(method, setup.base, with_expert(protected[t]), config=config,
                                           exclude=_is_head, **params)
            row = {
                "method": method, "protected_task": t,
                "clean_merge": setup.evaluate(clean, t),
                "locked_merge": setup.evaluate(locked, t),
                "aga_merge": setup.evaluate(attacked, t),
                "circuit_clean_merge": setup.evaluate(circuit_clean, t),
                "circuit_locked_merge": setup.evaluate(circuit_locked, t),
                "others_clean": statistics.mean(setup.evaluate(clean, u) for u in tasks if u != t),
                "others_locked": statistics.mean(setup.evaluate(locked, u) for u in tasks if u != t),
            }
            floor = per_task[t]["chance"]
            for key in ("locked_merge", "aga_merge", "circuit_locked_merge"):
                row[f"{key}_retained"] = retained(row[key], row["clean_merge"], floor)
            row["locked_merge_raw_ratio"] = row["locked_merge"] / row["clean_merge"]
            rows.append(row)
    return {"per_task": per_task, "merges": rows, "methods": METHODS, "key_id": FIGURE_KEY.key_id,
            "seconds": time.time() - started}


def markdown(results: dict) -> str:
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
    lines = ["<!-- generated by: python -m attacks.restoration.run --out docs/mergelock-figures.md -->",
             "# MergeLock figures (digits-ViT setup)", "",
             "## Experts and the protected standalone models", "",
             "| task | chance | base | expert | protected expert alone | AGA: cos(tau_hat, tau) | AGA: "
             "err/‖tau‖ | attn dist clean / locked | MLP dist locked | OV imbalance clean / locked |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for t, v in results["per_task"].items():
        lines.append(
            f"| {t} | {pct(v['chance'])} | {pct(v['base'])} | {pct(v['expert'])} | {pct(v['protected_standalone'])} | "
            f"{v['aga_recovery']['cosine']:.3f} | {v['aga_recovery']['error_over_tau']:.3f} | "
            f"{v['detect_clean']:.3f} / {v['detect_protected']:.3f} | {v['detect_protected_mlp']:.3f} | "
            f"{v['ov_imbalance_clean']:.3f} / {v['ov_imbalance_protected']:.3f} |")
    lines += ["", "## Accuracy on the protected task after merging all four experts", "",
              "retained = (acc - chance) / (clean merge acc - chance); 0% means the protected task is at chance.",
              "",
              "| method | protected task | clean merge | with protected expert (retained) | after AGA (retained) | "
              "circuit-space merge, clean / with protected (retained) | other tasks, clean / locked |",
              "|---|---|---|---|---|---|---|"]
    for r in results["merges"]:
        lines.append(
            f"| {r['method']} | {r['protected_task']} | {pct(r['clean_merge'])} | {pct(r['locked_merge'])} "
            f"({pct(r['locked_merge_retained'])}) | {pct(r['aga_merge'])} ({pct(r['aga_merge_retained'])}) | "
            f"{pct(r['circuit_clean_merge'])} / {pct(r['circuit_locked_merge'])} "
            f"({pct(r['circuit_locked_merge_retained'])}) | {pct(r['others_clean'])} / {pct(r['others_locked'])} |")
    lines += ["", f"Lock key id {results['key_id']} (a fixed figure key); run time {results['seconds']:.0f} s.", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, required=True, help="markdown file to write")
    parser.add_argument("--json", type=pathlib.Path, help="also write the raw numbers here")
    args = parser.parse_args(argv)
    results = run()
    args.out.write_text(markdown(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(markdown(results))


if __name__ == "__main__":
    main()
