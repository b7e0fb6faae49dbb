"""The protect benchmark's small mode runs and reports consistent numbers (no timing assertions)."""

import statistics

import pytest


def test_protect_benchmark_small_mode(tmp_path):
    from benchmarks.protect import run

    report = run(size="small", rounds=2, modes=("warm",), workdir=tmp_path)
    assert report["model_bytes"] > report["largest_tensor_bytes"] > 0 and report["tiny_bytes"] < report["model_bytes"]
    warm = report["modes"]["warm"]
    samples = warm["samples"]
    assert all(len(runs) == 2 for runs in samples.values())
    # The headline figures come from the per-round samples (medians), not from a best or a single round.
    med = {label: statistics.median(s["seconds"] for s in runs) for label, runs in samples.items()}
    assert warm["startup_seconds"] == med["protect_tiny"]
    # The start-up floor (torch + the self-check's modeling module, nothing of guard) is measured in the same
    # rounds; guard's own share of the start-up is the difference.
    assert warm["startup_floor_seconds"] == med["import_floor"] > 0
    assert warm["startup_over_floor_seconds"] == med["protect_tiny"] - med["import_floor"]
    assert all(s["cpu_seconds"] > 0 for s in samples["import_floor"])
    # On a 29 MB model the marginal time can drown in the start-up's noise: then no rate is claimed.
    rate = warm["protect_marginal_bytes_per_s"]
    if med["protect"] > med["protect_tiny"]:
        assert rate == pytest.approx(report["model_bytes"] / (med["protect"] - med["protect_tiny"]), rel=1e-12)
        assert warm["ratio_marginal_protect_over_cp"] == pytest.approx(rate / warm["cp_marginal_bytes_per_s"], rel=1e-12)
        assert warm["extrapolated_7b"]["protect_seconds"] > warm["startup_seconds"]
    else:
        assert rate is None and warm["ratio_marginal_protect_over_cp"] is None and warm["extrapolated_7b"] is None
        assert not warm["goals"]["marginal_at_least_0.3x_cp"]
    for sample in samples["protect"]:
        assert sample["selfcheck_error"] <= 5e-2 and sample["phases"]["transform"] > 0  # bf16 model
        assert sample["cpu_seconds"] > 0 and sample["peak_rss_bytes"] > report["largest_tensor_bytes"]
    # Each command's own peak, not this process's: cp of a 118 kB model needs a few MB, not pytest's RSS.
    assert max(s["peak_rss_bytes"] for s in samples["cp_tiny"]) < 64 << 20
    assert list(tmp_path.iterdir()) == []  # the benchmark cleans up after itself
