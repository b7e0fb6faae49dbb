"""Content-hashed build cache for trained model families.

A build is identified by sha256(kind, canonical JSON of its spec, the numeric path); everything that
changes the output (seed, profile, hyperparameters, a code `version`) belongs in the spec. The numeric
path (`numeric_path()`: torch version, device, and on CPU the kernel set ATen dispatches to) is added
by `cached_build` itself: the same recipe and seed give other bytes under another kernel path (e.g.
AVX-512 against `ATEN_CPU_CAPABILITY=default`), so an entry built under one must never be served under
another. Builds go to a temp dir that is renamed into place, so a cache entry is either absent or
complete; a lock file serialises concurrent builders (tests and benchmarks may race).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pathlib
import platform
import shutil
import tempfile
from collections.abc import Callable

_COMPLETE = ".complete"
_SPEC = "spec.json"


def cache_root() -> pathlib.Path:
    env = os.environ.get("GUARD_ZOO_CACHE")
    return pathlib.Path(env) if env else pathlib.Path.home() / ".cache" / "guard" / "zoo"


def numeric_path() -> dict[str, str]:
    """What decides the floating-point results of a build besides its spec: torch's version, the device
    builds run on (CUDA when present), and on CPU the architecture and the kernel set ATen dispatches to
    (`AVX512`, `AVX2`, ... or `DEFAULT` under `ATEN_CPU_CAPABILITY=default`)."""
    import torch

    path = {"torch": torch.__version__, "machine": platform.machine()}
    if torch.cuda.is_available():
        path.update(device="cuda", gpu=torch.cuda.get_device_name(), cuda=str(torch.version.cuda))
    else:
        path.update(device="cpu", cpu_capability=torch.backends.cpu.get_cpu_capability())
    return path


def spec_key(kind: str, spec: dict) -> str:
    """The cache key of (kind, spec) under this process's numeric path."""
    canonical = json.dumps({"kind": kind, "spec": spec, "numeric_path": numeric_path()}, sort_keys=True,
                           separators=(",", ":"), default=str)
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
            (tmp / _SPEC).write_text(json.dumps({"kind": kind, "spec": spec, "numeric_path": numeric_path()},
                                                sort_keys=True, indent=2, default=str))
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
