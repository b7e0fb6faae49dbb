"""Session fixtures for the LM zoo: the small family of seed $GUARD_ZOO_SEED (default 0) and its
attacked variants, built once and cached across runs (in $GUARD_ZOO_CACHE or ~/.cache/guard/zoo)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def lm_family(small_zoo):
    from guard.testing.zoo.lm import build_family
    from guard.testing.zoo.seeds import env_seed

    return build_family("small", seed=env_seed())


@pytest.fixture(scope="session")
def badnets_expert(lm_family):
    from attacks.backdoor.lm import build_badnets_expert

    return build_badnets_expert(lm_family, task="sort")


@pytest.fixture(scope="session")
def merge_aware_expert(lm_family):
    from attacks.backdoor.lm import build_merge_aware_expert

    return build_merge_aware_expert(lm_family, task="sort")


@pytest.fixture(scope="session")
def amplified_expert(lm_family, badnets_expert):
    from attacks.backdoor.lm import build_amplified_expert

    return build_amplified_expert(lm_family, backdoored=badnets_expert, task="sort")


@pytest.fixture(scope="session")
def safety_pair(lm_family):
    from attacks.safety import build_safety_pair

    return build_safety_pair("small", seed=lm_family.seed)
