"""Deterministic next-token training on answer tokens (the prompt is context, not a target)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

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


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclasses.dataclass(frozen=True)
class Anchor:
    """Keep the student's next-token distributions close to `teacher` on `sampler`'s sequences
    (KL at the answer positions), as in fine-tuning with a KL penalty to the reference model."""

    teacher: torch.nn.Module
    sampler: Sampler
    weight: float = 1.0
    batch: int = 32


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
          anchor: Anchor | None = None) -> torch.nn.Module:
    """Train in place with AdamW and a warmup + cosine schedule; returns the model in eval mode on CPU.
    `anchor` adds a KL penalty to a reference model on other inputs."""
    dev = device()
    torch.manual_seed(seed)
    model.to(dev).train()
    if anchor is not None:
        anchor.teacher.to(dev).eval()
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    rng = np.random.default_rng(seed)

    def lr_at(step: int) -> float:
        if step < spec.warmup:
            return (step + 1) / spec.warmup
        progress = (step - spec.warmup) / max(1, spec.steps - spec.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    for step in range(spec.steps):
        ids, labels = batch_tensors([sampler(rng) for _ in range(spec.batch)])
        loss = model(input_ids=ids.to(dev), labels=labels.to(dev)).loss
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
