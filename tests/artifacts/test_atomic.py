"""The one atomic-write helper (guard.artifacts.atomic): files and directories appear whole or not at all."""

from __future__ import annotations

import os
import stat

import pytest

from guard.artifacts.atomic import atomic_directory, write_atomically
from guard.errors import InputError
from tests.helpers import record_fsyncs


def test_file_is_replaced_whole_with_its_mode_and_the_directory_synced(tmp_path, monkeypatch):
    target = tmp_path / "out.txt"
    target.write_text("old")
    synced = record_fsyncs(monkeypatch)
    write_atomically(target, "new", mode=0o600)
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert ("file", target.stat().st_ino) in synced and synced[-1] == ("dir", tmp_path.stat().st_ino)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_failed_file_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def broken(fd: int) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError):
        write_atomically(target, b"new")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_directory_appears_only_on_a_clean_exit(tmp_path, monkeypatch):
    out = tmp_path / "model"
    with pytest.raises(RuntimeError):
        with atomic_directory(out) as staging:
            (staging / "a.json").write_text("{}")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    synced = record_fsyncs(monkeypatch)
    with atomic_directory(out) as staging:
        (staging / "a.json").write_text("{}")
        assert not out.exists()
    assert (out / "a.json").read_text() == "{}" and synced[-1] == ("dir", tmp_path.stat().st_ino)
    assert ("file", (out / "a.json").stat().st_ino) in synced
    assert stat.S_IMODE(out.stat().st_mode) & 0o055  # an ordinary directory, not mkdtemp's 0700


def test_existing_output_is_refused_unless_overwriting(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(InputError, match="output-exists"):
        with atomic_directory(out):
            pass
    with atomic_directory(out, overwrite=True) as staging:
        (staging / "new.txt").write_text("new")
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
