"""benchmarks/dam.py and benchmarks/enchtable.py in small mode on the cached small zoo (the figures of
docs/dam.md and docs/enchtable.md come from their full runs): they run end to end and measure what
they say they measure."""

import pytest

pytestmark = pytest.mark.slow


def test_dam_benchmark_small_mode(small_zoo):
    from benchmarks.dam import SMALL_VARIANTS, run

    report = run(seeds=(0,), scenarios=("badmerging-on",), variants=SMALL_VARIANTS, progress=None)
    row = report["rows"][0]
    assert set(row["merges"]) == {"task_arithmetic", "ties", "dam:paper", "dam:code"}
    # the attack is there to defend against: the plain merges keep the backdoor
    assert row["merges"]["task_arithmetic"]["asr_max"] >= 0.9 and row["merges"]["ties"]["asr_max"] >= 0.9
    for merge in row["merges"].values():
        assert 0 <= merge["asr_max"] <= 1 and 0.2 <= merge["mean_accuracy"] <= 1 and merge["cpu_s"] > 0
    assert 0 < row["merges"]["dam:code"]["kept"] <= 1
    assert "| badmerging-on | dam:paper |" in report["table"]


def test_enchtable_benchmark_small_mode(small_zoo):
    from benchmarks.enchtable import run

    report = run(seeds=(0,), betas=(0.1,), experts=("rotate",), merges=("task_arithmetic",), progress=None)
    result = report["results"][0]
    assert result["unsafe_harmful"] >= 0.9 and result["unsafe_aligned"] <= 0.05  # the pair is what it says
    row = result["rows"]["expert:rotate"]
    assert row["before"]["unsafe"] > result["unsafe_aligned"]  # the expert is eroded
    after = row["beta=0.1"]
    assert after["alpha"] > 0 and 0 < after["weight_min"] <= after["weight_mean"] <= 1
    assert set(result["rows"]) == {"expert:rotate", "merge:task_arithmetic"}
