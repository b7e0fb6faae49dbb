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


@pytest.mark.parametrize("count, shape", [(1, (257, 129)), (2, (257, 129)), (3, (257, 129)), (4, (257, 129)),
                                          (5, (257, 129)), (2, (700, 1000)), (3, (613, 997))])
@pytest.mark.parametrize("method", ["ties", "task_arithmetic", "breadcrumbs_ties"])
def test_tensor_merges_match_mergekit_for_any_number_of_models(method, count, shape):
    """mergekit 0.1.5's in-memory merge_tensors against guard's, bf16, 1..5 models, mixed weights (some
    negative, some summing to zero on agreeing subsets: the divisor's special cases)."""
    from mergekit.merge_methods.api import merge_tensors as mergekit_merge

    from guard.merge.method import TensorGroup
    from guard.merge.methods import REGISTRY

    gen = torch.Generator().manual_seed(count)
    base = torch.randn(*shape, generator=gen).bfloat16()  # the larger shapes span several engine chunks
    models = [(base.float() + 0.05 * torch.randn(base.shape, generator=gen)).bfloat16() for _ in range(count)]
    models[0][:5] = base[:5]  # zero task vectors: entries that never agree
    weights = [0.5, -0.5, 0.7, 1.25, 0.3][:count]
    params = {"weight": weights, "density": 0.4, "gamma": 0.05}
    params = {k: v for k, v in params.items() if k == "weight" or method != "task_arithmetic"}
    if method != "breadcrumbs_ties":
        params.pop("gamma", None)
    theirs = mergekit_merge([base, *models], method, parameters=params, base_index=0, name="w")
    spec = REGISTRY.get(method)
    shared = {k: v for k, v in params.items() if k != "weight"}
    for rule in ("argsort", "threshold"):
        group = TensorGroup(name="w", base=base, models=list(models),
                            model_params=[spec.model_params.model_validate({**shared, "weight": w}) for w in weights],
                            params=spec.params.model_validate({}), magnitude_mask=rule)
        ours = spec.merge(group)
        changed = ours.view(torch.int16) != theirs.view(torch.int16)
        if rule == "argsort" or method == "task_arithmetic":
            assert not changed.any()
        else:  # the tie rule: only entries where some model's magnitude equals a cut of its kept band differ
            assert bool(_at_a_cut(base, models, method, density=0.4, gamma=0.05)[changed].all())


def _at_a_cut(base, models, method, *, density, gamma):
    """Entries where some model's task-vector magnitude equals the magnitude at an edge of its kept band."""
    at_cut = torch.zeros(base.shape, dtype=torch.bool)
    for model in models:
        magnitude = (model - base).abs().float()
        ranked = magnitude.reshape(-1).sort(descending=True).values
        n = ranked.numel()
        if method == "ties":
            edges = [ranked[max(1, int(density * n)) - 1]]
        else:
            keep, top = int(density * n), min(int(gamma * n), n - int(density * n))
            edges = [ranked[top + keep - 1]] + ([ranked[top - 1]] if top else [])
        for edge in edges:
            at_cut |= magnitude == edge
    return at_cut
