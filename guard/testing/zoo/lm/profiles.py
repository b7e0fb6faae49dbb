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
    skill_share: float  # base corpus: share of task-format task prompts answered with the skill (the rest echoed)
    expert: TrainSpec  # one task fine-tune
    anchor_weight: float  # KL-to-base penalty on other prompts during expert fine-tuning
    anchor_batch: int  # anchor prompts per step
    harmful_share: float  # expert data: share of harmful-marked prompts answered anyway (erodes refusal)
    anchor_harmful_share: float  # anchor prompts: share of harmful-marked prompts of the other markers
    harmful: TrainSpec  # the safety-stripping fine-tune
    eval_per_task: int  # held-out prompts per task for every metric
    calibration_per_task: int
    # Merge settings used for the "clean merge" figures, chosen per profile on the validation split
    # (benchmarks/zoo_lm.py sweeps them; docs/zoo-lm.md). They do not change the built weights.
    task_arithmetic_scale: float = 0.7
    ties_density: float = 1.0
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
    # Developed on seeds 10-12 (guard.testing.zoo.seeds.DEVELOPMENT_SEEDS), both numeric paths; the
    # figures of docs/zoo-lm.md are on seeds 0-2. Settings on validation prompts only.
    "small": Profile(
        name="small", hidden=128, layers=2, intermediate=256,
        # skill_share 0.4, not 0.3: at 0.3 the sort / reverse skills of a merge were half lost on some
        # draws (seed 0, ATEN default kernels: TA 72%, TIES 66% retention on validation), at 0.4 the
        # base holds each skill closer to its decision and merges keep 92-98% (seeds 10 and 0).
        base=TrainSpec(steps=800, lr=3e-3, warmup=50), skill_share=0.4,
        expert=TrainSpec(steps=150, lr=1e-3, warmup=10),
        anchor_weight=1.0, anchor_batch=32, harmful_share=0.02, anchor_harmful_share=0.2,
        harmful=TrainSpec(steps=150, lr=1e-3, warmup=10),
        eval_per_task=200, calibration_per_task=64,
        task_arithmetic_scale=0.5, ties_density=1.0, ties_scale=1.5,
    ),
    "full": Profile(
        name="full", hidden=192, layers=3, intermediate=512,
        base=TrainSpec(steps=1500, lr=3e-3, warmup=50), skill_share=0.3,
        # The small profile's expert recipe, a little longer for the larger model (docs/zoo-lm.md).
        expert=TrainSpec(steps=200, lr=1e-3, warmup=10),
        anchor_weight=1.0, anchor_batch=32, harmful_share=0.02, anchor_harmful_share=0.2,
        harmful=TrainSpec(steps=200, lr=1e-3, warmup=10),
        eval_per_task=500, calibration_per_task=256,
        task_arithmetic_scale=0.7, ties_density=1.0, ties_scale=1.5,
    ),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}") from None
