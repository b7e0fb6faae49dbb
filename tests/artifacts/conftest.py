"""Fixtures for the artifacts tests: generated corpora and a subprocess runner that measures peak RSS."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile

import pytest

from tests.helpers import REPO_ROOT


@dataclasses.dataclass
class MeasuredRun:
    returncode: int
    stdout: str
    stderr: str
    max_rss_kb: int  # peak resident set of this one child (os.wait4), in KiB


def run_guard_measured(*args: str) -> MeasuredRun:
    """`python -m guard ARGS` in a subprocess; its own peak RSS comes from wait4, not from the whole test run."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("GUARD_DEBUG", None)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "guard", *map(str, args)], stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return MeasuredRun(proc.returncode, out.read().decode(), err.read().decode(), usage.ru_maxrss)


@pytest.fixture(scope="session")
def malformed_corpus(tmp_path_factory):
    from attacks.corpus.malformed_safetensors import generate

    root = tmp_path_factory.mktemp("malformed")
    return root, generate(root)


@pytest.fixture(scope="session")
def payload_corpus(tmp_path_factory):
    """(cases root, marker path, cases). The marker must never appear."""
    from attacks.corpus.pickle_payloads import write_payload_dirs

    root = tmp_path_factory.mktemp("payloads")
    marker = root / "PAYLOAD-RAN"
    return root / "cases", marker, write_payload_dirs(root / "cases", marker=marker)
