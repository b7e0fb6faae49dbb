"""The start-up benchmark runs and reports numbers (no timing is asserted: that is the benchmark's job)."""

import json
import subprocess
import sys

from tests.helpers import REPO_ROOT


def test_startup_benchmark_small_mode_reports_numbers():
    proc = subprocess.run([sys.executable, "-m", "benchmarks.startup", "--small", "--json"], capture_output=True,
                          text=True, cwd=REPO_ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["runs"] == 3
    assert set(result["median_seconds"]) == {"python -c pass", "guard --help", "guard inspect --help"}
    assert all(v > 0 for v in result["median_seconds"].values())
    assert result["ratio_to_floor"] == result["guard_help_seconds"] / result["floor_seconds"]
    # Not a timing: `guard --help` must stay free of torch, which is what keeps it fast.
    assert result["imports_torch"] is False
