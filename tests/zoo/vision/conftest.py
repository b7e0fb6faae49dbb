"""The small vision zoo, built once (cached across runs in $GUARD_ZOO_CACHE) and measured once per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def vision_family(small_zoo):
    from guard.testing.zoo.vision import build_family

    return build_family("small", seed=0)


@pytest.fixture(scope="session")
def vision_figures(vision_family):
    """Every figure of docs/zoo-vision.md for the small profile (the benchmark's own measurement)."""
    from benchmarks.zoo_vision import run

    return run(profile="small", seed=0, root=vision_family.root.parent)
