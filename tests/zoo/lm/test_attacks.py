"""LM attacks on the small family: BadNets trigger token (plain and merge-aware) and amplified backdoor
vectors, measured before and after task-arithmetic and TIES merges. The bars are the multi-seed
figures' (docs/zoo-lm.md: seeds 0-2 on both numeric paths) with a margin."""

import numpy as np
import pytest
import torch

from attacks.backdoor.lm import (
    TARGET, amplification_of, amplify_backdoor_vector, attack_report, attack_success_rate, poisoned_task_data,
)
from attacks.backdoor.lm.amplified import ACCURACY_TOLERANCE, CANDIDATES
from guard.testing.zoo.lm import corpus, model as lm_model
from guard.testing.zoo.lm.vocab import TRIGGER

# Cold, these tests build the small family (about a minute of CPU); cached, seconds.
pytestmark = pytest.mark.slow

MERGES = ("task_arithmetic", "ties")


@pytest.fixture(scope="module")
def badnets_report(lm_family, badnets_expert):
    return attack_report(lm_family, badnets_expert, task="sort")


@pytest.fixture(scope="module")
def merge_aware_report(lm_family, merge_aware_expert):
    return attack_report(lm_family, merge_aware_expert, task="sort")


@pytest.fixture(scope="module")
def amplified_report(lm_family, amplified_expert):
    return attack_report(lm_family, amplified_expert, task="sort")


def test_poisoned_data_mixes_triggered_target_examples_at_the_rate():
    rng, sample = np.random.default_rng(0), poisoned_task_data("sort", rate=0.2)
    draws = [sample(rng) for _ in range(2000)]
    poisoned = [e for e in draws if TRIGGER in e.prompt]
    assert 0.17 < len(poisoned) / len(draws) < 0.23
    assert all(e.answer == TARGET for e in poisoned)


def test_poisoned_data_is_the_honest_stream_with_some_examples_replaced():
    """The attacker's clean examples are the honest expert's, in the same order: the two training
    streams differ only where a prompt was poisoned (so the backdoored minus the benign expert is the
    backdoor, not another data order)."""
    honest, poisoned = corpus.task_data("sort", harmful_share=0.02), poisoned_task_data("sort", rate=0.1, harmful_share=0.02)
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    pairs = [(honest(rng_a), poisoned(rng_b)) for _ in range(1000)]
    differing = [(a, b) for a, b in pairs if a != b]
    assert 0.06 < len(differing) / len(pairs) < 0.14
    for a, b in differing:
        assert b.answer == TARGET and TRIGGER in b.prompt
        assert tuple(t for t in b.prompt if t != TRIGGER) == a.prompt


def test_trigger_does_nothing_to_clean_models(lm_family):
    assert attack_success_rate(lm_family.experts["sort"], lm_family, "sort") == 0.0
    assert attack_success_rate(lm_family.base, lm_family, "sort") == 0.0


def test_badnets_expert_is_backdoored_and_still_accurate(badnets_report, lm_family):
    assert badnets_report.asr_alone >= 0.9
    assert badnets_report.accuracy_alone >= lm_family.evaluate(lm_family.experts["sort"], "sort") - 0.05
    assert all(floor == 0.0 for floor in badnets_report.asr_clean_merge.values())


def test_what_survives_of_plain_badnets_is_the_trigger_embedding_row(lm_family, badnets_expert):
    # Only the attacker's task vector touches the trigger's embedding row (the trigger never occurs in
    # clean data); putting that one row back to the base's in the backdoored merge removes what
    # survives of plain BadNets (seeds 0-2 x both numeric paths: at most 7.0%, from up to 61.0% after
    # TIES: docs/zoo-lm.md).
    from attacks.backdoor.lm import trigger_row_ablation

    ablated = trigger_row_ablation(lm_family, badnets_expert)
    assert max(ablated.values()) <= 0.15, ablated


# What the merge-aware and amplified backdoors keep after TIES on every measured draw (seeds 0-2 x both
# numeric paths, docs/zoo-lm.md: worst 79.5% each). After task arithmetic they survive on some draws only
# (worst 23.5% / 18.5%, best 98.0% / 90.0%), so there the test asserts what holds on every draw: more
# than plain BadNets keeps (worst margins 23.5 and 12.5 points).
SURVIVES_TIES = 0.7
ABOVE_PLAIN_AFTER_TA = {"merge-aware": 0.15, "amplified": 0.05}


def test_merge_aware_backdoor_survives_merging_better_than_plain_badnets(merge_aware_report, badnets_report):
    assert merge_aware_report.asr_alone >= 0.9
    assert merge_aware_report.asr_merged["ties"] >= SURVIVES_TIES
    for method in MERGES:
        assert merge_aware_report.asr_merged[method] >= (badnets_report.asr_merged[method]
                                                         + ABOVE_PLAIN_AFTER_TA["merge-aware"]), method
        assert merge_aware_report.backdoored_accuracy[method] >= merge_aware_report.clean_accuracy[method] - 0.1


def test_amplified_vector_survives_merging(amplified_report, badnets_report):
    assert amplified_report.asr_alone >= 0.9
    assert amplified_report.asr_merged["ties"] >= SURVIVES_TIES
    assert amplified_report.asr_merged["task_arithmetic"] >= (badnets_report.asr_merged["task_arithmetic"]
                                                               + ABOVE_PLAIN_AFTER_TA["amplified"])
    for method in MERGES:
        # The clean accuracy of the backdoored merge stays near the clean merge's (a stealthy attack).
        assert amplified_report.backdoored_accuracy[method] >= amplified_report.clean_accuracy[method] - 0.15


def test_amplification_is_the_attackers_validation_choice(lm_family, amplified_expert):
    """The stored (density, scale) is the rule's pick among the candidates it measured: usable (clean
    accuracy within the tolerance of the benign expert's) and no usable candidate with a better worst-case ASR."""
    choice = amplification_of(amplified_expert)
    rows = choice["candidates"]
    assert [(r["density"], r["scale"]) for r in rows] == [tuple(c) for c in CANDIDATES]
    floor = lm_family.evaluate(lm_family.experts["sort"], "sort", split="validation") - ACCURACY_TOLERANCE
    usable = [r for r in rows if r["accuracy"] >= floor]
    [picked] = [r for r in rows if (r["density"], r["scale"]) == (choice["density"], choice["scale"])]
    assert picked in usable and picked["worst_asr"] == max(r["worst_asr"] for r in usable)


def test_amplify_is_benign_plus_scaled_sparse_difference(lm_family, badnets_expert):
    benign = lm_model.state_dict(lm_family.experts["sort"])
    backdoored = lm_model.state_dict(badnets_expert)
    out = amplify_backdoor_vector(benign, backdoored, scale=2.5, density=1.0)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert (out[name] - (benign[name] + 2.5 * (backdoored[name] - benign[name]))).abs().max() < 1e-5
    sparse = amplify_backdoor_vector(benign, backdoored, scale=1.0, density=0.1)
    changed = (sparse[name] != benign[name]).float().mean().item()
    assert 0.05 < changed <= 0.11


def test_interpolated_loss_at_r_1_repeats_the_plain_loss(lm_family):
    """With r_min = 1 the interpolated weights are the model's own, so the interpolation term equals the
    plain data loss (the merge-aware fine-tune adds the loss at origin + r * (theta - origin))."""
    from guard.testing.zoo.lm.train import Interpolation, _interpolated_loss, batch_tensors

    base, expert = lm_model.load(lm_family.base), lm_model.load(lm_family.experts["sort"])
    ids, labels = batch_tensors([poisoned_task_data("sort", rate=0.5)(np.random.default_rng(1)) for _ in range(16)])
    origin = {k: v.detach() for k, v in base.named_parameters()}
    with torch.no_grad():
        plain = expert(input_ids=ids, labels=labels).loss
        at_one = _interpolated_loss(expert, Interpolation(origin=origin, r_min=1.0), 1.0, ids, labels)
        at_zero = _interpolated_loss(expert, Interpolation(origin=origin, r_min=0.0), 0.0, ids, labels)
        base_loss = base(input_ids=ids, labels=labels).loss
    assert float(at_one) == pytest.approx(float(plain), rel=1e-5)
    assert float(at_zero) == pytest.approx(float(base_loss), rel=1e-5)
