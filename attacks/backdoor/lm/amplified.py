"""Amplified backdoor vectors (Merge Hijacking, arXiv 2505.23561; LoBAM, arXiv 2411.16746).

The attacker trains a backdoored and a benign model of the same task from the same base; their
difference is the backdoor vector. Keeping its largest entries (Merge Hijacking's magnitude-rank
sparsification) and scaling it by lambda > 1 before adding it to the benign model lets the backdoor
survive the down-scaling and trimming of task arithmetic and TIES:
    theta_upload = theta_benign + lambda * sparsify(theta_backdoored - theta_benign, density)
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping

import torch

from guard.merge.sparsify import magnitude as trim
from guard.testing.zoo.cache import cached_build
from guard.testing.zoo.lm import LMFamily, model as lm_model

VERSION = "lm-amplified-1"


def amplify_backdoor_vector(benign: Mapping[str, torch.Tensor], backdoored: Mapping[str, torch.Tensor], *,
                            scale: float, density: float = 1.0) -> dict[str, torch.Tensor]:
    """theta_benign + scale * (top-`density` entries of theta_backdoored - theta_benign), per tensor."""
    out = {}
    for name, ben in benign.items():
        vector = backdoored[name].to(torch.float32) - ben.to(torch.float32)
        out[name] = (ben.to(torch.float32) + scale * trim(vector, density)).to(ben.dtype)
    return out


# Per profile, chosen on the validation split (benchmarks/zoo_lm.py, docs/zoo-lm.md): dense vectors
# at x3 break the expert itself. small: x3 at 5% survives both merges. full: nothing that keeps the
# expert usable survives task arithmetic; x3 at 5% survives TIES best among those.
DEFAULT_SCALE = {"small": 3.0, "full": 3.0}
DEFAULT_DENSITY = {"small": 0.05, "full": 0.05}


def build_amplified_expert(family: LMFamily, *, backdoored: pathlib.Path, task: str = "sort",
                           scale: float | None = None, density: float | None = None,
                           root: str | pathlib.Path | None = None) -> pathlib.Path:
    """The uploaded model: the family's clean `task` expert as the benign model, plus the amplified
    difference to `backdoored` (e.g. `build_badnets_expert`'s output); `scale` and `density`
    default to the profile's. Cached."""
    scale = DEFAULT_SCALE[family.profile.name] if scale is None else scale
    density = DEFAULT_DENSITY[family.profile.name] if density is None else density
    spec = {"version": VERSION, "family": family.spec(), "backdoored": backdoored.name, "task": task,
            "scale": scale, "density": density}

    def build(out: pathlib.Path) -> None:
        benign_dir = family.experts[task]
        merged = amplify_backdoor_vector(lm_model.state_dict(benign_dir), lm_model.state_dict(backdoored),
                                         scale=scale, density=density)
        lm_model.save(lm_model.from_state_dict(benign_dir, merged), out)

    return cached_build("lm-amplified", spec, build, root=root if root is not None else family.root.parent)
