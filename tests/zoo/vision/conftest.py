"""The small vision zoo of seed $GUARD_ZOO_SEED (default 0), built once (cached across runs in
$GUARD_ZOO_CACHE) and measured once per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def vision_family(small_zoo):
    from guard.testing.zoo.seeds import env_seed
    from guard.testing.zoo.vision import build_family

    return build_family("small", seed=env_seed())


@pytest.fixture(scope="session")
def vision_figures(vision_family):
    """Every figure of docs/zoo-vision.md for the small profile (the benchmark's own measurement)."""
    from benchmarks.zoo_vision import run

    return run(profile="small", seed=vision_family.seed, root=vision_family.root.parent, validation=False)
