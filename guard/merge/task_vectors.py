"""The task-arithmetic family (task_arithmetic, ties, dare_*, breadcrumbs*): one shared combination.

For one tensor: task vectors delta_i = model_i - base (in the math dtype), each optionally sparsified,
scaled by its `weight`; optionally a sign election (TIES' "sum" consensus: the sign of the weighted sum,
zero counting as positive) masks the entries that disagree; the surviving deltas are summed, divided
by the summed weights of what survived when `normalize` is on, multiplied by `lambda`, and added to the
base. The order and dtype of every operation follow mergekit's generalized task arithmetic, so that
the same inputs give bit-identical results on CPU (guard's own code; see docs/merge.md).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pydantic
import torch

from guard.merge.method import MergeMethod, Parameters, TensorGroup
from guard.merge.sparsify import ChunkedMask, Precomputed


# A sparsifier gets one full task vector and returns it sparsified, or a `ChunkedMask` that sparsifies
# it chunk by chunk (guard.merge.sparsify).
Sparsifier = Callable[[torch.Tensor, Parameters, TensorGroup, bool], Any]


class TaskVectorParams(Parameters):
    """Global parameters of the family. `lambda` is a Python keyword: in Python it is `scale`."""

    normalize: bool = False
    rescale: bool = False
    scale: float = pydantic.Field(default=1.0, alias="lambda", description="lambda: multiplies the merged delta")
    int8_mask: bool = pydantic.Field(default=False, description="accepted for mergekit configs; no effect on results")


class WeightDensity(Parameters):
    weight: float = pydantic.Field(description="scales this model's task vector")
    density: float = pydantic.Field(default=1.0, ge=0.0, le=1.0, description="fraction of entries kept")


class WeightDensityGamma(WeightDensity):
    gamma: float = pydantic.Field(default=0.01, ge=0.0, le=1.0, description="fraction of largest entries dropped")


def task_vector_method(*, name: str, description: str, reference: str, consensus: bool, normalize: bool,
                       rescale: bool, sparsify: Sparsifier | None = None,
                       model_params: type[Parameters] = WeightDensity, random: bool = False) -> MergeMethod:
    """A member of the family: its sparsifier, whether it elects signs, and its parameter defaults."""
    return MergeMethod(name=name, description=description, reference=reference,
                       merge=functools.partial(combine, sparsify=sparsify, consensus=consensus),
                       params=params_with_defaults(normalize=normalize, rescale=rescale), model_params=model_params,
                       random=random)


def params_with_defaults(*, normalize: bool, rescale: bool) -> type[TaskVectorParams]:
    """TaskVectorParams with the method's own defaults for normalize and rescale."""
    return pydantic.create_model(  # type: ignore[call-overload]
        f"TaskVectorParams_{int(normalize)}{int(rescale)}", __base__=TaskVectorParams,
        normalize=(bool, normalize), rescale=(bool, rescale))


CHUNK = 1 << 18  # elements per chunk: every intermediate of a chunk stays in cache


def combine(group: TensorGroup, *, sparsify: Sparsifier | None, consensus: bool) -> torch.Tensor:
    """One tensor of the family. The task vectors are computed whole (sparsifiers may need their global
    statistics: a magnitude threshold, an L1 norm); everything after runs chunk by chunk, so that each
    elementwise step reads cache instead of memory. Every step is elementwise or a sum over models, so
    chunking changes no bit of the result."""
    base = group.base
    params: TaskVectorParams = group.params  # type: ignore[assignment]
    count = len(group.models)
    if count == 0:
        return base
    flat_base = base.reshape(-1)
    sparse = []
    for i in range(count):
        model = group.models[i]
        group.models[i] = None  # release the input as soon as its delta exists
        delta = (model - base).reshape(-1)
        del model
        if sparsify is not None:
            delta = sparsify(delta, group.model_params[i], group, params.rescale)
        sparse.append(delta if isinstance(delta, ChunkedMask) else Precomputed(delta))
        del delta
    group.models.clear()
    weight = torch.tensor([p.weight for p in group.model_params], dtype=base.dtype,  # type: ignore[attr-defined]
                          device=base.device).reshape(count, 1)
    plain_divisor = weight.sum(dim=0)
    plain_divisor[plain_divisor.abs() < 1e-8] = 1
    out = torch.empty_like(flat_base)
    half = base.element_size() == 2
    for start in range(0, flat_base.numel(), CHUNK):
        stop = min(start + CHUNK, flat_base.numel())
        if half:
            mixed = _mix_16bit([s.chunk(start, stop) for s in sparse], weight, plain_divisor, consensus=consensus,
                               normalize=params.normalize)
            if params.scale != 1:
                mixed *= params.scale
            torch.add(flat_base[start:stop], mixed, out=out[start:stop])
            continue
        deltas = torch.stack([s.chunk(start, stop) for s in sparse])
        deltas.mul_(weight)
        if consensus:
            # Selects and in-place products with the mask instead of mergekit's products with a mask in the
            # math dtype: a masked-out entry then adds +0 instead of +-0, which changes no sum (torch starts
            # its sums at +0), so the result is the same, bit for bit.
            agree = elect_sign(deltas)
            divisor = _agreeing_weight(weight, agree)
            mixed = deltas.mul_(agree).sum(dim=0)
        else:
            mixed = deltas.sum(dim=0)
            divisor = plain_divisor
        if params.normalize:
            mixed /= divisor
        if params.scale != 1:
            mixed *= params.scale
        torch.add(flat_base[start:stop], mixed, out=out[start:stop])
    return out.reshape(base.shape)


def _mix_16bit(rows: list[torch.Tensor], weight: torch.Tensor, plain_divisor: torch.Tensor, *, consensus: bool,
               normalize: bool) -> torch.Tensor:
    """The weighted, sign-elected, normalized sum of one chunk for bf16/fp16: the same bits as the generic
    path (for finite values), with the masks done as int16 bit operations on the floats' bit patterns
    instead of boolean tensors (which torch converts slowly).

    Signs: bit 15; magnitude: bits 0-14. A row agrees with the elected sign where it is nonzero and its
    sign bit equals the majority's (negative where the weighted sum is < 0). Non-finite entries: mergekit
    lets a NaN poison the merged entry; here a NaN never agrees and is dropped (see docs/merge.md)."""
    rows = [r * w for r, w in zip(rows, weight.reshape(-1))]  # mergekit's deltas * weights, rounded alike
    if not consensus:
        mixed = _sum_16bit(rows)
        return mixed / plain_divisor if normalize else mixed
    majority_negative = _int16_mask(~(_sum_16bit(rows) >= 0))
    masked, chosen_weights = [], []
    for row, w in zip(rows, weight.reshape(-1)):
        bits = row.view(torch.int16)
        nonzero = (-(bits & 0x7FFF)) >> 15  # -1 where the magnitude bits are not all zero
        agree = nonzero & ~((bits >> 15) ^ majority_negative)
        masked.append((bits & agree).view(row.dtype))
        chosen_weights.append((agree & int(w.view(torch.int16))).view(row.dtype))
    mixed = _sum_16bit(masked)
    if not normalize:
        return mixed
    divisor = _sum_16bit(chosen_weights).view(torch.int16)
    zero = ~((-(divisor & 0x7FFF)) >> 15)  # -1 where the divisor is +-0: mergekit divides by 1 there
    one = int(torch.ones((), dtype=mixed.dtype).view(torch.int16))
    return mixed / ((divisor & ~zero) | (zero & one)).view(mixed.dtype)


def _int16_mask(flags: torch.Tensor) -> torch.Tensor:
    """A boolean tensor as int16 -1 (true) / 0 (false)."""
    return -flags.to(torch.int16)


def _sum_16bit(rows: list[torch.Tensor]) -> torch.Tensor:
    """`torch.stack(rows).sum(dim=0)` for 16-bit floats, cheaper: torch accumulates from +0 in float32 and
    rounds once; two rows added in the 16-bit dtype round the same float32 sum once too."""
    if len(rows) == 1:
        return rows[0] + 0  # + 0 turns -0 into +0, as a sum starting at +0 does
    if len(rows) == 2:
        return (rows[0] + rows[1]).add_(0)
    total = rows[0].float()
    for row in rows[1:]:
        total += row
    return total.add_(0).to(rows[0].dtype)


def elect_sign(deltas: torch.Tensor) -> torch.Tensor:
    """TIES sign election: True where an entry's sign equals the sign of the sum over models
    (a zero sum elects +; zero and NaN entries never agree)."""
    nonnegative = deltas.sum(dim=0) >= 0
    return torch.where(nonnegative, deltas > 0, deltas < 0)


def _agreeing_weight(weight: torch.Tensor, agree: torch.Tensor) -> torch.Tensor:
    """sum_i weight_i * agree_i in the math dtype, 1 where that is 0 (mergekit's divisor). The sum takes one
    of 2^n values: each is computed by the same torch sum over a tiny tensor of every subset, then chosen
    per entry by selects (for up to 3 models; a plain masked sum beyond)."""
    count = agree.shape[0]
    if count > 3:
        divisor = torch.where(agree, weight, 0).sum(dim=0)
        return divisor.masked_fill_(divisor == 0, 1)
    subsets = torch.tensor([[(s >> i) & 1 for s in range(1 << count)] for i in range(count)], dtype=torch.bool,
                           device=agree.device)
    table = torch.where(subsets, weight.reshape(count, 1), 0).sum(dim=0)
    table.masked_fill_(table == 0, 1)

    def pick(i: int, chosen: int) -> torch.Tensor:
        if i < 0:
            return table[chosen]
        return torch.where(agree[i], pick(i - 1, chosen | (1 << i)), pick(i - 1, chosen))

    return pick(count - 1, 0)
