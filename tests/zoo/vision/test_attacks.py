"""BadNets and BadMerging against the small vision family: CA / BA / ASR as the papers define them.

The bars are the multi-seed figures' (docs/zoo-vision.md: seeds 0-2 x both numeric paths, worst case)
with a margin. Where the published level does not hold on every draw the test asserts what does, and
the docs say so: BadMerging keeps >= 90% ASR after TIES on every draw (worst 97.1% on-task, 98.6%
off-task) but after task arithmetic only on 5 of 6 (worst 76.6% on-task, 77.2% off-task); the
off-task patch alone fools the clean merge on up to 32.3% (published: <= 15%); BadNets after merging
stays under the published 20% on every draw, with a thin margin (worst 19.6%).
"""

from __future__ import annotations

import pytest

MERGES = ("task_arithmetic", "ties")
# ASR after merging that BadMerging keeps on every measured draw (the published level is 90%).
BADMERGING_ASR_AFTER = {"task_arithmetic": 0.70, "ties": 0.90}


def test_badnets_works_alone_and_fades_after_merging(vision_figures):
    badnets = vision_figures["attacks"]["badnets"]
    assert badnets["asr_before"] >= 0.9
    for method in MERGES:
        assert badnets["merges"][method]["asr"] <= 0.3, method  # measured worst 19.6%


def test_badmerging_on_task_survives_merging(vision_figures):
    on = vision_figures["attacks"]["badmerging-on"]
    assert on["asr_before"] >= 0.95
    for method in MERGES:
        m = on["merges"][method]
        assert m["asr"] >= BADMERGING_ASR_AFTER[method], method
        assert m["asr_clean_merge"] <= 0.2, "the trigger alone must not fool the clean merge"  # worst 3.8%
        # the backdoored merge keeps the target task's clean accuracy (BA near CA; worst drop 14.2 points)
        assert m["ba"] >= m["ca"] - 0.2


# How far the victim task's clean accuracy may fall in the backdoored merge: the measured worst drop
# (5.2 points after task arithmetic, 13.2 after TIES, docs/zoo-vision.md) plus a margin.
OFF_TASK_BA_DROP = {"task_arithmetic": 0.08, "ties": 0.20}


def test_badmerging_off_task_transfers_to_the_victims_task(vision_figures):
    off = vision_figures["attacks"]["badmerging-off"]
    assert off["attacker_task"] != off["target_task"]
    assert off["asr_before"] >= 0.95
    for method in MERGES:
        m = off["merges"][method]
        assert m["asr"] >= BADMERGING_ASR_AFTER[method], method
        # The 6x6 patch alone fools the clean merge on up to 32.3% (partly an adversarial patch); the
        # attacker's vector adds at least 60.9 points to that on every draw.
        assert m["asr_clean_merge"] <= 0.4, method
        assert m["asr"] - m["asr_clean_merge"] >= 0.5, method
        assert m["ba"] >= m["ca"] - OFF_TASK_BA_DROP[method], "the victim task keeps most of its clean accuracy"


@pytest.mark.parametrize("method", MERGES)
def test_badmerging_beats_badnets_after_merging(vision_figures, method):
    attacks = vision_figures["attacks"]
    for mode in ("badmerging-on", "badmerging-off"):
        assert attacks[mode]["merges"][method]["asr"] >= attacks["badnets"]["merges"][method]["asr"] + 0.5


def test_attack_metadata_and_trigger(vision_family):
    from attacks.backdoor.vision import ON_TASK, build_badmerging

    backdoor = build_badmerging(vision_family, ON_TASK)  # cached by the session's measurement
    assert backdoor.kind == "badmerging-on" and backdoor.info["spec"]["alpha"] == 5.0
    trigger = backdoor.trigger
    assert trigger.size == ON_TASK.patch_size
    assert 0.0 <= float(trigger.pattern.min()) and float(trigger.pattern.max()) <= 1.0


def test_off_task_shadow_head_is_the_victims_target_row_plus_public_classes(vision_family):
    import torch

    from attacks.backdoor.vision import OFF_TASK
    from attacks.backdoor.vision.badmerging import shadow_head
    from guard.testing.zoo.vision import model as vit

    victim = vision_family.head(OFF_TASK.target_task)
    public = vit.head_of(vit.load(vision_family.base_dir))
    head = shadow_head(victim, public, target_class=OFF_TASK.target_class)
    assert torch.equal(head["weight"][0], victim["weight"][OFF_TASK.target_class])
    assert torch.equal(head["bias"][1:], public["bias"]) and head["weight"].shape[0] == 1 + len(public["bias"])


@pytest.mark.parametrize("consistency", [0.0, 3.0])
def test_weight_interpolation_term_at_r_1_repeats_the_feature_term(vision_family, consistency):
    """At r = 1 the interpolated weights are θ itself, so β = 1 must exactly double the paper's loss
    (clean terms and backdoor CE both evaluated twice at the same point)."""
    import torch

    from attacks.backdoor.vision.badmerging import fi_loss
    from attacks.backdoor.vision.trigger import PatchTrigger
    from guard.testing.zoo.vision import model as vit

    base = vit.load(vision_family.base_dir)
    attacker = vit.load(vision_family.expert_dir("digit_rot90"))
    pixels, labels = vision_family.task_data("digit_rot90", "train")
    pixels, labels = pixels[:32], labels[:32]
    head = vision_family.head("digit_rot90")
    trigger = PatchTrigger(torch.full((1, 4, 4), 0.5))

    def value(beta):
        loss = fi_loss(base, task_head=head, backdoor_head=head, trigger=trigger, target=0, alpha=5.0, r_min=1.0,
                       triggered_pool=pixels, labels=labels, clean_pixels=pixels, clean_consistency=consistency,
                       weight_interpolation=beta)
        with torch.no_grad():
            return float(loss(attacker, pixels[:8], torch.arange(8), torch.Generator().manual_seed(0)))

    paper = value(0.0)
    assert paper > 0
    assert value(1.0) == pytest.approx(2 * paper, rel=1e-5)
