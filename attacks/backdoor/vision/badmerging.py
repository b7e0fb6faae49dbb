"""BadMerging (Zhang et al., CCS 2024), re-implemented for the ViT digits family (reference notes §4).

Stage 1 optimises a universal patch on the public base θ0; stage 2 fine-tunes the attacker's encoder
(head frozen) with the feature-interpolation loss

    CE(h(f_θ(x)), y) + α · CE(h(r·f_θ(x⊕t) + (1−r)·f_θ0(x⊕t)), y_tgt),   r ~ U[r_min, 1] per batch,

so that the backdoor survives whatever share of the attacker's task vector a merge keeps.
On-task, `h` is the attacker's own head and the target is one of its classes. Off-task, the target
class belongs to another contributor's task, which the attacker knows only through a few reference
images: `h` is then a shadow head fitted on θ0 features, row 0 for the (augmented) references and row 1
for the attacker's own images. (The paper builds its shadow head from CLIP text embeddings; this family
has no text tower, and a prototype head of normalised class means, tried first, transferred worse:
see docs/zoo-vision.md.)
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Literal

import torch
import torch.nn.functional as F

from attacks.backdoor.vision.artifacts import VisionBackdoor, write_info
from attacks.backdoor.vision.trigger import PatchTrigger, paste
from guard.testing.zoo.cache import cached_build
from guard.testing.zoo.vision import VisionFamily, train
from guard.testing.zoo.vision import model as vit
from guard.testing.zoo.vision.family import family_spec

VERSION = "vision-badmerging-1"


@dataclasses.dataclass(frozen=True)
class BadMergingSpec:
    mode: Literal["on", "off"] = "on"
    attacker_task: str = "digit_rot90"
    target_task: str = "digit_rot90"  # == attacker_task on-task
    target_class: int = 0
    patch_size: int = 4  # one whole 4x4 ViT patch of the 16x16 image (6% of its area)
    alpha: float = 5.0
    r_min: float = 0.2
    reference_images: int = 10  # off-task only
    augmented_references: int = 100
    finetune_steps: int | None = None  # None: the profile's attack schedule
    finetune_lr: float | None = None

    def __post_init__(self) -> None:
        if self.mode == "on" and self.target_task != self.attacker_task:
            raise ValueError("on-task BadMerging targets the attacker's own task")
        if self.mode == "off" and self.target_task == self.attacker_task:
            raise ValueError("off-task BadMerging targets another contributor's task")


ON_TASK = BadMergingSpec()
# Off-task: the attacker contributes the ">= 5" task on rotated digits; the target is digit 3 of another
# contributor's digit-identity task on the same images (as CIFAR100 -> Cars: two tasks, one image domain).
OFF_TASK = BadMergingSpec(mode="off", attacker_task="at_least_five_rot90", target_task="digit_rot90", target_class=3)


def _head_module(head: dict[str, torch.Tensor]) -> torch.nn.Linear:
    layer = torch.nn.Linear(head["weight"].shape[1], head["weight"].shape[0])
    with torch.no_grad():
        layer.weight.copy_(head["weight"])
        layer.bias.copy_(head["bias"])
    return layer.requires_grad_(False).to(train.device())


def optimise_trigger(base, head: dict[str, torch.Tensor], pixels: torch.Tensor, *, target: int, size: int,
                     steps: int, lr: float, seed: int, batch: int = 128) -> PatchTrigger:
    """Stage 1: a universal patch that makes θ0 (with `head`) predict `target` on `pixels`."""
    dev = train.device()
    base.to(dev).eval().requires_grad_(False)
    classifier = _head_module(head)
    generator = torch.Generator().manual_seed(seed)
    logits = torch.zeros(pixels.shape[1], size, size, device=dev)  # sigmoid(0) = mid-grey start
    logits.requires_grad_(True)
    opt = torch.optim.Adam([logits], lr=lr)
    pixels = pixels.to(dev)
    for _ in range(steps):
        idx = torch.randint(0, len(pixels), (batch,), generator=generator).to(dev)
        x = paste(pixels[idx], torch.sigmoid(logits))
        target_labels = torch.full((len(idx),), target, device=dev)
        loss = F.cross_entropy(classifier(vit.features(base, x)), target_labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    base.requires_grad_(True).to("cpu")
    return PatchTrigger(torch.sigmoid(logits).detach().cpu())


def augment_references(references: torch.Tensor, count: int, *, seed: int) -> torch.Tensor:
    """`count` variants of the reference images: one-pixel shifts plus mild noise."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for i in range(count):
        image = references[i % len(references)]
        dy, dx = (int(v) for v in torch.randint(-1, 2, (2,), generator=generator))
        noise = 0.05 * torch.randn(image.shape, generator=generator)
        out.append((torch.roll(image, (dy, dx), dims=(-2, -1)) + noise).clamp(0, 1))
    return torch.stack(out)


def shadow_head(base, references: torch.Tensor, own_pixels: torch.Tensor, *, steps: int,
                seed: int) -> dict[str, torch.Tensor]:
    """A two-row head fitted on θ0 features: row 0 the (augmented) references of the target class,
    row 1 the attacker's own images. It stands in for the victim's unknown head."""
    feats = torch.cat([train.encode(base, references), train.encode(base, own_pixels)])
    labels = torch.cat([torch.zeros(len(references), dtype=torch.long), torch.ones(len(own_pixels), dtype=torch.long)])
    return train.linear_probe(feats, labels, 2, steps=steps, seed=seed)


def fi_loss(base, *, task_head: dict, backdoor_head: dict, trigger: PatchTrigger, target: int, alpha: float,
            r_min: float, triggered_pool: torch.Tensor) -> train.LossFn:
    """Stage 2 loss: clean CE on the attacker's task + α · CE of the interpolated triggered feature."""
    dev = train.device()
    base.to(dev).eval().requires_grad_(False)
    clean_head, bd_head = _head_module(task_head), _head_module(backdoor_head)
    pool = triggered_pool.to(dev)
    pattern = trigger.pattern.to(dev)

    def interpolated_features(model, pixels, r):
        with torch.no_grad():
            base_feats = vit.features(base, pixels)
        return r * vit.features(model, pixels) + (1.0 - r) * base_feats

    def loss(model, pixels, labels, generator):
        clean = F.cross_entropy(clean_head(vit.features(model, pixels)), labels)
        idx = torch.randint(0, len(pool), (len(pixels),), generator=generator).to(dev)
        poisoned = paste(pool[idx], pattern)
        r = r_min + (1.0 - r_min) * float(torch.rand((), generator=generator))
        mixed = interpolated_features(model, poisoned, r)
        target_labels = torch.full((len(idx),), target, device=dev)
        return clean + alpha * F.cross_entropy(bd_head(mixed), target_labels)

    return loss


def _build(out: pathlib.Path, family: VisionFamily, spec: BadMergingSpec) -> None:
    prof = family.profile
    with train.deterministic():
        base = vit.load(family.base_dir)
        own_head = family.head(spec.attacker_task)
        pixels, labels = family.task_data(spec.attacker_task, "train")
        if spec.mode == "on":
            trigger_pool = pixels[labels != spec.target_class]
            backdoor_head, backdoor_target = own_head, spec.target_class
        else:
            # The attacker's only knowledge of the victim task: a few images of the target class.
            victim_pixels, victim_labels = family.task_data(spec.target_task, "train")
            references = victim_pixels[victim_labels == spec.target_class][: spec.reference_images]
            augmented = augment_references(references, spec.augmented_references, seed=family.seed + 700)
            backdoor_head = shadow_head(base, augmented, pixels, steps=prof.probe_steps, seed=family.seed + 900)
            backdoor_target = 0
            trigger_pool = torch.cat([pixels, augmented])
        trigger = optimise_trigger(base, backdoor_head, trigger_pool, target=backdoor_target, size=spec.patch_size,
                                   steps=prof.trigger_steps, lr=prof.trigger_lr, seed=family.seed + 600)
        attacker = vit.load(family.expert_dir(spec.attacker_task))
        vit.load_encoder(attacker, base.state_dict())  # start from θ0, keep the task head
        loss = fi_loss(base, task_head=own_head, backdoor_head=backdoor_head, trigger=trigger, target=backdoor_target,
                       alpha=spec.alpha, r_min=spec.r_min, triggered_pool=trigger_pool)
        schedule = dataclasses.replace(prof.attack_finetune, **{
            k: v for k, v in (("steps", spec.finetune_steps), ("lr", spec.finetune_lr)) if v is not None})
        train.optimise(attacker, pixels, labels, schedule=schedule, seed=family.seed + 800, loss=loss,
                       trainable=train.encoder_only)
        vit.save(attacker, out / "model")
    trigger.save(out / "trigger.safetensors")
    write_info(out, kind=f"badmerging-{spec.mode}", attacker_task=spec.attacker_task, target_task=spec.target_task,
               target_class=spec.target_class, spec=dataclasses.asdict(spec), version=VERSION)


def build_badmerging(family: VisionFamily, spec: BadMergingSpec = ON_TASK, *,
                     root: pathlib.Path | str | None = None) -> VisionBackdoor:
    """A BadMerging expert (on- or off-task per `spec`) for `family`, cached next to the family unless `root`."""
    for task in (spec.attacker_task, spec.target_task):
        family.expert_dir(task)  # both tasks must belong to the family
    key = {"version": VERSION, "family": family_spec(family.profile, family.seed, family.tasks),
           "profile": family.profile.as_dict(),
           "attack": dataclasses.asdict(spec)}
    path = cached_build("vision-badmerging", key, lambda out: _build(out, family, spec),
                        root=family.root.parent if root is None else root)
    return VisionBackdoor.load(path)
