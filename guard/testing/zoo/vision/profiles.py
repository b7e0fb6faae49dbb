"""Build profiles of the vision zoo: `small` for tests (about a minute cold on CPU), `full` for
benchmarks (larger model, longer training, CUDA when present)."""

from __future__ import annotations

import dataclasses

from guard.testing.zoo.vision.train import Schedule


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    image_size: int
    hidden: int
    layers: int
    heads: int
    mlp: int
    pretrain: Schedule
    pretrain_domain_share: float  # share of pre-training images under a task's input transform (train.domain_augment)
    finetune: Schedule
    probe_steps: int
    # attacks
    attack_finetune: Schedule
    trigger_steps: int
    trigger_lr: float

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def family_dict(self) -> dict:
        """The fields that determine the family's bytes (attack settings excluded, so that tuning an
        attack does not rebuild the family)."""
        return {k: v for k, v in self.as_dict().items() if k not in _ATTACK_FIELDS}


_ATTACK_FIELDS = ("attack_finetune", "trigger_steps", "trigger_lr")

PROFILES: dict[str, Profile] = {
    "small": Profile(
        name="small", image_size=16, hidden=64, layers=2, heads=4, mlp=128,
        pretrain=Schedule(steps=1200, lr=3e-3, batch=64, warmup=100), pretrain_domain_share=0.3,
        finetune=Schedule(steps=250, lr=5e-4, batch=64),
        probe_steps=300,
        attack_finetune=Schedule(steps=600, lr=5e-4, batch=64),
        trigger_steps=200, trigger_lr=0.05,
    ),
    "full": Profile(
        name="full", image_size=16, hidden=128, layers=4, heads=4, mlp=256,
        pretrain=Schedule(steps=2000, lr=1e-3, batch=128, warmup=200), pretrain_domain_share=0.0,
        finetune=Schedule(steps=300, lr=3e-4, batch=128),
        probe_steps=500,
        attack_finetune=Schedule(steps=1000, lr=1e-3, batch=128),
        trigger_steps=300, trigger_lr=0.05,
    ),
}


def profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown vision zoo profile {name!r}; known: {', '.join(PROFILES)}") from None
