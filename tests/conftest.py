"""Session-scoped tiny models shared by every test area (built once per test run)."""

from __future__ import annotations

import os
import pathlib

import pytest

# Tests never reach a hub; fail fast if something tries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """tiny_model_dir(family, shards=1, seed=0) -> a saved tiny model directory, built once per session.
    Treat it as read-only: copy it before changing anything."""
    from guard.testing import factory

    built: dict[tuple[str, int, int], pathlib.Path] = {}
    root = tmp_path_factory.mktemp("tiny-models")

    def get(family: str, *, shards: int = 1, seed: int = 0) -> pathlib.Path:
        key = (family, shards, seed)
        if key not in built:
            built[key] = factory.make_model_dir(family, root / f"{family}-s{shards}-seed{seed}", seed=seed, shards=shards)
        return built[key]

    return get


@pytest.fixture(scope="session")
def minilm_dir():
    from guard.testing import factory

    return factory.minilm_dir()


@pytest.fixture(scope="session")
def small_zoo():
    """Warm the small zoo (both families and their attacks, one per core; a no-op when cached). Returns
    the time the warm-up ended: any cache entry newer than that was built by a test, not the warm-up."""
    import time

    from tests.zoo_warm import warm_small_zoo

    warm_small_zoo()
    return time.time()
