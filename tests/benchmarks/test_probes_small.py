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


def _row(seed: int, label: int, score: float, probe: str = "embedding") -> dict:
    return {"seed": seed, "label": label, "held_out_variant": False, "scores": {probe: {"score": score}}}


def test_the_calibration_spread_is_chosen_on_left_out_calibration_seeds():
    from benchmarks.probes import SPREADS, calibrate, choose_spread

    # Seed 0's clean scores are tight (1.0-1.2); seed 1 has a clean model at 1.5. A threshold from seed 0
    # alone at k = 1.5 (1.32) would flag it; the left-out folds show that and pick the smallest k that does not.
    rows = [_row(0, 0, s) for s in (1.0, 1.1, 1.2)] + [_row(1, 0, s) for s in (1.0, 1.1, 1.5)]
    rows += [_row(seed, 1, 9.0) for seed in (0, 1)]
    spread, table = choose_spread(rows, ["embedding"], ["embedding"])
    by_k = {t["spread"]: t for t in table}
    assert [t["spread"] for t in table] == list(SPREADS)
    assert by_k[1.5]["fpr"] == 1 / 6 and by_k[1.5]["tpr"] == 1.0
    # Left out seed 1: threshold from seed 0 = 1.1 + k x 0.1 must exceed 1.5, so k > 4; left out seed 0:
    # threshold from seed 1 = 1.1 + k x 0.4 is above 1.2 for every k.
    assert spread == 6.0 and by_k[6.0]["fpr"] == 0.0
    assert calibrate(rows, ["embedding"], spread=spread)["embedding"] == pytest.approx(1.1 + 6.0 * 0.4)  # pooled


def test_earlier_scores_replace_only_the_named_probes():
    from benchmarks.probes import with_earlier_scores

    entry = {"cpu_seconds": 1.0, "scores": {
        "embedding": {"score": 1.0, "measurements": {"unscaled": 3.0}},
        "patch_inversion": {"score": 0.2, "measurements": {"gain": 0.6}},
        "geometry": {"score": 2.0, "measurements": {"profile": 0.1}}}}
    earlier = with_earlier_scores(entry)
    assert {p: v["score"] for p, v in earlier["scores"].items()} == {"embedding": 3.0, "patch_inversion": 0.6,
                                                                     "geometry": 2.0}
    assert entry["scores"]["embedding"]["score"] == 1.0  # the cached entry is not modified
