"""BadNets and BadMerging against the small vision family: CA / BA / ASR as the papers define them.

Figures measured for the small profile, seed 0 (docs/zoo-vision.md), asserted with a margin:
BadNets ASR 96.6% before merging, 3.8% (TA) / 2.0% (TIES) after; BadMerging on-task 100% before,
93.0% (TA) / 100% (TIES) after; off-task 100% before, 80.4% (TA) / 94.4% (TIES) after, with the victim
task's BA within 3 points of CA (78.8 vs 79.0 TA, 69.4 vs 72.4 TIES).
"""

from __future__ import annotations

import pytest

MERGES = ("task_arithmetic", "ties")


def test_badnets_works_alone_and_fades_after_merging(vision_figures):
    badnets = vision_figures["attacks"]["badnets"]
    assert badnets["asr_before"] >= 0.9
    for method in MERGES:
        assert badnets["merges"][method]["asr"] <= 0.2, method


def test_badmerging_on_task_survives_merging(vision_figures):
    on = vision_figures["attacks"]["badmerging-on"]
    assert on["asr_before"] >= 0.95
    for method in MERGES:
        m = on["merges"][method]
        assert m["asr"] >= 0.90, method  # the published acceptance level
        assert m["asr_clean_merge"] <= 0.2, "the trigger alone must not fool the clean merge"
        assert m["ba"] >= m["ca"] - 0.1, "the backdoored merge keeps clean accuracy (BA close to CA)"


# Off-task ASR after merging, per merge: the published level where it is reached (TIES), the measured
# level less a margin where it is not (task arithmetic, docs/zoo-vision.md).
OFF_TASK_ASR = {"task_arithmetic": 0.75, "ties": 0.90}


def test_badmerging_off_task_transfers_to_the_victims_task(vision_figures):
    off = vision_figures["attacks"]["badmerging-off"]
    assert off["attacker_task"] != off["target_task"]
    assert off["asr_before"] >= 0.95
    for method in MERGES:
        m = off["merges"][method]
        assert m["asr"] >= OFF_TASK_ASR[method], method
        assert m["asr_clean_merge"] <= 0.15, "the trigger alone must not fool the clean merge"
        assert m["ba"] >= m["ca"] - 0.06, "the victim task keeps its clean accuracy in the backdoored merge"


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
