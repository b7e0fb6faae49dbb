"""Who else could change a model: the condition under which files may be read where they are after hashing.

Bytes verified once and read again later are the bytes that were hashed only if nobody could change the
file in between. File identity (guard.artifacts.identity) does not show every change: a write through a
shared writable mapping whose page is already dirty updates neither mtime nor ctime, and on kernels or
filesystems with coarse timestamps a write within the tick of the last change keeps the ctime. So guard
reads a verified model in place only when no other principal can change it at all, and otherwise from a
private copy of the hashed bytes (guard.signing.open_verified_model).

Nobody else can change a file's bytes, or what its name leads to, when:
- the filesystem is a local one, where this kernel enforces the permissions below (on NFS, SMB or FUSE
  the server or daemon serves the bytes, and may serve other bytes on the next read);
- every directory from "/" down to the file, and the file itself, is owned by this user or root and is
  writable by neither group nor others; a directory above the model root may instead be sticky (as /tmp
  is), where others cannot rename or remove what they do not own.
Group and other write bits off also rule out writers through POSIX ACLs (the group bits are the ACL
mask). Not covered, as in the threat model: processes running as this user or as root, and a writable
descriptor that another user opened while the file was still writable to them.
"""

from __future__ import annotations

import os
import pathlib
import stat
from collections.abc import Iterable

# Filesystems whose permissions this kernel enforces on every access (the bytes come from a local device,
# or from memory); overlay is a union of local directories (container images).
LOCAL_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "f2fs", "zfs", "bcachefs", "jfs",
                               "reiserfs", "overlay", "ramfs"})
_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


def changeable_by_others(root: pathlib.Path, relpaths: Iterable[str]) -> str | None:
    """Why another user could change the files `relpaths` under `root` (a resolved directory), or None if
    nobody but this user and root can."""
    owners = {os.geteuid(), 0}
    fstype = filesystem_type(root)
    if fstype not in LOCAL_FILESYSTEMS:
        return f"{root} is on a {fstype or 'unknown'} filesystem, not a local one"
    checked: set[pathlib.Path] = set()

    def problem(path: pathlib.Path, *, sticky_ok: bool, regular: bool = False) -> str | None:
        if path in checked:
            return None
        checked.add(path)
        try:
            st = os.lstat(path)
        except OSError as exc:
            return f"cannot stat {path}: {exc.strerror}"
        if not (stat.S_ISREG(st.st_mode) if regular else stat.S_ISDIR(st.st_mode)):
            return f"{path} is not a {'regular file' if regular else 'directory'}"
        if st.st_uid not in owners:
            return f"{path} is owned by uid {st.st_uid}"
        if st.st_mode & _OTHERS_WRITE and not (sticky_ok and st.st_mode & stat.S_ISVTX):
            return f"{path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):o})"
        return None

    for ancestor in reversed(root.parents):
        if reason := problem(ancestor, sticky_ok=True):
            return reason
    for rel in relpaths:
        parts = rel.split("/")
        for depth in range(len(parts)):
            if reason := problem(root.joinpath(*parts[:depth]), sticky_ok=False):
                return reason
        if reason := problem(root / rel, sticky_ok=False, regular=True):
            return reason
    return None


MOUNTINFO = pathlib.Path("/proc/self/mountinfo")


def filesystem_type(path: pathlib.Path, *, mountinfo: pathlib.Path = MOUNTINFO) -> str | None:
    """The type of the filesystem mounted at the longest mount point above `path` (Linux mountinfo), or None."""
    try:
        lines = mountinfo.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    best, best_type = "", None
    target = str(path)
    for line in lines:
        fields = line.split(" ")
        if "-" not in fields:
            continue
        mount_point = _unescape(fields[4])
        fstype = fields[fields.index("-") + 1]
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):  # later lines are mounted over earlier ones
            best, best_type = mount_point, fstype
    return best_type


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes (\\040 ...)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)
