"""Verify what you load: a ModelDir whose bytes are exactly the bytes that were hashed and matched.

The model is verified by copying it: each file is read once into a buffer, the buffer is hashed and
the same buffer is written to a private staging directory (0700, files 0400). Only after the digests
match the signed manifest is the staged copy opened as a ModelDir, so a file swapped or rewritten in
the original directory after (or during) verification never reaches a tensor. Files the signature does
not cover (ignored paths, the signature itself) are not copied. The copy is deleted on exit.
Threat model: whoever can write the model directory, but not run code as this user.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterable, Iterator

from guard.signing._files import SINGLE_FILE
from guard.signing.hashing import hash_model
from guard.signing.methods import Verifier
from guard.signing.verify import check_signature, finish


@contextlib.contextmanager
def open_verified_model(model_dir: str | os.PathLike, *, signature: str | os.PathLike | None = None,
                        verifier: Verifier, ignore_paths: Iterable[str | os.PathLike] = (), policy=None,
                        staging_dir: str | os.PathLike | None = None) -> Iterator:
    """Context manager yielding a guard.artifacts.ModelDir over a verified private copy of `model_dir`."""
    root, sig_path, content, manifest, relpaths = check_signature(model_dir, signature=signature, verifier=verifier,
                                                                  ignore_paths=ignore_paths)
    holder = pathlib.Path(tempfile.mkdtemp(prefix="guard-verified-", dir=staging_dir))
    # A single-file model is staged as a directory holding that file under its own name.
    staged = holder / ("model" if relpaths == [SINGLE_FILE] else (root.resolve().name or "model"))
    try:
        staged.mkdir(mode=0o700)
        hashed = hash_model(root, relpaths, plan=manifest.serialization.plan, copy_to=staged)
        result = finish(root, sig_path, verifier, content, manifest, hashed)
        _freeze(staged)
        from guard.artifacts import open_model_dir

        model = open_model_dir(staged, policy=policy)
        model.verification = result  # who signed, root digest: for reports
        yield model
    finally:
        _thaw(holder)
        shutil.rmtree(holder, ignore_errors=True)


def _freeze(root: pathlib.Path) -> None:
    for dirpath, _dirnames, _files in os.walk(root, topdown=False):
        os.chmod(dirpath, 0o500)


def _thaw(root: pathlib.Path) -> None:
    for dirpath, _dirnames, _files in os.walk(root):
        with contextlib.suppress(OSError):
            os.chmod(dirpath, 0o700)
