"""DAM: learnt masks and coefficients on tiny models, and the streaming merge computing exactly that merge."""

from __future__ import annotations

import pytest
import torch

from guard.artifacts import open_model_dir
from guard.defenses.dam import DamSettings
from guard.defenses.dam.hook import DamHook
from guard.defenses.dam.models import run_on_model_dirs
from guard.merge.engine import MergeJob, run_merge
from guard.merge.methods import REGISTRY

QUICK = dict(steps=3, adamerging_steps=2, batch=4, mask_lr=0.05, adamerging_lr=0.01)


def _dirs(family):
    return open_model_dir(family.base), [open_model_dir(e) for e in family.experts]


def _dam(family, **settings):
    base, experts = _dirs(family)
    return run_on_model_dirs(base, experts, family.calibration, DamSettings(**{**QUICK, **settings}),
                             initial=[0.3, 0.3])


@pytest.mark.parametrize(("mode", "backdoor_mask"), [("paper", "shared"), ("code", "shared"), ("paper", "per_model"),
                                                     ("code", "per_model")])
def test_the_streaming_merge_with_the_dam_hook_is_the_learnt_merge(vit_family, tmp_path, mode, backdoor_mask):
    result = _dam(vit_family, mode=mode, final_mask="deterministic", granularity="row", backdoor_mask=backdoor_mask)
    per_model = backdoor_mask == "per_model"
    base, experts = _dirs(vit_family)
    assert not any(n.startswith("classifier.") for n in result.names)  # task heads are left alone
    assert result.coefficients.shape == (2, len(result.names))
    assert not torch.equal(result.coefficients, result.initial)  # AdaMerging moved them
    for name in result.names:  # a deterministic mask is 0/1, renormalised to mean 1 (per model's slice if per model)
        for mask in (result.masks[name] if per_model else [result.masks[name]]):
            values = set(mask.unique().tolist())
            assert len(values - {0.0}) <= 1 and mask.mean().item() == pytest.approx(1.0, abs=1e-5) or values == {0.0}
    job = MergeJob(method=REGISTRY.get("task_arithmetic"), base=base, models=experts,
                   model_settings=[{"weight": 0.3}, {"weight": 0.3}], settings={"lambda": 1.0}, labels=["a", "b"],
                   hooks=[hook := DamHook(result)])
    run_merge(job, tmp_path / "out")
    assert hook.applied == len(result.names)
    merged = dict(open_model_dir(tmp_path / "out").iter_tensors())
    base_sd, expert_sds = dict(base.iter_tensors()), [dict(e.iter_tensors()) for e in experts]
    assert all(result.masks[n].shape == ((2,) if per_model else ()) + base_sd[n].shape for n in result.names)
    for index, name in enumerate(result.names):
        masks = result.masks[name] if per_model else [result.masks[name]] * len(expert_sds)
        expected = base_sd[name] + sum(result.coefficients[i, index] * masks[i] * (sd[name] - base_sd[name])
                                       for i, sd in enumerate(expert_sds))
        torch.testing.assert_close(merged[name], expected, rtol=1e-5, atol=1e-6)
    # what DAM left alone is the configured task arithmetic
    head = "classifier.weight"
    torch.testing.assert_close(merged[head], base_sd[head] + sum(0.3 * (sd[head] - base_sd[head]) for sd in expert_sds))


def test_a_seed_reproduces_the_run_and_another_seed_does_not(vit_family):
    first, again, other = _dam(vit_family), _dam(vit_family), _dam(vit_family, seed=1)
    assert all(torch.equal(first.masks[n], again.masks[n]) for n in first.names)
    assert torch.equal(first.coefficients, again.coefficients)
    assert not all(torch.equal(first.masks[n], other.masks[n]) for n in first.names)


def test_paper_mode_trains_two_masks_and_code_mode_one(vit_family):
    paper, code = _dam(vit_family, mode="paper"), _dam(vit_family, mode="code")
    assert not all(torch.equal(paper.masks[n], code.masks[n]) for n in paper.names)
    summary = paper.summary(["a", "b"])
    assert summary["mode"] == "paper" and set(summary["coefficient_by_model"]) == {"a", "b"}
    assert 0 < summary["kept"] <= 1 and summary["entries"] == sum(paper.masks[n].numel() for n in paper.names)


def test_task_wise_coefficients_are_one_per_model(vit_family):
    result = _dam(vit_family, coefficients="task", granularity="block", block=8)
    assert all(torch.equal(result.coefficients[:, 0], result.coefficients[:, j]) for j in range(len(result.names)))


def test_decoder_lm_tasks_with_a_bounded_soft_prompt_trigger(llama_family):
    result = _dam(llama_family, mode="code", consistency="kl", trigger_bound=0.5, soft_tokens=2, answer_tokens=3,
                  granularity="row")
    embedding = open_model_dir(llama_family.base).get_tensor("model.embed_tokens.weight")
    limit = 0.5 * float(embedding.float().norm(dim=-1).mean())
    assert all(0 < norm <= limit * 2 ** 0.5 + 1e-5 for norm in result.trigger_norms)
    assert "model.embed_tokens.weight" in result.names and result.history


def test_the_clean_anchor_is_an_option_that_changes_the_learnt_mask(vit_family):
    plain, anchored = _dam(vit_family, mode="code"), _dam(vit_family, mode="code", clean_anchor=5.0)
    assert plain.settings.clean_anchor == 0.0  # the faithful default
    assert not all(torch.equal(plain.masks[n], anchored.masks[n]) for n in plain.names)
