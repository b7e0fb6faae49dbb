"""The framework: settings validation, probe results, skip reasons and the combined decision."""

from __future__ import annotations

import math

import pydantic
import pytest

from guard.probes.framework import Needs, Probe, ProbeResult, all_probes, combine, missing_needs, run_probe
from guard.probes.settings import ProbeSettings


def _probe(score: float) -> Probe:
    return Probe(name="geometry", title="t", needs=Needs(), catches="x",
                 run=lambda inputs, settings: PROBE.result(score=score, threshold=2.0, message="m"))


PROBE = Probe(name="geometry", title="t", needs=Needs(), catches="x", run=lambda i, s: None)


def test_settings_are_frozen_and_strict():
    settings = ProbeSettings()
    with pytest.raises(pydantic.ValidationError):
        ProbeSettings.model_validate({"geometry": {"threshold": -1}})
    with pytest.raises(pydantic.ValidationError):
        ProbeSettings.model_validate({"geometry": {"threshold_typo": 3}})
    with pytest.raises(pydantic.ValidationError):
        settings.geometry.threshold = 3  # frozen
    changed = settings.with_thresholds({"geometry": 3.5, "insertion": 0.7})
    assert changed.geometry.threshold == 3.5 and changed.insertion.threshold == 0.7
    assert settings.geometry.threshold != 3.5  # the original is untouched


def test_every_registered_probe_has_settings_and_declares_its_needs():
    settings = ProbeSettings()
    assert sorted(all_probes()) == sorted(ProbeSettings.probe_names())
    for name, probe in all_probes().items():
        own = settings.for_probe(name)
        assert own.threshold > 0 and isinstance(own.enabled, bool)
        assert probe.title and probe.catches and isinstance(probe.needs, Needs)


def test_result_flags_at_threshold_and_fails_closed_on_nan():
    assert PROBE.result(score=2.0, threshold=2.0, message="m").flagged
    assert not PROBE.result(score=1.99, threshold=2.0, message="m").flagged
    assert PROBE.result(score=math.nan, threshold=2.0, message="m").flagged


def test_combine_any_flag_with_reasons_and_max_ratio():
    a = PROBE.result(score=1.0, threshold=2.0, message="fine")
    b = ProbeResult(probe="embedding", title="e", status="ran", score=9.0, threshold=3.0, flagged=True, message="row 7")
    c = ProbeResult(probe="insertion", title="i", status="skipped", message="skipped: needs calibration")
    decision = combine([a, b, c])
    assert decision.flagged and decision.score == 3.0
    assert decision.reasons == ["embedding: row 7 (score 9 >= threshold 3)"]
    assert decision.ran == ["geometry", "embedding"] and decision.skipped == ["insertion"]
    clean = combine([a, c])
    assert not clean.flagged and clean.score == 0.5 and clean.reasons == []


def test_needs_are_checked_before_a_probe_runs():
    class Inputs:
        base, safety_pair, calibration, kind = object(), None, None, "causal-lm"

    probes = all_probes()
    assert missing_needs(probes["alignment"], Inputs()) == \
        "needs a trusted aligned/unaligned pair (--aligned, --unaligned)"
    assert missing_needs(probes["insertion"], Inputs()).startswith("needs unlabeled calibration")
    assert missing_needs(probes["patch_inversion"], Inputs()) == \
        "applies to image-classifier models; this one is causal-lm"
    assert missing_needs(probes["geometry"], Inputs()) is None
    disabled = ProbeSettings().model_copy(update={"geometry": ProbeSettings().geometry.model_copy(update={"enabled": False})})
    assert run_probe(probes["geometry"], Inputs(), disabled).message == "skipped: disabled by the settings"
