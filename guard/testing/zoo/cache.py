"""Content-hashed build cache for trained model families.

A build is identified by sha256(kind, canonical JSON of its spec); everything that changes the output
(seed, profile, hyperparameters, a code `version`) belongs in the spec. Builds go to a temp dir that is
renamed into place, so a cache entry is either absent or complete; a lock file serialises concurrent
builders (tests and benchmarks may race).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Callable

_COMPLETE = ".complete"
_SPEC = "spec.json"


def cache_root() -> pathlib.Path:
    env = os.environ.get("GUARD_ZOO_CACHE")
    return pathlib.Path(env) if env else pathlib.Path.home() / ".cache" / "guard" / "zoo"


def spec_key(kind: str, spec: dict) -> str:
    canonical = json.dumps({"kind": kind, "spec": spec}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


def cached_build(
    kind: str,
    spec: dict,
    build: Callable[[pathlib.Path], None],
    *,
    root: pathlib.Path | str | None = None,
) -> pathlib.Path:
    """Return the directory holding `build`'s output for (kind, spec), building it once if needed."""
    base = pathlib.Path(root) if root is not None else cache_root()
    base.mkdir(parents=True, exist_ok=True)
    final = base / f"{kind}-{spec_key(kind, spec)}"
    if (final / _COMPLETE).is_file():
        return final
    with open(base / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / _COMPLETE).is_file():  # another process built it while we waited
            return final
        if final.exists():  # a stale, incomplete entry from a killed build
            shutil.rmtree(final)
        tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=base))
        try:
            build(tmp)
            (tmp / _SPEC).write_text(json.dumps({"kind": kind, "spec": spec}, sort_keys=True, indent=2, default=str))
            (tmp / _COMPLETE).write_text("")
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def copy_entry(entry: pathlib.Path, dest: pathlib.Path) -> None:
    """Copy a cache entry's built files to `dest` (without the cache's own bookkeeping files), e.g. to
    embed one build in another."""
    shutil.copytree(entry, dest, ignore=shutil.ignore_patterns(_SPEC, _COMPLETE))
