"""Which file is being read: opening without following symlinks, and the identity of what was validated.

A file validated once and read later (a shard's tensors are read long after its header was checked)
must be the same file with the same content. Size and mtime do not show that: a same-size replacement
with its mtime set back (`os.utime`) and renamed over the original passes. The identity kept here is
(st_dev, st_ino, st_ctime_ns, st_mtime_ns, st_size): a rename brings another inode, and any write,
`utime` or rename changes the ctime, which no unprivileged process can set back. Files are opened
with O_NOFOLLOW on every path component below the model root, so a directory or file swapped for a
symlink after the walk is refused instead of followed.

What this does not cover: a write within the same clock tick as validation, by someone who can
write the file, keeps the ctime (Linux updates it from a coarse clock). Where that matters, read
through guard.signing.open_verified_model, which reads only bytes that were hashed and matched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import stat
from collections.abc import Iterator

from guard.errors import InputError

_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
RULE_CHANGED = "file-changed"


def file_identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_ctime_ns, st.st_mtime_ns, st.st_size)


def open_fd(root: str | os.PathLike, relpath: str, *, follow_symlinks: bool = False) -> int:
    """A read-only descriptor on the regular file `root/relpath` (`relpath` "." is `root` itself, a
    single-file model). Unless `follow_symlinks` (the read policy allowed symlinks, which the walk
    already checked), no component below `root` may be a symlink. Raises OSError (ELOOP for a symlink)
    or InputError (path-special-file) for anything but a regular file."""
    if relpath == ".":
        fd = os.open(root, _FILE_FLAGS)
    elif follow_symlinks:
        fd = os.open(pathlib.Path(root) / relpath, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    else:
        parts = relpath.split("/")
        dir_fd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
        try:
            for part in parts[:-1]:
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=dir_fd)
                os.close(dir_fd)
                dir_fd = next_fd
            fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InputError("not a regular file", path=pathlib.Path(root) / relpath, rule="path-special-file")
    return fd


@contextlib.contextmanager
def open_regular(root: str | os.PathLike, relpath: str, *, follow_symlinks: bool = False) -> Iterator:
    """`open_fd` as a binary file object (closed on exit)."""
    with os.fdopen(open_fd(root, relpath, follow_symlinks=follow_symlinks), "rb") as f:
        yield f


def open_validated(root: str | os.PathLike, relpath: str, identity: tuple[int, ...], *,
                   follow_symlinks: bool = False) -> int:
    """A descriptor on the file validated with `identity`, or InputError(file-changed) if it is not that file."""
    path = pathlib.Path(root) / relpath
    try:
        fd = open_fd(root, relpath, follow_symlinks=follow_symlinks)
    except OSError as exc:
        reason = "replaced by a symlink" if exc.errno == errno.ELOOP else exc.strerror
        raise InputError(f"file changed since it was validated ({reason})", path=path, rule=RULE_CHANGED) from None
    try:
        check_unchanged(fd, identity, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_unchanged(fd: int, identity: tuple[int, ...], path) -> None:
    """InputError(file-changed) unless the open file is still the one validated with `identity`."""
    if file_identity(os.fstat(fd)) != tuple(identity):
        raise InputError("file changed since it was validated (another inode, or written, renamed or touched)",
                         path=path, rule=RULE_CHANGED)
