"""benchmarks/merge.py in small mode: the paired run works end to end (no timing asserted)."""

import pytest


@pytest.mark.slow
def test_merge_benchmark_small_mode(tmp_path):
    from benchmarks.merge import run

    report = run(size="small", rounds=1, workdir=tmp_path)
    assert set(report["medians"]) == {"mergekit task_arithmetic", "guard task_arithmetic", "mergekit ties",
                                      "guard ties", "guard safe-merge ties",
                                      "guard safe-merge ties, strict with MergeLock detection"}
    for numbers in report["medians"].values():
        assert numbers["wall"] > 0 and numbers["cpu"] > 0 and numbers["rss"] > 0
    # the benchmark's two sides compute the same merge: bit-identical task arithmetic; ties differs only on ties
    assert report["difference_vs_mergekit"]["task_arithmetic"]["differing_elements"] == 0
    assert report["difference_vs_mergekit"]["ties"]["differing_fraction"] < 0.02
    assert report["ratio_ties"] > 0 and report["gate_over_plain_ties"] > 0
