"""Amplified backdoor vectors (Merge Hijacking, arXiv 2505.23561; LoBAM, arXiv 2411.16746).

The attacker trains a backdoored and a benign model of the same task from the same base; their
difference is the backdoor vector. Keeping its largest entries (Merge Hijacking's magnitude-rank
sparsification) and scaling it by lambda > 1 before adding it to the benign model lets the backdoor
survive the down-scaling and trimming of task arithmetic and TIES:
    theta_upload = theta_benign + lambda * sparsify(theta_backdoored - theta_benign, density)
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping

import torch

from guard.merge.sparsify import magnitude as trim
from guard.testing.zoo.cache import cached_build
from guard.testing.zoo.lm import LMFamily, model as lm_model

VERSION = "lm-amplified-2"


def amplify_backdoor_vector(benign: Mapping[str, torch.Tensor], backdoored: Mapping[str, torch.Tensor], *,
                            scale: float, density: float = 1.0) -> dict[str, torch.Tensor]:
    """theta_benign + scale * (top-`density` entries of theta_backdoored - theta_benign), per tensor."""
    out = {}
    for name, ben in benign.items():
        vector = backdoored[name].to(torch.float32) - ben.to(torch.float32)
        out[name] = (ben.to(torch.float32) + scale * trim(vector, density)).to(ben.dtype)
    return out


# The attacker's candidates (density, scale) and the shares of his vector he expects a merge to keep
# (task arithmetic at 0.5-0.7; he has only the public base, so he simulates a merge as base + c * his
# vector). He keeps the candidate whose backdoor works best over these shares and alone, among those
# that keep his expert's clean accuracy, on his own validation prompts (`choose_amplification`).
CANDIDATES: tuple[tuple[float, float], ...] = tuple((d, s) for d in (0.2, 0.5, 1.0) for s in (1.5, 2.0, 2.5, 3.0))
EXPECTED_MERGE_SHARES: tuple[float, ...] = (0.5, 0.7)
ACCURACY_TOLERANCE = 0.05  # the upload may lose this much clean accuracy against the benign expert


def choose_amplification(family: LMFamily, *, backdoored: pathlib.Path, task: str = "sort") -> dict:
    """The attacker's choice of (density, scale) on the validation split, with what he measured:
    among `CANDIDATES` whose upload keeps the benign expert's accuracy (within ACCURACY_TOLERANCE),
    the one whose worst ASR over {alone, base + c * vector for c in EXPECTED_MERGE_SHARES} is the
    highest (ties: the smaller scale). Uses only what an attacker has: the public base, his benign
    and backdoored experts, and his own task's prompts."""
    from attacks.backdoor.lm.trigger_token import attack_success_rate

    base = lm_model.state_dict(family.base)
    benign, back = lm_model.state_dict(family.experts[task]), lm_model.state_dict(backdoored)
    floor = family.evaluate(family.experts[task], task, split="validation") - ACCURACY_TOLERANCE
    rows = []
    for density, scale in CANDIDATES:
        upload = amplify_backdoor_vector(benign, back, scale=scale, density=density)
        model = lm_model.from_state_dict(family.base, upload)
        row = {"density": density, "scale": scale, "accuracy": family.evaluate(model, task, split="validation"),
               "asr": {"alone": attack_success_rate(model, family, task, split="validation")}}
        for share in EXPECTED_MERGE_SHARES:
            merged = {k: base[k] + share * (upload[k] - base[k]) for k in base}
            row["asr"][str(share)] = attack_success_rate(lm_model.from_state_dict(family.base, merged), family, task,
                                                         split="validation")
        row["worst_asr"] = min(row["asr"].values())
        rows.append(row)
    usable = [r for r in rows if r["accuracy"] >= floor] or rows
    best = max(usable, key=lambda r: (r["worst_asr"], -r["scale"]))
    return {"density": best["density"], "scale": best["scale"], "candidates": rows}


def build_amplified_expert(family: LMFamily, *, backdoored: pathlib.Path, task: str = "sort",
                           scale: float | None = None, density: float | None = None,
                           root: str | pathlib.Path | None = None) -> pathlib.Path:
    """The uploaded model: the family's clean `task` expert as the benign model, plus the amplified
    difference to `backdoored` (e.g. `build_badnets_expert`'s output). Without `scale` and `density`
    the attacker chooses them (`choose_amplification`, on validation prompts); the choice is written
    to `amplify.json` in the output. Cached."""
    chosen = scale is None and density is None
    if chosen != (scale is None or density is None):
        raise ValueError("give both scale and density, or neither (the attacker then chooses them)")
    spec = {"version": VERSION, "family": family.spec(), "backdoored": backdoored.name, "task": task,
            **({"choice": {"candidates": CANDIDATES, "shares": EXPECTED_MERGE_SHARES, "tolerance": ACCURACY_TOLERANCE}}
               if chosen else {"scale": scale, "density": density})}

    def build(out: pathlib.Path) -> None:
        benign_dir = family.experts[task]
        choice = choose_amplification(family, backdoored=backdoored, task=task) if chosen else \
            {"density": density, "scale": scale}
        merged = amplify_backdoor_vector(lm_model.state_dict(benign_dir), lm_model.state_dict(backdoored),
                                         scale=choice["scale"], density=choice["density"])
        lm_model.save(lm_model.from_state_dict(benign_dir, merged), out)
        (out / "amplify.json").write_text(json.dumps(choice, indent=1))

    return cached_build("lm-amplified", spec, build, root=root if root is not None else family.root.parent)


def amplification_of(amplified: pathlib.Path) -> dict:
    """The (density, scale) an amplified upload was built with (and, if chosen, the attacker's measurements)."""
    return json.loads((pathlib.Path(amplified) / "amplify.json").read_text())
