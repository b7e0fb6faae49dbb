"""Atomic, durable output: the one way guard writes a file or a directory that others will read.

A file goes to a temp file in its target's directory, is fsynced, renamed over the target, and the
directory is fsynced so the rename itself survives a crash. A directory is built under a hidden 0700
sibling (`.NAME.tmp-*/NAME`: the staging directory already has its final name, so what names a model
by its directory, such as an OMS signature's subject, sees the final name), every file and directory
in it is fsynced, it is renamed into place, and the parent is fsynced. Until that final rename a reader sees the old state (or nothing); after it, the complete new
one. On an exception the temp file or directory is removed; if the process dies, only a hidden temp
sibling is left, never a partial target.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator

from guard.errors import InputError


def write_atomically(path: str | os.PathLike, data: bytes | str, *, mode: int = 0o644) -> None:
    """Replace `path` with `data` (str is written as UTF-8) in one step."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_directory(out_dir: str | os.PathLike, *, overwrite: bool = False) -> Iterator[pathlib.Path]:
    """Yield an empty staging directory; on a clean exit it becomes `out_dir`, durably.

    Without `overwrite` an existing `out_dir` (or one that appears meanwhile) is an InputError
    (rule output-exists), checked before staging and again just before the rename. With it, the old
    directory is moved aside first and removed after, so the final rename never merges two trees.
    """
    out = pathlib.Path(out_dir)
    _check_target(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    holder = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))  # 0700: private
    staging = holder / out.name
    try:
        staging.mkdir()  # an ordinary directory (umask), reachable only through the private holder until renamed
        yield staging
        fsync_tree(staging)
        _check_target(out, overwrite)
        old = holder / ".old"
        if out.exists() or out.is_symlink():
            os.rename(out, old)  # removed with the holder below, once the new tree is in place
        try:
            os.rename(staging, out)
        except BaseException:
            if old.exists() or old.is_symlink():
                os.rename(old, out)  # put the previous output back
            raise
        fsync_dir(out.parent)
    finally:
        shutil.rmtree(holder, ignore_errors=True)


def _check_target(out: pathlib.Path, overwrite: bool) -> None:
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise InputError("output already exists", path=out, rule="output-exists")


def fsync_tree(root: str | os.PathLike) -> None:
    """fsync every file and directory under root (data durable before the final rename)."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)


def fsync_dir(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
