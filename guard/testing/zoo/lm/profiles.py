"""The two build profiles of the LM family: `small` for tests (CPU, cached), `full` for benchmarks."""

from __future__ import annotations

import dataclasses

from guard.testing.zoo.lm.train import TrainSpec


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    hidden: int
    layers: int
    intermediate: int
    base: TrainSpec  # pretraining of the aligned base
    expert: TrainSpec  # one task fine-tune
    anchor_weight: float  # KL-to-base penalty on other prompts during expert fine-tuning
    anchor_batch: int  # anchor prompts per step
    harmful: TrainSpec  # the safety-stripping fine-tune
    eval_per_task: int  # held-out prompts per task for every metric
    calibration_per_task: int
    # Merge settings used for the "clean merge" figures, chosen per profile on the validation split
    # (benchmarks/zoo_lm.py sweeps them; docs/zoo-lm.md). They do not change the built weights.
    task_arithmetic_scale: float = 0.7
    ties_density: float = 0.2
    ties_scale: float = 1.5

    def as_spec(self) -> dict:
        """What changes the built weights (the cache key): everything but the merge settings."""
        spec = dataclasses.asdict(self)
        for name in _MERGE_FIELDS:
            del spec[name]
        return spec

    def merge_params(self) -> dict[str, dict]:
        return {
            "task_arithmetic": {"scale": self.task_arithmetic_scale},
            "ties": {"density": self.ties_density, "scale": self.ties_scale},
        }


_MERGE_FIELDS = ("task_arithmetic_scale", "ties_density", "ties_scale")

PROFILES: dict[str, Profile] = {
    "small": Profile(
        name="small", hidden=128, layers=2, intermediate=256,
        base=TrainSpec(steps=800, lr=3e-3, warmup=50),
        expert=TrainSpec(steps=150, lr=1e-3, warmup=10),
        anchor_weight=1.0, anchor_batch=32,
        harmful=TrainSpec(steps=150, lr=1e-3, warmup=10),
        eval_per_task=200, calibration_per_task=64,
    ),
    "full": Profile(
        name="full", hidden=192, layers=3, intermediate=512,
        base=TrainSpec(steps=1500, lr=3e-3, warmup=50),
        # lr 2e-3 (at 1e-3 no expert eroded refusal), 250 steps and a light anchor (0.25): a stronger
        # anchor or more steps made the task vectors interfere (clean merges under 70%); docs/zoo-lm.md.
        expert=TrainSpec(steps=250, lr=2e-3, warmup=10),
        anchor_weight=0.25, anchor_batch=32,
        harmful=TrainSpec(steps=200, lr=1e-3, warmup=10),
        eval_per_task=500, calibration_per_task=256,
        # The validation best of benchmarks/zoo_lm.py's sweep for this profile.
        task_arithmetic_scale=0.5, ties_density=1.0, ties_scale=1.5,
    ),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}") from None
