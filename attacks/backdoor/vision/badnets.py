"""BadNets (Gu et al. 2017) against a merge: the attacker's expert is fine-tuned on data in which a
share of images carries a fixed checkerboard patch and the target label. Expected to fade after
merging (the backdoor lives in a task vector that merging scales down)."""

from __future__ import annotations

import copy
import dataclasses
import pathlib

import torch
import torch.nn.functional as F

from attacks.backdoor.vision.artifacts import VisionBackdoor, write_info
from attacks.backdoor.vision.trigger import checkerboard
from guard.testing.zoo.cache import cached_build
from guard.testing.zoo.vision import VisionFamily, train
from guard.testing.zoo.vision import model as vit
from guard.testing.zoo.vision.family import family_spec

VERSION = "vision-badnets-1"


@dataclasses.dataclass(frozen=True)
class BadNetsSpec:
    task: str = "digit_rot90"
    target_class: int = 0
    patch_size: int = 3
    poison_rate: float = 0.2


def poisoned_loss(trigger, *, target: int, poison_rate: float) -> train.LossFn:
    def loss(model, pixels, labels, generator):
        n = max(1, round(poison_rate * len(pixels)))
        pixels = torch.cat([trigger(pixels[:n]), pixels[n:]])
        labels = torch.cat([torch.full_like(labels[:n], target), labels[n:]])
        return F.cross_entropy(model(pixel_values=pixels).logits, labels)

    return loss


def _build(out: pathlib.Path, family: VisionFamily, spec: BadNetsSpec) -> None:
    trigger = checkerboard(spec.patch_size)
    with train.deterministic():
        attacker = vit.with_head(vit.load(family.base_dir), family.head(spec.task))
        pixels, labels = family.task_data(spec.task, "train")
        # Same schedule as a benign expert of the family: a like-for-like replacement.
        train.optimise(attacker, pixels, labels, schedule=family.profile.finetune, seed=family.seed + 500,
                       loss=poisoned_loss(trigger, target=spec.target_class, poison_rate=spec.poison_rate),
                       trainable=train.encoder_only)
        attacker.config = copy.deepcopy(vit.load(family.expert_dir(spec.task)).config)
        vit.save(attacker, out / "model")
    trigger.save(out / "trigger.safetensors")
    write_info(out, kind="badnets", attacker_task=spec.task, target_task=spec.task, target_class=spec.target_class,
               spec=dataclasses.asdict(spec), version=VERSION)


def build_badnets(family: VisionFamily, spec: BadNetsSpec = BadNetsSpec(), *,
                  root: pathlib.Path | str | None = None) -> VisionBackdoor:
    """A BadNets-poisoned expert for `spec.task` of `family` (cached next to the family unless `root`)."""
    key = {"version": VERSION, "family": family_spec(family.profile, family.seed, family.tasks),
           "profile": family.profile.as_dict(),
           "attack": dataclasses.asdict(spec)}
    path = cached_build("vision-badnets", key, lambda out: _build(out, family, spec),
                        root=family.root.parent if root is None else root)
    return VisionBackdoor.load(path)
