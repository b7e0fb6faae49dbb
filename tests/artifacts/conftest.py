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


# A small middle process launches guard and reads its peak RSS from RUSAGE_CHILDREN. Measuring straight
# from pytest would not work: Linux carries the forking parent's high-water RSS (pytest with torch loaded,
# hundreds of MB) into the child's ru_maxrss across exec.
_MEASURE = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[2:])\n"
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(rc)\n"
)


def run_guard_measured(*args: str) -> MeasuredRun:
    """`python -m guard ARGS` in a subprocess, with that process's own peak RSS (KiB)."""
    return run_measured(sys.executable, "-m", "guard", *map(str, args))


def run_measured(*command: str) -> MeasuredRun:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("GUARD_DEBUG", None)
    with tempfile.TemporaryDirectory() as tmp:
        rss_file = os.path.join(tmp, "rss")
        proc = subprocess.run([sys.executable, "-c", _MEASURE, rss_file, *command],
                              capture_output=True, text=True, env=env, timeout=120)
        with open(rss_file) as f:
            rss = int(f.read())
    return MeasuredRun(proc.returncode, proc.stdout, proc.stderr, rss)


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
