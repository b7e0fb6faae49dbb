"""Patch inversion on the trained vision zoo (small profile, seed 0), with a cheap setting (one location,
few steps): BadMerging off-task (aimed at a peer's class) scores above the clean expert of its task, and
that clean expert is not flagged. Only what holds on both numeric paths is asserted (docs/probes.md)."""

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


def test_badmerging_off_task_scores_above_the_clean_expert_of_its_task(vision):
    family, backdoor = vision
    result = _scan(family, backdoor.model_dir, backdoor.attacker_task).result("patch_inversion")
    clean = _scan(family, family.expert_dir(backdoor.attacker_task), backdoor.attacker_task).result("patch_inversion")
    assert result.score > clean.score, (result.message, clean.message)
    # Not asserted, because it holds on one numeric path only (docs/probes.md, "BadMerging off-task"):
    # - the localisation: with the native kernels the top evidence is the attack's target (class 3 of the
    #   victim digit_rot90's head, merged) at merge coefficients 0.3/0.5/0.7; with ATEN_CPU_CAPABILITY=default
    #   the zoo's bytes differ and the top evidence is another class at every coefficient (a miss);
    # - the flag at the default threshold: 0.375 against 0.5 on seed 0 at the full default setting.


def test_clean_expert_of_the_attackers_task_is_not_flagged(vision):
    family, backdoor = vision
    result = _scan(family, family.expert_dir(backdoor.attacker_task), backdoor.attacker_task).result("patch_inversion")
    assert result.status == "ran" and not result.flagged, result.message
