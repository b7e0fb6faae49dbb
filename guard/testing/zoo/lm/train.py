"""Deterministic next-token training on answer tokens (the prompt is context, not a target)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from guard.testing.zoo import runtime
from guard.testing.zoo.lm.tasks import Example
from guard.testing.zoo.lm.vocab import PAD_ID, encode

Sampler = Callable[[np.random.Generator], Example]


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    steps: int
    lr: float
    batch: int = 64
    warmup: int = 0
    weight_decay: float = 0.0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def mixture(components: Sequence[tuple[float, Sampler]]) -> Sampler:
    """A sampler drawing from `components` with the given weights."""
    weights = np.array([w for w, _ in components], dtype=float)
    weights /= weights.sum()
    samplers = [s for _, s in components]

    def draw(rng: np.random.Generator) -> Example:
        return samplers[int(rng.choice(len(samplers), p=weights))](rng)

    return draw


def batch_tensors(examples: Sequence[Example]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input ids and labels (-100 on prompt and padding). Causal attention never looks
    right, so right padding needs no attention mask."""
    seqs = [(encode(e.prompt), encode(e.answer)) for e in examples]
    width = max(len(p) + len(a) for p, a in seqs)
    ids = torch.full((len(seqs), width), PAD_ID, dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    for row, (p, a) in enumerate(seqs):
        full = p + a
        ids[row, : len(full)] = torch.tensor(full)
        labels[row, len(p) : len(full)] = torch.tensor(a)
    return ids, labels


@dataclasses.dataclass(frozen=True)
class Anchor:
    """Keep the student's next-token distributions close to `teacher` on `sampler`'s sequences
    (KL at the answer positions), as in fine-tuning with a KL penalty to the reference model."""

    teacher: torch.nn.Module
    sampler: Sampler
    weight: float = 1.0
    batch: int = 32


@dataclasses.dataclass(frozen=True)
class Interpolation:
    """Also train the data loss at the interpolated weights origin + r * (theta - origin), r drawn from
    U[r_min, 1] at every step, with weight `weight`: the model's vector then does its job at any share
    r >= r_min of itself, as it must inside a merge that scales it down (BadMerging's weight-space form)."""

    origin: dict[str, torch.Tensor]
    r_min: float = 0.3
    weight: float = 1.0


def _interpolated_loss(model: torch.nn.Module, interpolation: Interpolation, r: float, ids: torch.Tensor,
                       labels: torch.Tensor) -> torch.Tensor:
    params = {name: interpolation.origin[name] + r * (p - interpolation.origin[name]) for name, p in model.named_parameters()}
    return torch.func.functional_call(model, params, args=(), kwargs={"input_ids": ids, "labels": labels}).loss


def _anchor_loss(model: torch.nn.Module, anchor: Anchor, rng: np.random.Generator, dev: torch.device) -> torch.Tensor:
    ids, labels = batch_tensors([anchor.sampler(rng) for _ in range(anchor.batch)])
    ids, where = ids.to(dev), (labels != -100).to(dev)
    # Positions whose prediction is an answer token: shift the answer mask left by one.
    where = torch.cat([where[:, 1:], torch.zeros_like(where[:, :1])], dim=1)
    with torch.no_grad():
        target = torch.log_softmax(anchor.teacher(input_ids=ids).logits[where], dim=-1)
    pred = torch.log_softmax(model(input_ids=ids).logits[where], dim=-1)
    return torch.nn.functional.kl_div(pred, target, log_target=True, reduction="batchmean")


def train(model: torch.nn.Module, sampler: Sampler, spec: TrainSpec, *, seed: int,
          anchor: Anchor | None = None, interpolation: Interpolation | None = None) -> torch.nn.Module:
    """Train in place with AdamW and a warmup + cosine schedule; returns the model in eval mode on CPU.
    `anchor` adds a KL penalty to a reference model on other inputs; `interpolation` adds the data
    loss at interpolated weights."""
    dev = runtime.device()
    torch.manual_seed(seed)
    model.to(dev).train()
    if anchor is not None:
        anchor.teacher.to(dev).eval()
    params = list(model.parameters())
    if interpolation is not None:
        interpolation = dataclasses.replace(interpolation, origin={k: v.to(dev) for k, v in interpolation.origin.items()})
    opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    rng = np.random.default_rng(seed)
    shares = np.random.default_rng([seed, 7])  # r of `interpolation`: a stream of its own, so the data stream stays the same

    def lr_at(step: int) -> float:
        if step < spec.warmup:
            return (step + 1) / spec.warmup
        progress = (step - spec.warmup) / max(1, spec.steps - spec.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    for step in range(spec.steps):
        ids, labels = batch_tensors([sampler(rng) for _ in range(spec.batch)])
        ids, labels = ids.to(dev), labels.to(dev)
        loss = model(input_ids=ids, labels=labels).loss
        if interpolation is not None:
            r = interpolation.r_min + (1.0 - interpolation.r_min) * float(shares.random())
            loss = loss + interpolation.weight * _interpolated_loss(model, interpolation, r, ids, labels)
        if anchor is not None:
            loss = loss + anchor.weight * _anchor_loss(model, anchor, rng, dev)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        for group in opt.param_groups:
            group["lr"] = spec.lr * lr_at(step)
        opt.step()
        opt.zero_grad(set_to_none=True)
    if anchor is not None:
        anchor.teacher.cpu()
    return model.cpu().eval()
