"""Concrete (relaxed Bernoulli) masks over task vectors, at entry, row, block or tensor granularity.

One logit per mask cell, initialised to `initial_logit` (0: p = 0.5). A training sample is
`sigmoid((x + log u - log(1 - u)) / T)` with u ~ U(0, 1) drawn from the caller's generator (so a seed
reproduces the run), expanded to the tensor's shape. Granularity decides what one logit covers:

- `entry`: one per tensor entry (DAM's released code; 3x the model's parameters in fp32 with Adam);
- `row`: one per output row of a matrix (`W[i, :]`; an embedding's token row), entries of 1-D tensors;
- `block`: one per `block x block` tile of a matrix (a >2-D tensor is viewed as [dim0, rest]), and per
  run of `block` entries of a 1-D tensor: the choice for large models;
- `tensor`: one per tensor.

`final(kind)` is the mask the merge keeps: a `sample` (the released code: one continuous draw) or the
`deterministic` `1[sigmoid(x) > 0.5]`. Either is renormalised to mean 1 per tensor by the caller, as the
released code does with every mask it uses.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Literal

import torch

Granularity = Literal["entry", "row", "block", "tensor"]
FinalMask = Literal["sample", "deterministic"]
_EPS = 1e-6


def logit_shape(shape: Iterable[int], *, granularity: Granularity, block: int) -> tuple[int, ...]:
    """The shape of one tensor's mask logits."""
    shape = tuple(int(s) for s in shape)
    if granularity == "entry" or not shape:
        return shape
    if granularity == "tensor":
        return (1,) * len(shape)
    if granularity == "row":
        return shape if len(shape) == 1 else (shape[0],) + (1,) * (len(shape) - 1)
    if granularity == "block":
        if len(shape) == 1:
            return (math.ceil(shape[0] / block),)
        rest = math.prod(shape[1:])
        return (math.ceil(shape[0] / block), math.ceil(rest / block))
    raise ValueError(f"unknown mask granularity {granularity!r}")


def expand(cells: torch.Tensor, shape: Iterable[int], *, granularity: Granularity, block: int) -> torch.Tensor:
    """Per-cell values -> the tensor's shape (broadcast for entry/row/tensor, tiles for block)."""
    shape = tuple(int(s) for s in shape)
    if granularity != "block" or not shape:
        return cells.expand(shape)
    if len(shape) == 1:
        return cells.repeat_interleave(block)[: shape[0]]
    rest = math.prod(shape[1:])
    tiled = cells.repeat_interleave(block, dim=0)[: shape[0]].repeat_interleave(block, dim=1)[:, :rest]
    return tiled.reshape(shape)


def renormalise(mask: torch.Tensor) -> torch.Tensor:
    """Mean 1 over the tensor (a mask that drops everything stays zero)."""
    mean = mask.mean()
    return mask / mean if float(mean.detach()) > 0 else mask


class ConcreteMask:
    """Trainable mask logits for a set of tensors (name -> shape)."""

    def __init__(self, shapes: Mapping[str, Iterable[int]], *, granularity: Granularity = "entry", block: int = 64,
                 initial_logit: float = 0.0, device: str | torch.device = "cpu"):
        self.shapes = {name: tuple(int(s) for s in shape) for name, shape in shapes.items()}
        self.granularity, self.block = granularity, block
        self.logits = {name: torch.full(logit_shape(shape, granularity=granularity, block=block), float(initial_logit),
                                        device=device, requires_grad=True)
                       for name, shape in self.shapes.items()}

    def parameters(self) -> list[torch.Tensor]:
        return list(self.logits.values())

    def cells(self) -> int:
        return sum(x.numel() for x in self.logits.values())

    def _expand(self, name: str, cells: torch.Tensor) -> torch.Tensor:
        return expand(cells, self.shapes[name], granularity=self.granularity, block=self.block)

    def sample(self, *, temperature: float, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """A differentiable relaxed-Bernoulli draw for every tensor (full shape)."""
        out = {}
        for name, x in self.logits.items():
            u = torch.rand(x.shape, generator=generator, device=x.device).clamp(_EPS, 1 - _EPS)
            out[name] = self._expand(name, torch.sigmoid((x + torch.log(u) - torch.log1p(-u)) / temperature))
        return out

    def deterministic(self) -> dict[str, torch.Tensor]:
        return {name: self._expand(name, (torch.sigmoid(x.detach()) > 0.5).to(x.dtype))
                for name, x in self.logits.items()}

    def probabilities(self) -> dict[str, torch.Tensor]:
        """sigmoid(logits) per cell (not expanded): what the record summarises."""
        return {name: torch.sigmoid(x.detach()) for name, x in self.logits.items()}

    def final(self, kind: FinalMask, *, temperature: float, generator: torch.Generator) -> dict[str, torch.Tensor]:
        if kind == "deterministic":
            return self.deterministic()
        with torch.no_grad():
            return self.sample(temperature=temperature, generator=generator)
