"""Safe discovery of the files of a model directory.

Every name guard reads or writes inside a model directory passes through here: no `..`, no absolute
names, no device files, and no symlinks unless the policy allows them (and then only to regular files
that stay inside the directory). Returned names are sorted POSIX relative paths, so the same directory
always yields the same list on every platform.
"""

from __future__ import annotations

import fnmatch
import os
import pathlib
import stat
from collections.abc import Iterable

from guard.errors import InputError

# Rule ids (documented in docs/artifacts.md).
RULE_NOT_FOUND = "path-not-found"
RULE_NOT_DIR = "path-not-directory"
RULE_UNSAFE_NAME = "path-unsafe-name"
RULE_SYMLINK = "path-symlink"
RULE_SYMLINK_ESCAPE = "path-symlink-escape"
RULE_SPECIAL = "path-special-file"
RULE_UNREADABLE = "path-unreadable"


def check_relname(name: str, *, where: str | pathlib.Path | None = None) -> str:
    """Validate a relative POSIX name found in metadata (an index, a manifest, a writer argument).

    Returns it unchanged if safe; raises InputError(rule=path-unsafe-name) for absolute names, `..`,
    empty or `.` components, backslashes, drive letters and control characters.
    """
    problem = _relname_problem(name)
    if problem:
        raise InputError(f"unsafe file name {name!r}: {problem}", path=where if where is not None else name,
                         rule=RULE_UNSAFE_NAME)
    return name


def _relname_problem(name: object) -> str | None:
    if not isinstance(name, str) or not name:
        return "not a non-empty string"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return "control character"
    if "\\" in name:
        return "backslash"
    if name.startswith("/") or (len(name) >= 2 and name[1] == ":"):
        return "absolute name"
    parts = name.split("/")
    if any(p == ".." for p in parts):
        return "'..' component"
    if any(p in ("", ".") for p in parts):
        return "empty or '.' component"
    return None


def is_ignored(relpath: str, ignore: Iterable[str]) -> bool:
    """True if `relpath` or one of its parent directories matches a pattern (fnmatch, POSIX names)."""
    parts = relpath.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatchcase(p, pat) for pat in ignore for p in prefixes)


def list_model_files(root: str | os.PathLike, *, allow_symlinks: bool = False, ignore: Iterable[str] = ()) -> list[str]:
    """Sorted POSIX relative paths of every regular file under `root` (recursively).

    Raises InputError on the first unsafe entry: a symlink (unless allowed; an allowed one must point at
    a regular file inside `root`), a device file, FIFO or socket, or an unreadable directory. Entries
    matching an `ignore` pattern (fnmatch on the relative path or any parent directory) are skipped
    before any check, e.g. ("model.sig", ".git").
    """
    root_path = pathlib.Path(root)
    try:
        st = os.stat(root_path)
    except FileNotFoundError:
        raise InputError("no such directory", path=root_path, rule=RULE_NOT_FOUND) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=root_path, rule=RULE_UNREADABLE) from None
    if not stat.S_ISDIR(st.st_mode):
        raise InputError("not a directory", path=root_path, rule=RULE_NOT_DIR)
    real_root = root_path.resolve()
    ignore = tuple(ignore)
    found: list[str] = []
    _walk(root_path, "", real_root, allow_symlinks, ignore, found)
    return sorted(found)


def _walk(directory: pathlib.Path, prefix: str, real_root: pathlib.Path, allow_symlinks: bool,
          ignore: tuple[str, ...], found: list[str]) -> None:
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as exc:
        raise InputError(f"cannot list directory: {exc.strerror}", path=directory, rule=RULE_UNREADABLE) from None
    for entry in entries:
        rel = prefix + entry.name
        if is_ignored(rel, ignore):
            continue
        problem = _relname_problem(rel)
        if problem:
            raise InputError(f"unsafe file name: {problem}", path=entry.path, rule=RULE_UNSAFE_NAME)
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError as exc:
            raise InputError(f"cannot stat: {exc.strerror}", path=entry.path, rule=RULE_UNREADABLE) from None
        if stat.S_ISLNK(st.st_mode):
            _check_symlink(entry, real_root, allow_symlinks)
            found.append(rel)
        elif stat.S_ISDIR(st.st_mode):
            _walk(pathlib.Path(entry.path), rel + "/", real_root, allow_symlinks, ignore, found)
        elif stat.S_ISREG(st.st_mode):
            found.append(rel)
        else:
            raise InputError("device file, FIFO or socket in a model directory", path=entry.path, rule=RULE_SPECIAL)


def _check_symlink(entry: os.DirEntry, real_root: pathlib.Path, allow_symlinks: bool) -> None:
    if not allow_symlinks:
        raise InputError("symlinks are refused (policy allow_symlinks=False)", path=entry.path, rule=RULE_SYMLINK)
    target = pathlib.Path(entry.path).resolve()
    if not target.is_relative_to(real_root):
        raise InputError(f"symlink leaves the model directory (-> {target})", path=entry.path,
                         rule=RULE_SYMLINK_ESCAPE)
    try:
        st = os.stat(target)
    except OSError:
        raise InputError("dangling symlink", path=entry.path, rule=RULE_SYMLINK) from None
    if not stat.S_ISREG(st.st_mode):
        # Symlinked directories could loop or alias; only links to regular files are followed.
        raise InputError("symlink to something other than a regular file", path=entry.path, rule=RULE_SYMLINK)
