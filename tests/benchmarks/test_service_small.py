"""The service benchmark runs in small mode and reports numbers (no timing is asserted: that is its job)."""

import json
import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.slow


def test_service_benchmark_small_mode_reports_numbers():
    proc = subprocess.run([sys.executable, "-m", "benchmarks.service", "--small", "--json"], capture_output=True,
                          text=True, cwd=REPO_ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    ack = report["ack"]
    for side in ("guard", "peer"):
        assert ack[side]["requests"] == 100 and ack[side]["statuses"] == {"202": 100}
        assert 0 < ack[side]["p50_ms"] <= ack[side]["p99_ms"] <= ack[side]["max_ms"]
    assert ack["p99_ratio_to_peer"] == ack["guard"]["p99_ms"] / ack["peer"]["p99_ms"]
    # every delivery was stored before it was acknowledged (one in five repeats a sha)
    assert ack["deliveries_stored"] == 100 and 0 < ack["jobs_stored"] < 100
    audits = report["audits"]
    assert audits["audits"] == 1 and audits["verdicts"] == ["pass"] and audits["audits_per_hour"] > 0
    assert audits["parameters"] > 0 and audits["ratio_to_peer"] > 0
    assert audits["probes"] and audits["probes_status"][0] in ("pass", "warn")  # the probe stage ran


def test_zoo_probes_mode_reports_every_case(small_zoo):
    """`python -m benchmarks.service zoo-probes --peers` on seed 0 (cached zoo): the rows docs/service.md reports."""
    from benchmarks.service import zoo_probe_scores

    rows = {r["case"]: r for r in zoo_probe_scores(seeds=[0], calibration=False, peers=True)}
    assert set(rows) == {"clean:sort", "clean:reverse", "clean:modadd", "clean:rotate", "badnets", "amplified"}
    assert {r["status"] for c, r in rows.items() if c.startswith("clean")} == {"pass"}
    for case in ("badnets", "amplified"):
        score, threshold = rows[case]["scores"]["embedding"]
        assert rows[case]["status"] == "warn" and score >= threshold
