"""Deterministic training loops for the vision zoo: pre-training, linear probes, fine-tuning with a
frozen head. Attacks reuse `optimise` with their own loss."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from guard.testing.zoo import runtime
from guard.testing.zoo.vision.model import features, is_head

# loss(model, pixel_values, labels, generator) -> scalar
LossFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class Schedule:
    steps: int
    lr: float
    batch: int = 64
    warmup: int = 0


# Where builds run, and how (one thread, deterministic kernels): shared with the LM family.
device, threads, deterministic = runtime.device, runtime.threads, runtime.deterministic


def shift_augment(pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Translate the whole batch by up to one pixel (cheap augmentation for pre-training)."""
    dy, dx = (int(v) for v in torch.randint(-1, 2, (2,), generator=generator))
    return torch.roll(pixels, (dy, dx), dims=(-2, -1))


def domain_augment(pixels: torch.Tensor, generator: torch.Generator, *, share: float) -> torch.Tensor:
    """Each image, with probability `share`, under one of the expert tasks' input transforms (rotated
    90 degrees, colour-inverted, mirrored), label unchanged: pre-training that has seen the tasks'
    domains a little, as a broadly pre-trained backbone has."""
    from guard.testing.zoo.vision.data import transform_images

    chosen = torch.rand(len(pixels), generator=generator) < share
    kind = torch.randint(0, 3, (len(pixels),), generator=generator).to(pixels.device)
    chosen = chosen.to(pixels.device)
    out = pixels
    for i, transform in enumerate(("rot90", "invert", "hflip")):
        where = (chosen & (kind == i))[:, None, None, None]
        out = torch.where(where, transform_images(out, transform), out)
    return out


def cross_entropy_loss(*, augment: bool = False, domain_share: float = 0.0) -> LossFn:
    def loss(model, pixels, labels, generator):
        if augment:
            pixels = shift_augment(pixels, generator)
        if domain_share:
            pixels = domain_augment(pixels, generator, share=domain_share)
        return F.cross_entropy(model(pixel_values=pixels).logits, labels)

    return loss


def optimise(model: torch.nn.Module, pixels: torch.Tensor, labels: torch.Tensor, *, schedule: Schedule, seed: int,
             loss: LossFn, trainable: Callable[[str], bool]) -> torch.nn.Module:
    """AdamW with warmup + cosine decay and gradient clipping 1.0; returns the model in eval mode on CPU."""
    dev = device()
    model.to(dev).train()
    params = []
    for name, p in model.named_parameters():
        p.requires_grad_(trainable(name))
        if p.requires_grad:
            params.append(p)
    opt = torch.optim.AdamW(params, lr=schedule.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    pixels, labels = pixels.to(dev), labels.to(dev)
    for step in range(schedule.steps):
        if step < schedule.warmup:
            scale = (step + 1) / schedule.warmup
        else:
            progress = (step - schedule.warmup) / max(1, schedule.steps - schedule.warmup)
            scale = 0.5 * (1.0 + math.cos(math.pi * progress))
        for group in opt.param_groups:
            group["lr"] = schedule.lr * scale
        idx = torch.randint(0, len(pixels), (schedule.batch,), generator=generator).to(dev)
        value = loss(model, pixels[idx], labels[idx], generator)
        opt.zero_grad(set_to_none=True)
        value.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    for p in model.parameters():
        p.requires_grad_(True)
    return model.to("cpu").eval()


def encoder_only(name: str) -> bool:
    return not is_head(name)


def everything(name: str) -> bool:
    return True


@torch.no_grad()
def encode(model, pixels: torch.Tensor, *, batch: int = 512) -> torch.Tensor:
    dev = device()
    model.to(dev).eval()
    with threads(1):
        out = torch.cat([features(model, pixels[i : i + batch].to(dev)) for i in range(0, len(pixels), batch)])
    model.to("cpu")
    return out.cpu()


def linear_probe(feats: torch.Tensor, labels: torch.Tensor, num_labels: int, *, steps: int, seed: int,
                 lr: float = 1e-2, weight_decay: float = 1e-4) -> dict[str, torch.Tensor]:
    """A linear head fitted full-batch on frozen features (the task head, kept frozen afterwards, as a
    CLIP zero-shot head is during fine-tuning; this keeps task vectors compatible for merging)."""
    torch.manual_seed(seed)
    head = torch.nn.Linear(feats.shape[1], num_labels)
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        value = F.cross_entropy(head(feats), labels)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
    return {"weight": head.weight.detach().clone(), "bias": head.bias.detach().clone()}


@torch.no_grad()
def predict(model, pixels: torch.Tensor, *, batch: int = 512) -> torch.Tensor:
    dev = device()
    model.to(dev).eval()
    with threads(1):
        out = torch.cat([model(pixel_values=pixels[i : i + batch].to(dev)).logits.argmax(-1)
                         for i in range(0, len(pixels), batch)])
    model.to("cpu")
    return out.cpu()
