"""Which files of a model directory a signature covers: the shared walk for signing and verifying."""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Iterable

from guard.artifacts.paths import check_relname, list_model_files
from guard.errors import InputError, VerificationError

DEFAULT_SIGNATURE_NAME = "model.sig"
# Unsafe entries found while verifying mean the directory is not what was signed: exit 1, not 2.
_VERIFY_FAILURE_RULES = {"path-symlink", "path-symlink-escape", "path-special-file", "path-unsafe-name"}


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
    try:
        return list_model_files(root, allow_symlinks=False, ignore=literal_patterns(ignore))
    except InputError as exc:
        if verifying and exc.rule in _VERIFY_FAILURE_RULES:
            raise VerificationError(f"verification failed: {exc.message}", path=exc.path, rule="verify-files") from None
        raise
