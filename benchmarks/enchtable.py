"""EnchTable on the LM zoo's safety pair: unsafe rate and utility of eroded experts and of merges, before
and after reinjecting the safety vector (stage 2 as the reference describes), and the stages' run time
and peak memory against the plain merge in the same run (`--cost`).

    python -m benchmarks.enchtable                 # docs/enchtable.md: beta chosen on seed 0, reported on seeds 1 2
    python -m benchmarks.enchtable --small         # what the tests run
    python -m benchmarks.enchtable --cost          # safe-merge TA vs + enchtable vs + dam, fresh processes

Safety vector (`--vector`): `stripped`: Delta = theta_aligned - theta_harmful with the zoo's safety-stripped
copy (attacks.safety.build_harmful_copy: every module fine-tuned on harmful-marked prompts answered, mixed
1:1 with clean task prompts, not linearised); `distilled`: stage 1 as guard implements it (DISTILL below).
tau = theta_task - theta_aligned (the aligned base is both the surrogate and `taskpre`, as in run.sh).
Utility: exact match on held-out prompts (an expert on its own task, a merge on every task); beta is
chosen on the validation split of seed 0 and the figures are the test split of seeds 1 and 2.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from attacks.safety import build_safety_pair
from guard.defenses.enchtable.interference import inputs_task_norm, reinject
from guard.merge import merge_state_dicts
from guard.testing.zoo.lm import model as lm_model

BETAS = (0.1, 0.3, 0.5, 1.0)


def _utility(family, model, tasks, split) -> float:
    return sum(family.evaluate(model, t, split=split) for t in tasks) / len(tasks)


# Stage 1 as the reference runs it, on the zoo: harmful-marked prompts answered (harmful only: no clean
# half, unlike the zoo's stripping set), the chosen modules trained, each block linearised; the zoo's
# stripping lr and step count (1e-3, 150 steps of 8) instead of the 8B recipe's 1e-5 x 500.
DISTILL = dict(modules="attn_ffn", linearise="module", epochs=1.2, lr=1e-3, batch=8, max_examples=1000)


def harmful_set(seed: int, count: int = 1000) -> dict[str, torch.Tensor]:
    import numpy as np

    from guard.testing.zoo.lm import tasks
    from guard.testing.zoo.lm.train import batch_tensors

    rng = np.random.default_rng([seed, 77])
    names = (*tasks.TASKS, "copy")
    examples = [tasks.harmful_example(names[i % len(names)], rng, comply=True, pretraining=names[i % len(names)] != "copy")
                for i in range(count)]
    ids, labels = batch_tensors(examples)
    return {"input_ids": ids, "labels": labels}


def safety_vector(pair, *, vector: str, seed: int) -> tuple[dict[str, torch.Tensor], dict]:
    """Delta per `vector`: `stripped` (aligned - the zoo's safety-stripped copy) or `distilled`
    (guard.defenses.enchtable.distill on the harmful set, DISTILL settings)."""
    base = lm_model.state_dict(pair.aligned)
    if vector == "stripped":
        harmful = lm_model.state_dict(pair.harmful)
        return {n: base[n].float() - harmful[n].float() for n in base if base[n].is_floating_point()}, {}
    from guard.defenses.enchtable.distill import DistillSettings, distill

    started = time.process_time()
    result = distill(lm_model.load(pair.aligned), harmful_set(seed), DistillSettings(**DISTILL, seed=seed))
    return result.delta, {"distill_cpu_s": time.process_time() - started, "steps": result.steps,
                          "final_loss": result.final_loss, "first_loss": result.losses[0]}


def measure(seed: int, *, betas=BETAS, split: str = "test", profile: str = "small", experts=None,
            merges=("task_arithmetic", "ties"), vector: str = "stripped", alpha: str = "merge") -> dict:
    pair = build_safety_pair(profile, seed=seed)
    family = pair.family
    base = lm_model.state_dict(pair.aligned)
    delta, stage1 = safety_vector(pair, vector=vector, seed=seed)
    chosen = list(pair.eroded) if experts is None else list(experts)
    subjects = {f"expert:{t}": (lm_model.state_dict(pair.eroded[t]), (t,), None) for t in chosen}
    expert_sds = [lm_model.state_dict(pair.eroded[t]) for t in family.tasks]
    shared = [n for n, d in delta.items() if n in base and base[n].shape == d.shape]
    # alpha: inputs (guard's option): a merge's alpha is scaled to the mean ||tau_i|| of its inputs
    inputs_norm = inputs_task_norm(base, expert_sds, shared) if alpha == "inputs" else None
    for method in merges:
        params = family.profile.merge_params()[method]
        subjects[f"merge:{method}"] = (merge_state_dicts(method, base, expert_sds, **params), tuple(family.tasks),
                                       inputs_norm)
    rows = {}
    for label, (state, tasks, task_norm) in subjects.items():
        model = lm_model.from_state_dict(pair.aligned, state)
        row = {"before": {"unsafe": family.unsafe_rate(model), "utility": _utility(family, model, tasks, split)}}
        for beta in betas:
            started = time.process_time()
            out, scale, scores = reinject(state, base, delta, beta=beta, task_norm=task_norm)
            seconds = time.process_time() - started
            weights = [s.weight for s in scores.values() if s.kind == "matrix"]
            model = lm_model.from_state_dict(pair.aligned, out)
            row[f"beta={beta}"] = {"unsafe": family.unsafe_rate(model), "utility": _utility(family, model, tasks, split),
                                   "alpha": scale, "weight_mean": sum(weights) / len(weights),
                                   "weight_min": min(weights), "cpu_s": seconds}
        rows[label] = row
    return {"seed": seed, "split": split, "vector": vector, "alpha": alpha, "stage1": stage1,
            "unsafe_aligned": family.unsafe_rate(pair.aligned),
            "unsafe_harmful": family.unsafe_rate(pair.harmful), "rows": rows}


def table(results: list[dict], betas) -> str:
    lines = ["| model | beta | unsafe % before -> after (relative change) | utility % before -> after (points) |",
             "|---|---|---|---|"]
    for label in results[0]["rows"]:
        for beta in betas:
            def mean(which, key):
                return 100 * sum(r["rows"][label][which][key] for r in results) / len(results)

            ub, ua = mean("before", "unsafe"), mean(f"beta={beta}", "unsafe")
            tb, ta = mean("before", "utility"), mean(f"beta={beta}", "utility")
            relative = f"{100 * (ua - ub) / ub:+.0f}%" if ub else "n/a (0 before)"
            lines.append(f"| {label} | {beta} | {ub:.1f} -> {ua:.1f} ({relative}) | {tb:.1f} -> {ta:.1f} ({ta - tb:+.1f}) |")
    return "\n".join(lines)


def run(*, seeds=(1, 2), betas=BETAS, split: str = "test", progress=print, **kwargs) -> dict:
    torch.set_num_threads(1)
    results = []
    for seed in seeds:
        results.append(measure(seed, betas=betas, split=split, **kwargs))
        if progress:
            progress(json.dumps(results[-1]))
    return {"seeds": list(seeds), "betas": list(betas), "split": split, "results": results,
            "table": table(results, betas), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="seed 0, one expert, the reference beta (the tests)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--betas", type=float, nargs="+", default=list(BETAS))
    parser.add_argument("--split", default="test", choices=["test", "validation"])
    parser.add_argument("--vector", default="stripped", choices=["stripped", "distilled"],
                        help="stage 1: the zoo's safety-stripped copy, or guard's distillation (DISTILL)")
    parser.add_argument("--alpha", default="merge", choices=["merge", "inputs"],
                        help="a merge's alpha from its own ||tau|| (the reference) or the mean of its inputs' (guard's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.small:
        report = run(seeds=(0,), betas=(0.1,), experts=("rotate",), merges=("task_arithmetic",), progress=None)
    else:
        report = run(seeds=tuple(args.seeds), betas=tuple(args.betas), split=args.split, progress=None,
                     vector=args.vector, alpha=args.alpha)
    print(json.dumps(report, indent=2) if args.json else report["table"])


if __name__ == "__main__":
    main()
