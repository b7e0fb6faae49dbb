"""Seeds: an axis of every zoo build.

Every family (`build_family(profile, seed=...)`) and every attacked variant built from it is keyed by
its seed in the cache, and the seed decides the weights' initialisation, the training data drawn and
(LM family) the held-out prompts. A figure measured on the zoo is a distribution over seeds; a property
that holds on one seed only is not a property of the recipe.

- `REPORTED_SEEDS`: the seeds of the figures in docs/zoo-lm.md and docs/zoo-vision.md (mean and worst
  case over them and over two numeric paths). The zoo tests must pass on each of them.
- `DEVELOPMENT_SEEDS`: the seeds the recipes were developed on. They are disjoint from the reported
  ones, so the reported figures come from draws nothing was tuned on.
- `env_seed()`: the seed the tests build (`GUARD_ZOO_SEED`, default 0; CI runs seed 0).

Downstream measurements that calibrate on the zoo (probe thresholds, defence settings) should do the
same: calibrate on some seeds, report on others (e.g. calibrate on 0 and report on 1 and 2).
"""

from __future__ import annotations

import os

SEED_ENV = "GUARD_ZOO_SEED"
DEFAULT_SEED = 0
REPORTED_SEEDS: tuple[int, ...] = (0, 1, 2)
DEVELOPMENT_SEEDS: tuple[int, ...] = (10, 11, 12)


def env_seed() -> int:
    """The zoo seed chosen by `$GUARD_ZOO_SEED` (default 0): a non-negative integer."""
    raw = os.environ.get(SEED_ENV, "").strip()
    if not raw:
        return DEFAULT_SEED
    try:
        seed = int(raw)
    except ValueError:
        raise ValueError(f"{SEED_ENV}={raw!r} is not an integer seed") from None
    if seed < 0:
        raise ValueError(f"{SEED_ENV}={raw!r}: seeds are non-negative")
    return seed
