"""Cold builds of the small zoo (seed $GUARD_ZOO_SEED, default 0), one family per CPU core.

The issue's budget is a cold small zoo within 3 minutes on 2 cores. Each build is single-threaded and
deterministic, so the two families (each with its attacks) are built side by side in two spawned
processes; afterwards every fixture's build is a cache hit. The lists below must name exactly what the
tests build (same arguments, hence the same cache keys); `tests/zoo/*/test_warm.py` check, with
`built_after`, that the fixtures found everything cached.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import pathlib


def warm_vision() -> None:
    from benchmarks.zoo_vision import ATTACKS
    from guard.testing.zoo.seeds import env_seed
    from guard.testing.zoo.vision import build_family

    family = build_family("small", seed=env_seed())
    for build in ATTACKS.values():
        build(family)


def warm_lm() -> None:
    from attacks.backdoor.lm import build_amplified_expert, build_badnets_expert, build_merge_aware_expert
    from attacks.safety import build_harmful_copy
    from guard.testing.zoo.lm import build_family
    from guard.testing.zoo.seeds import env_seed

    family = build_family("small", seed=env_seed())
    build_harmful_copy(family)
    build_amplified_expert(family, backdoored=build_badnets_expert(family, task="sort"), task="sort")
    build_merge_aware_expert(family, task="sort")


def warm_small_zoo() -> None:
    """Build (or find cached) both small families and their attacks, in parallel."""
    context = multiprocessing.get_context("spawn")  # no fork of a process that has started torch threads
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
        for job in [pool.submit(warm_vision), pool.submit(warm_lm)]:
            job.result()


def built_after(moment: float) -> list[str]:
    """Zoo cache entries completed after `moment` (an entry's mtime is when its build finished)."""
    from guard.testing.zoo.cache import cache_root

    entries = [p for p in pathlib.Path(cache_root()).iterdir() if p.is_dir() and p.name.startswith(("lm-", "vision-"))]
    return [p.name for p in entries if p.stat().st_mtime > moment]
