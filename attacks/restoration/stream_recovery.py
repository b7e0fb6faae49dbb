"""How well orthogonal Procrustes against the base recovers the lock's residual-stream transform, on the
zoo's families: per protected expert, the share of stream dims recovered exactly (a (signed) permutation)
or the largest entry error (a rotation). The full figure run (attacks.restoration.run) prints the same for
the default lock; this is the quick measurement over several seeds and both forms.

    python -m attacks.restoration.stream_recovery --zoo small,lm-small --seeds 0,1,2 --variant default
    python -m attacks.restoration.stream_recovery --zoo small,lm-small --seeds 0,1,2 --variant rotation
"""

from __future__ import annotations

import argparse
import json

import torch

from attacks.restoration.run import (FIGURE_KEY, VARIANTS, ZOO_SETUPS, _seeds_arg, residual_form, stream_recovery,
                                     zoo_setup)
from guard.lock.state import DEFAULT_BOUND, protect_state


def measure(zoo: str, *, seed: int, variant: str) -> dict[str, dict]:
    """task -> {"form": ..., "dims_recovered" | "max_abs_error": ...} for one zoo family and seed."""
    torch.set_num_threads(1)
    setup = zoo_setup(zoo, seed=seed)
    form = residual_form(setup, variant)
    if form == "none":
        raise ValueError(f"variant {variant!r} has no residual transform")
    return {task: {"form": form, **stream_recovery(protect_state(expert, config=setup.config, key=FIGURE_KEY,
                                                                 bound=DEFAULT_BOUND, **VARIANTS[variant]),
                                                   setup, form)}
            for task, expert in setup.experts.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default="small,lm-small", help=f"comma-separated, of {', '.join(ZOO_SETUPS)}")
    parser.add_argument("--seeds", type=_seeds_arg, default=[0])
    parser.add_argument("--variant", choices=("default", "rotation"), default="default")
    args = parser.parse_args(argv)
    zoos = args.zoo.split(",")
    if any(z not in ZOO_SETUPS for z in zoos):
        parser.error(f"--zoo: expected some of {', '.join(ZOO_SETUPS)}")
    results = {f"{zoo} seed {seed}": measure(zoo, seed=seed, variant=args.variant) for zoo in zoos for seed in args.seeds}
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
