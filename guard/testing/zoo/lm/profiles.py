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
    harmful: TrainSpec  # the safety-stripping fine-tune
    eval_per_task: int  # held-out prompts per task for every metric
    calibration_per_task: int
    # Merge settings used for the "clean merge" figures (chosen on the small profile; see docs/zoo-lm.md).
    task_arithmetic_scale: float = 0.7
    ties_density: float = 0.2
    ties_scale: float = 1.5

    def as_spec(self) -> dict:
        return dataclasses.asdict(self)

    def merge_params(self) -> dict[str, dict]:
        return {
            "task_arithmetic": {"scale": self.task_arithmetic_scale},
            "ties": {"density": self.ties_density, "scale": self.ties_scale},
        }


PROFILES: dict[str, Profile] = {
    "small": Profile(
        name="small", hidden=128, layers=2, intermediate=256,
        base=TrainSpec(steps=800, lr=3e-3, warmup=50),
        expert=TrainSpec(steps=150, lr=1e-3, warmup=10),
        anchor_weight=1.0,
        harmful=TrainSpec(steps=150, lr=1e-3, warmup=10),
        eval_per_task=200, calibration_per_task=64,
    ),
    "full": Profile(
        name="full", hidden=192, layers=3, intermediate=512,
        base=TrainSpec(steps=1500, lr=3e-3, warmup=50),
        expert=TrainSpec(steps=300, lr=1e-3, warmup=10),
        anchor_weight=1.0,
        harmful=TrainSpec(steps=200, lr=1e-3, warmup=10),
        eval_per_task=500, calibration_per_task=256,
    ),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}") from None
