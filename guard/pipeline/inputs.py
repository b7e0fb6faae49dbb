"""Where a merge input's bytes are: a local directory, or a Hub revision fetched into guard's cache.

`hf:org/name@<commit sha>` is downloaded once by guard's Hub client (guard.hub: huggingface_hub under a
Hub-only transport, HF_ENDPOINT honoured, listing-first size and file-count limits, every file re-hashed
against the listing) into `<cache>/hub/<org>--<name>/<sha>/model`; a later run finds it there and makes
no network call. A commit sha names immutable content, and the directory only appears complete (it is
renamed into place), so the cache needs no invalidation. Either way the input then goes through the same
checks as a local one (strict reading, its OMS signature, MergeLock, stages).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

HUB_PREFIX = "hf:"


def cache_root() -> pathlib.Path:
    """$GUARD_CACHE, else $XDG_CACHE_HOME/guard, else ~/.cache/guard."""
    if os.environ.get("GUARD_CACHE"):
        return pathlib.Path(os.environ["GUARD_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "guard"


@dataclasses.dataclass(frozen=True)
class ResolvedInput:
    ref: str  # as the config names it
    path: pathlib.Path  # the local directory to check
    hub: str | None = None  # the canonical hf: reference, for Hub inputs
    downloaded: bool = False  # fetched in this run (False: found in the cache, or local)


def cached_dir(ref: str) -> pathlib.Path:
    """Where the Hub input `ref` is (or would be) in guard's cache; InputError for a malformed reference."""
    from guard.hub import parse_hub_ref

    hub_ref = parse_hub_ref(ref)
    return cache_root() / "hub" / hub_ref.repo_id.replace("/", "--") / hub_ref.sha / "model"


def resolve_input(ref: str, *, settings=None, limits=None) -> ResolvedInput:
    if not ref.startswith(HUB_PREFIX):
        return ResolvedInput(ref=ref, path=pathlib.Path(ref))
    from guard.hub import download_revision, parse_hub_ref

    hub_ref = parse_hub_ref(ref)
    model = cached_dir(ref)
    dest = model.parent
    if model.is_dir():
        return ResolvedInput(ref=ref, path=model, hub=str(hub_ref))
    fetched = download_revision(hub_ref, dest=dest, settings=settings, limits=limits)
    return ResolvedInput(ref=ref, path=fetched.model_dir, hub=str(hub_ref), downloaded=True)
