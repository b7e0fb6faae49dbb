"""Helpers shared by tests: run the real CLI in a subprocess, the way a user would."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_guard(*args: str, env: dict[str, str] | None = None, timeout: float = 600, input: str | None = None) -> Result:
    """Run `python -m guard ARGS` with this checkout first on the path."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.pop("GUARD_DEBUG", None)
    if env:
        full_env.update(env)
    proc = subprocess.run(
        [sys.executable, "-m", "guard", *map(str, args)],
        capture_output=True, text=True, env=full_env, timeout=timeout, input=input,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(result: Result, *, code: int = 2, contains: tuple[str, ...] = ()) -> str:
    """Bad input: the given exit code, exactly one non-empty stderr line, no traceback."""
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    for needle in contains:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def record_fsyncs(monkeypatch) -> list[tuple[str, int]]:
    """Spy on os.fsync: ("file" | "dir", inode) of every descriptor synced, in order (it still syncs)."""
    import stat

    synced: list[tuple[str, int]] = []
    real = os.fsync

    def spy(fd: int) -> None:
        st = os.fstat(fd)
        synced.append(("dir" if stat.S_ISDIR(st.st_mode) else "file", st.st_ino))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return synced
