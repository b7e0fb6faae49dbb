"""Auditors for tests, loaded by the sandboxed child through the `audit` setting ("module:Class")."""

from __future__ import annotations

import os
import signal
import time

from guard.service.audit import Auditor, check


class PassAuditor(Auditor):
    """Instant pass: for tests about queueing, not about checks. `GUARD_TEST_AUDIT_S` adds a delay."""

    def audit(self, request):
        time.sleep(float(os.environ.get("GUARD_TEST_AUDIT_S", "0")))
        files = sorted(p.name for p in request.model_dir.iterdir())
        return {"verdict": "pass", "checks": [check("fake", "Fake check", "pass", f"files: {', '.join(files)}")],
                "model": {}, "base": {}}


class MemoryHogAuditor(Auditor):
    def audit(self, request):
        hoard = []
        while True:
            hoard.append(bytearray(64 << 20))


class SleeperAuditor(Auditor):
    def audit(self, request):
        time.sleep(3600)


class CrashingAuditor(Auditor):
    def audit(self, request):
        os.kill(os.getpid(), signal.SIGSEGV)
