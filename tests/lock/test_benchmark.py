"""The protect benchmark's small mode runs and reports consistent numbers (no timing assertions)."""

import statistics

import pytest


def test_protect_benchmark_small_mode(tmp_path):
    from benchmarks.protect import run

    report = run(size="small", rounds=2, workdir=tmp_path)
    assert report["model_bytes"] > report["largest_tensor_bytes"] > 0
    assert report["cp_seconds"] > 0 and report["protect_seconds"] > report["phases_seconds_in_process"]["transform"] > 0
    # The headline ratio comes from the per-round samples (medians), not from a best or a single round.
    assert len(report["cp_seconds_all"]) == len(report["protect_seconds_all"]) == 2
    assert report["ratio_protect_over_cp"] == pytest.approx(
        statistics.median(report["cp_seconds_all"]) / statistics.median(report["protect_seconds_all"]), rel=1e-12)
    assert report["selfcheck_error"] <= 1e-4 and report["selfcheck_mode"] == "streamed"
    assert report["peak_rss_bytes"] > report["model_bytes"] and report["protect_signed_seconds"] > 0
    assert list(tmp_path.iterdir()) == []  # the benchmark cleans up after itself
