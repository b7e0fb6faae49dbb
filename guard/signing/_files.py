"""Which files a signature covers: the shared walk for signing and verifying.

A model is a directory or, as OMS also allows, a single regular file; then the one resource is named
"." (SINGLE_FILE) and the default signature sits beside it as `<name>.sig`.
"""

from __future__ import annotations

import os
import pathlib
import re
import stat
from collections.abc import Iterable

from guard.artifacts.paths import check_relname, list_model_files
from guard.errors import InputError, VerificationError

DEFAULT_SIGNATURE_NAME = "model.sig"
SINGLE_FILE = "."  # OMS's resource name for a model that is one file
# Unsafe entries found while verifying mean the directory is not what was signed: exit 1, not 2.
_VERIFY_FAILURE_RULES = {"path-symlink", "path-symlink-escape", "path-special-file", "path-unsafe-name"}


def is_single_file(root: pathlib.Path) -> bool:
    """True if the model path is a regular file (not a symlink to one); InputError if it does not exist."""
    try:
        st = os.lstat(root)
    except FileNotFoundError:
        raise InputError("no such model file or directory", path=root, rule="path-not-found") from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=root, rule="path-unreadable") from None
    if stat.S_ISLNK(st.st_mode):
        raise InputError("the model path is a symlink; name the file or directory itself", path=root,
                         rule="path-symlink")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise InputError("the model path is neither a regular file nor a directory", path=root,
                         rule="path-special-file")
    return stat.S_ISREG(st.st_mode)


def default_signature(root: pathlib.Path) -> pathlib.Path:
    """MODEL_DIR/model.sig for a directory; FILE.sig beside a single-file model."""
    return root.with_name(root.name + ".sig") if is_single_file(root) else root / DEFAULT_SIGNATURE_NAME


def relative_inside(path: pathlib.Path, root: pathlib.Path) -> str | None:
    """POSIX path of `path` relative to `root` if it lies inside it (after resolving), else None."""
    try:
        rel = path.resolve().relative_to(root.resolve())
    except ValueError:
        return None
    return rel.as_posix() if rel.parts else None


def normalize_ignore(paths: Iterable[str | os.PathLike]) -> list[str]:
    out = []
    for path in paths:
        name = pathlib.PurePath(path).as_posix().rstrip("/")
        out.append(check_relname(name))
    return out


def literal_patterns(paths: Iterable[str]) -> tuple[str, ...]:
    """OMS ignore paths are literal names; list_model_files takes fnmatch patterns, so escape them."""
    return tuple(re.sub(r"([*?\[])", r"[\1]", p) for p in paths)


def covered_files(root: pathlib.Path, *, ignore: Iterable[str], verifying: bool) -> list[str]:
    if is_single_file(root):
        return [SINGLE_FILE]
    try:
        return list_model_files(root, allow_symlinks=False, ignore=literal_patterns(ignore))
    except InputError as exc:
        if verifying and exc.rule in _VERIFY_FAILURE_RULES:
            raise VerificationError(f"verification failed: {exc.message}", path=exc.path, rule="verify-files") from None
        raise
