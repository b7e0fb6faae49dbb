"""Run time and peak memory of the DAM and EnchTable stages against the plain merge, in the same run:
`guard safe-merge` of the LM zoo's base + 4 experts (task arithmetic, the profile's lambda), each in a
fresh process measured with wait4 (wall, user+sys CPU, peak RSS), interleaved per round.

    python -m benchmarks.defenses_cost [--rounds 3] [--dam-steps 20] [--stages plain enchtable ...]

Runs: `plain`, `enchtable` (the reference's alpha: a norm pass over the merge), `enchtable-inputs`
(`alpha: inputs`: the inputs' norms, no merge pass), `dam`.

Same policy for every run: strict with MergeLock detection off (its cost is measured in docs/merge.md),
so the differences are the stages'. DAM runs `--dam-steps` mask steps and half as many coefficient steps
(its cost is linear in them; the per-step figure is printed).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import statistics
import sys
import tempfile

import torch
import yaml

from benchmarks.merge import sign_models, timed, write_policy_without_detection


def prepare(root: pathlib.Path, *, dam_steps: int) -> dict[str, pathlib.Path]:
    from attacks.safety import build_safety_pair
    from guard.artifacts import open_model_dir
    from guard.artifacts.writer import write_safetensors
    from guard.defenses.enchtable.vector import write_safety_vector

    pair = build_safety_pair("small", seed=0)
    family = pair.family
    base = root / "base"
    shutil.copytree(family.base, base)
    experts = []
    for task in family.tasks:
        experts.append(root / task)
        shutil.copytree(family.experts[task], experts[-1])
    surrogate, harmful = open_model_dir(base), open_model_dir(pair.harmful)
    delta = {n: t.float() - harmful.get_tensor(n).float() for n, t in surrogate.iter_tensors() if t.is_floating_point()}
    write_safety_vector(root / "vector", surrogate=surrogate, delta=delta, recipe={"source": "zoo safety pair"})
    private, public = sign_models([base, *experts, root / "vector"], root)
    calibration = {}
    for task, expert in zip(family.tasks, experts):
        path = root / f"calibration-{task}.safetensors"
        write_safetensors(path, family.calibration_inputs(task))
        calibration[str(expert)] = str(path)
    scale = family.profile.merge_params()["task_arithmetic"]["scale"]
    plain = {"merge_method": "task_arithmetic", "base_model": str(base), "parameters": {"lambda": scale},
             "models": [{"model": str(e), "parameters": {"weight": 1.0}} for e in experts]}
    sections = {
        "plain": {},
        "enchtable": {"enchtable": {"vector": str(root / "vector")}},
        "enchtable-inputs": {"enchtable": {"vector": str(root / "vector"), "alpha": "inputs"}},
        "dam": {"dam": {"calibration": calibration, "steps": dam_steps, "adamerging_steps": max(1, dam_steps // 2),
                        "granularity": "row", "answer_tokens": 4}},
    }
    configs = {}
    for label, guard in sections.items():
        configs[label] = root / f"{label}.yml"
        configs[label].write_text(yaml.safe_dump({**plain, **({"guard": guard} if guard else {})}))
    return {"private": private, "public": public, "policy": write_policy_without_detection(root / "policy.yml"),
            **{f"config:{k}": v for k, v in configs.items()}}


STAGES = ("plain", "enchtable", "enchtable-inputs", "dam")


def run(*, rounds: int = 3, dam_steps: int = 20, workdir: pathlib.Path | None = None, stages=STAGES) -> dict:
    stages = ("plain", *(s for s in stages if s != "plain"))
    with tempfile.TemporaryDirectory(prefix="guard-defenses-cost-", dir=workdir) as tmp:
        root = pathlib.Path(tmp)
        paths = prepare(root, dam_steps=dam_steps)
        runs: dict[str, list[dict]] = {}
        records = {}
        for _ in range(rounds):
            for label in stages:
                out = root / f"out-{label}"
                argv = [sys.executable, "-m", "guard", "safe-merge", str(paths[f"config:{label}"]), "--out", str(out),
                        "--key", str(paths["public"]), "--sign-key", str(paths["private"]), "--policy",
                        str(paths["policy"]), "--json"]
                result = timed(argv)
                records[label] = json.loads(result.pop("stdout"))
                runs.setdefault(label, []).append(result)
                print(json.dumps({"label": label, **result}), file=sys.stderr, flush=True)
                shutil.rmtree(out)
    med = {label: {k: statistics.median(r[k] for r in rs) for k in ("wall", "cpu", "rss")} for label, rs in runs.items()}
    stage_seconds = {}
    for label, record in records.items():
        for check in record["checks"]:
            if check["check"] == "dam":
                stage_seconds[label] = check["details"]["seconds"]
            elif check["check"] == "enchtable":
                stage_seconds[label] = check["details"]["norm_pass_seconds"]  # vector read + alpha
    return {"rounds": rounds, "dam_steps": dam_steps, "medians": med, "runs": runs,
            "ratios": {label: {k: med[label][k] / med["plain"][k] for k in ("wall", "cpu", "rss")}
                       for label in stages if label != "plain"},
            "seconds_in_stage": stage_seconds,
            "verdicts": {label: r["verdict"] for label, r in records.items()}, "torch_threads": torch.get_num_threads()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dam-steps", type=int, default=20)
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    args = parser.parse_args(argv)
    report = run(rounds=args.rounds, dam_steps=args.dam_steps, stages=tuple(args.stages))
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
