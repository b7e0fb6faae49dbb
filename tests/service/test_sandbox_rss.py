"""The audit's peak memory is its own: ru_maxrss survives fork and exec on Linux, so a worker spawned by a
large process (pytest in the full suite: 1.25 GB) reported the spawner's peak as the audit's."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM and the ru_maxrss carry-over are Linux's")

_SPAWNER = """
import subprocess, sys
ballast = bytearray(512 << 20)
for i in range(0, len(ballast), 4096):
    ballast[i] = 1
child = ("import resource; from guard.service.sandbox import _peak_rss_bytes; "
         "u = resource.getrusage(resource.RUSAGE_SELF); print(u.ru_maxrss * 1024, _peak_rss_bytes(u))")
print(subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True).stdout)
"""


def test_peak_rss_is_the_audit_process_own_not_its_spawners():
    out = subprocess.run([sys.executable, "-c", _SPAWNER], capture_output=True, text=True, check=True).stdout
    inherited, own = map(int, out.split())
    assert inherited > 500 << 20  # the carry-over this guards against is real here
    assert own < 200 << 20, own  # a bare interpreter plus one guard module
