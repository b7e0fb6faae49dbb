"""Verify what you load: a ModelDir whose bytes are exactly the bytes that were hashed and matched.

Two ways to keep that promise; the first is chosen whenever it holds:

- In place, when nobody but this user (and root) can change the model (guard.artifacts.ownership: a
  local filesystem; the files, the model's directories and every directory above them owned by this
  user or root and writable by nobody else, sticky directories such as /tmp allowed above the model).
  Each file is hashed through its own descriptor, and its identity (device, inode, ctime, mtime, size)
  is taken before and after; the ModelDir is then opened on the same (resolved) directory and every file
  it reads must have exactly that identity, as every later tensor read re-checks
  (guard.artifacts.tensors). Nothing is copied; a file renamed, rewritten or touched after hashing is
  refused (file-changed), never read.
- From a private copy otherwise (someone else could write a file or a directory, a network or FUSE
  filesystem, a single-file model, or `copy=True`): each file is read once into a buffer, the buffer is
  hashed and the same buffer is written to a private staging directory (0700, files 0400). Only after
  the digests match is the staged copy opened as a ModelDir, so a file swapped or rewritten in the
  original directory after (or during) verification never reaches a tensor. The copy is deleted on exit.

Either way only the files the signature covers are in the ModelDir (ignored paths and the signature
itself are left out), and `model.verification.read` says which way was taken.
Threat model: whoever can write the model directory, but not run code as this user.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterable, Iterator

from guard.errors import VerificationError
from guard.signing._files import SINGLE_FILE, literal_patterns
from guard.signing.hashing import hash_model
from guard.signing.methods import Verifier
from guard.signing.verify import check_signature, finish, uncovered

IN_PLACE = "in place"


@contextlib.contextmanager
def open_verified_model(model_dir: str | os.PathLike, *, signature: str | os.PathLike | None = None,
                        verifier: Verifier, ignore_paths: Iterable[str | os.PathLike] = (), policy=None,
                        staging_dir: str | os.PathLike | None = None, copy: bool = False) -> Iterator:
    """Context manager yielding a guard.artifacts.ModelDir over the verified bytes of `model_dir` (in place
    when nobody else can change them, else a private copy; `copy=True` always copies)."""
    ignore_paths = list(ignore_paths)
    root, sig_path, content, manifest, relpaths = check_signature(model_dir, signature=signature, verifier=verifier,
                                                                  ignore_paths=ignore_paths)
    real = root.resolve()
    if copy:
        reason = "asked for"
    elif relpaths == [SINGLE_FILE]:
        reason = "a single-file model"
    else:
        from guard.artifacts.ownership import changeable_by_others

        reason = changeable_by_others(real, relpaths)
    if reason is None:
        ignore = uncovered(root, sig_path, manifest, ignore_paths)
        yield _in_place(real, root, sig_path, verifier, content, manifest, relpaths, ignore, policy)
        return
    holder = pathlib.Path(tempfile.mkdtemp(prefix="guard-verified-", dir=staging_dir))
    # A single-file model is staged as a directory holding that file under its own name.
    staged = holder / ("model" if relpaths == [SINGLE_FILE] else (real.name or "model"))
    try:
        staged.mkdir(mode=0o700)
        hashed = hash_model(root, relpaths, plan=manifest.serialization.plan, copy_to=staged)
        result = finish(root, sig_path, verifier, content, manifest, hashed)
        _freeze(staged)
        from guard.artifacts import open_model_dir

        model = open_model_dir(staged, policy=policy)
        model.verification = dataclasses.replace(result, read=f"private copy ({reason})")
        yield model
    finally:
        _thaw(holder)
        shutil.rmtree(holder, ignore_errors=True)


def _in_place(real: pathlib.Path, root: pathlib.Path, sig_path, verifier, content, manifest, relpaths, ignore,
              policy):
    from guard.artifacts import ReadPolicy, open_model_dir

    hashed = hash_model(real, relpaths, plan=manifest.serialization.plan)
    result = finish(root, sig_path, verifier, content, manifest, hashed)
    policy = policy or ReadPolicy()
    # The same directory, strictly, leaving out what the signature does not cover (by literal name).
    policy = dataclasses.replace(policy, ignore_paths=(*policy.ignore_paths, *literal_patterns(ignore)))
    model = open_model_dir(real, policy=policy)
    for f in model.files:
        if f.relpath not in hashed.identities:
            raise VerificationError(f"verification failed: {f.relpath} appeared after the directory was hashed",
                                    path=real / f.relpath, rule="verify-files")
        if hashed.identities[f.relpath] is None or f.identity != hashed.identities[f.relpath]:
            raise VerificationError(f"verification failed: {f.relpath} changed while or after it was hashed "
                                    "(written, renamed or touched)", path=real / f.relpath, rule="verify-changed")
    model.verification = dataclasses.replace(result, read=IN_PLACE)
    return model


def _freeze(root: pathlib.Path) -> None:
    for dirpath, _dirnames, _files in os.walk(root, topdown=False):
        os.chmod(dirpath, 0o500)


def _thaw(root: pathlib.Path) -> None:
    for dirpath, _dirnames, _files in os.walk(root):
        with contextlib.suppress(OSError):
            os.chmod(dirpath, 0o700)
