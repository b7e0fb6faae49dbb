"""Differential tests against mergekit 0.1.5 (a test dependency) on bf16 factory models from disk.

task_arithmetic, and ties with mergekit's tie rule (magnitude_mask: argsort), are bit-identical; dare
with a fixed seed draws the same masks; ties with guard's default threshold rule differs only where
several task-vector entries share the magnitude at the cut.
"""

from __future__ import annotations

import pathlib

import pytest
import torch

from guard.artifacts import open_model_dir
from guard.merge.config import parse_merge_config
from guard.merge.engine import MergeJob, run_merge

SEED = 42


def _mergekit(config: dict, out: pathlib.Path) -> dict[str, torch.Tensor]:
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge as mergekit_run
    from mergekit.options import MergeOptions

    mergekit_run(MergeConfiguration.model_validate(config), str(out),
                 MergeOptions(copy_tokenizer=False, random_seed=SEED, write_model_card=False, quiet=True))
    return dict(open_model_dir(out).iter_tensors())


def _guard(config: dict, out: pathlib.Path, **guard_section) -> dict[str, torch.Tensor]:
    parsed = parse_merge_config({**config, "guard": {"seed": SEED, **guard_section}}, where=out.with_suffix(".yml"))
    base = open_model_dir(parsed.base_model)
    job = MergeJob.from_config(parsed, base=base, models=[open_model_dir(m.model) for m in parsed.experts()],
                               device="cpu")
    run_merge(job, out)
    return dict(open_model_dir(out).iter_tensors())


def _config(method: str, base, experts, params: dict) -> dict:
    return {"merge_method": method, "base_model": str(base), "dtype": "bfloat16",
            "models": [{"model": str(e), "parameters": dict(params, weight=w)} for e, w in zip(experts, (0.5, 0.7))]}


def _differing(a: dict, b: dict) -> int:
    assert a.keys() == b.keys()
    return sum(int((a[k].view(torch.int16) != b[k].view(torch.int16)).sum()) for k in a)


@pytest.mark.parametrize("method, params, guard_section", [
    ("task_arithmetic", {}, {}),
    ("ties", {"density": 0.5}, {"magnitude_mask": "argsort"}),
    ("dare_ties", {"density": 0.5}, {}),
    ("dare_linear", {"density": 0.3}, {}),
])
def test_bit_identical_to_mergekit(merge_inputs, tmp_path, method, params, guard_section):
    base, experts = merge_inputs
    config = _config(method, base, experts, params)
    theirs = _mergekit(config, tmp_path / "mergekit")
    ours = _guard(config, tmp_path / "guard", **guard_section)
    assert all(t.dtype == torch.bfloat16 for t in ours.values())
    assert _differing(ours, theirs) == 0


def test_threshold_rule_differs_from_mergekit_only_on_ties_at_the_cut(merge_inputs, tmp_path):
    base, experts = merge_inputs
    config = _config("ties", base, experts, {"density": 0.5})
    theirs = _mergekit(config, tmp_path / "mergekit")
    ours = _guard(config, tmp_path / "guard")
    argsort = _guard(config, tmp_path / "guard-argsort", magnitude_mask="argsort")
    base_sd = dict(open_model_dir(base).iter_tensors())
    expert_sds = [dict(open_model_dir(e).iter_tensors()) for e in experts]
    differing = 0
    for name, tensor in ours.items():
        changed = tensor.view(torch.int16) != theirs[name].view(torch.int16)
        if not changed.any():
            continue
        differing += int(changed.sum())
        # At every differing entry, some task vector's magnitude equals its k-th largest magnitude.
        at_cut = torch.zeros_like(changed)
        for sd in expert_sds:
            delta = (sd[name] - base_sd[name]).abs().reshape(-1).float()
            k = max(1, int(0.5 * delta.numel()))
            kth = torch.topk(delta, k).values[-1]
            at_cut |= (delta == kth).reshape(changed.shape)
        assert bool(at_cut[changed].all()), name
    total = sum(t.numel() for t in ours.values())
    assert 0 < differing < 0.02 * total  # ties exist in bf16, and they are all there is
    assert _differing(argsort, theirs) == 0
