"""Patch inversion on the trained vision zoo (small profile, seed 0), with a cheap setting (one location,
few steps): BadMerging off-task aims at a peer's class and is found through that peer's head on the
candidate as a merge would weight it; a clean expert of the same task shows no such patch."""

from __future__ import annotations

import pytest

from guard.artifacts import open_model_dir
from guard.probes.inputs import ScanInputs, read_calibration
from guard.probes.scan import scan
from guard.probes.settings import ProbeSettings


@pytest.fixture(scope="module")
def vision(small_zoo):
    from benchmarks.zoo_vision import ATTACKS
    from guard.testing.zoo.vision import build_family

    family = build_family("small", seed=0)
    return family, ATTACKS["badmerging-off"](family)


def _scan(family, model, task):
    settings = ProbeSettings()
    cheap = settings.patch_inversion.model_copy(update={"locations": ("bottom-right",), "steps": 20})
    inputs = ScanInputs(candidate=open_model_dir(model), base=open_model_dir(family.base_dir),
                        peers=[open_model_dir(p) for t, p in family.expert_dirs.items() if t != task],
                        calibration=read_calibration(family.calibration_path(task), kind="image-classifier"),
                        shared={})
    return scan(inputs, settings.model_copy(update={"patch_inversion": cheap}), probes=["patch_inversion"])


def test_badmerging_off_task_target_is_found_through_the_victims_head(vision):
    family, backdoor = vision
    result = _scan(family, backdoor.model_dir, backdoor.attacker_task).result("patch_inversion")
    top = result.evidence[0].where
    assert top.startswith(f"class {backdoor.target_class} of head peer:{backdoor.target_task}"), result.evidence
    clean = _scan(family, family.expert_dir(backdoor.attacker_task), backdoor.attacker_task).result("patch_inversion")
    assert result.score > 1.5 * clean.score, (result.message, clean.message)
    # Not asserted: the flag at the default threshold. On issue 11's zoo (pre-training sees the experts'
    # domains) this cheap setting scores 0.375 against the default 0.5 on seed 0: a miss, in docs/probes.md.


def test_clean_expert_of_the_attackers_task_is_not_flagged(vision):
    family, backdoor = vision
    result = _scan(family, family.expert_dir(backdoor.attacker_task), backdoor.attacker_task).result("patch_inversion")
    assert result.status == "ran" and not result.flagged, result.message
