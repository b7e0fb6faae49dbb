"""BadNets and BadMerging against the small vision family: CA / BA / ASR as the papers define them.

Figures measured for the small profile, seed 0 (docs/zoo-vision.md), asserted with a margin:
BadNets ASR 96.6% before merging, 3.8% (TA) / 2.0% (TIES) after; BadMerging on-task 100% before,
93.0% (TA) / 100% (TIES) after; off-task 97.7% before, 73.1% (TA) / 83.3% (TIES) after.
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


def test_badmerging_off_task_transfers_to_the_victims_task(vision_figures):
    off = vision_figures["attacks"]["badmerging-off"]
    assert off["attacker_task"] != off["target_task"]
    assert off["asr_before"] >= 0.9
    for method in MERGES:
        m = off["merges"][method]
        assert m["asr"] >= 0.6, method  # small mode measured 73.1% (TA) and 83.3% (TIES), short of 90%
        assert m["asr_clean_merge"] <= 0.1


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
