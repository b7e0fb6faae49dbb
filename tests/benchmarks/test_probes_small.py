"""benchmarks/probes.py in its small mode (seed 0 in both roles, a handful of cases, cheap settings): it
runs end to end and reports what it should. Its figures are not an evaluation; docs/probes.md has those."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def result(small_zoo):
    from benchmarks.probes import run

    return run(calibration_seeds=[0], held_out_seeds=[0], small=True)


def test_every_case_is_scanned_and_thresholds_calibrated(result):
    from benchmarks.probes_zoo import SMALL_CASES

    rows = result["rows"]
    assert {r["name"] for r in rows} == set(SMALL_CASES)
    assert {"canonical", "geometry", "embedding", "insertion", "patch_inversion"} <= set(result["thresholds"])
    for probe, threshold in result["thresholds"].items():
        clean = [r["scores"][probe]["score"] for r in rows if r["label"] == 0 and r["role"] == "calibration"
                 and probe in r["scores"]]
        assert threshold > max(clean)  # above every clean calibration case


def test_evaluation_and_outputs(result):
    from benchmarks.probes import markdown, roc_svg

    ev = result["evaluation"]
    assert {"vision", "lm", "both"} == set(ev["combined"])
    for row in ev["per_probe"]:
        assert 0.0 <= row["auc"] <= 1.0 and row["roc"][0] == (0.0, 0.0) and row["roc"][-1] == (1.0, 1.0)
    # The backdoors and the lock of the small set are caught at the calibrated thresholds.
    assert ev["combined"]["both"]["tpr"] == 1.0 and ev["combined"]["both"]["fpr"] == 0.0
    text = markdown(result)
    assert "SMALL MODE" in text and "| lm | 0 | mergelock:clean | attacked | canonical" in text
    ET.fromstring(roc_svg(result))  # well-formed SVG
