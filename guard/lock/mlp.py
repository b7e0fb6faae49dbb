"""MLP hidden-unit permutation: the hardening MergeLock adds on top of the attention transforms.

PaRaMS (arXiv 2503.07661) observes that the hidden units of an MLP can be reordered without changing
the function: permute the rows of every input projection (up, gate, fc_in, and their biases) and the
columns of the output projection (down, fc_out) by the same P. This is exact for any element-wise
activation, gated MLPs included (gate and up get the same P), so there is no rounding at all. A merge
then adds the i-th hidden unit of one expert to an unrelated unit of the others. P is derived per MLP
block from the lock key (HKDF branch "mlp"), so `unlock` regenerates and inverts it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from guard.errors import InputError
from guard.lock.keys import RunKey
from guard.lock.layouts.base import Layout, MlpLayout
from guard.lock.reindex import take
from guard.lock.sampling import SeedStream, permutation

Part = tuple[str, str]  # (projection name, "weight" | "bias")


@dataclasses.dataclass(frozen=True)
class MlpPlan:
    layout: MlpLayout
    # MLP block prefix -> (proj, kind) -> tensor name; the out projection's bias is not listed (untouched)
    blocks: Mapping[str, Mapping[Part, str]]

    def block_of(self) -> dict[str, str]:
        return {name: block for block, parts in self.blocks.items() for name in parts.values()}

    def describe(self, shapes: Mapping[str, tuple[int, ...]]) -> str:
        first_block = next(iter(self.blocks.values()))
        units = hidden_units(self.layout, {part: torch.empty(shapes[name], device="meta")
                                           for part, name in first_block.items()})
        return f"a secret permutation of the {units} hidden units of each of the {len(self.blocks)} MLP blocks"


def plan_mlp(names: Iterable[str], layout: Layout, config: Any, *, path=None) -> MlpPlan:
    """Group the MLP tensors of a checkpoint into blocks; refuse if they do not match the config."""
    if layout.mlp is None:
        raise InputError(f"layout {layout.name} declares no MLP; pass --no-mlp-permute", path=path,
                         rule="lock-layout")
    blocks: dict[str, dict[Part, str]] = {}
    for name in names:
        found = layout.mlp.match(name)
        if found is None:
            continue
        block, proj, kind = found
        if layout.mlp.roles[proj] == "out" and kind == "bias":
            continue
        blocks.setdefault(block, {})[(proj, kind)] = name
    expected = (layout.mlp_blocks_expected or layout.blocks_expected)(config)
    if len(blocks) not in expected:
        raise InputError(f"found {len(blocks)} {layout.name} MLP blocks, the config implies "
                         f"{' or '.join(map(str, expected))}", path=path, rule="lock-layout")
    for block, parts in blocks.items():
        roles = {layout.mlp.roles[proj] for proj, kind in parts if kind == "weight"}
        if "out" not in roles or not roles & {"in", "in_pair"}:
            raise InputError(f"MLP block {block!r} lacks an input or an output projection", path=path,
                             rule="lock-layout")
    return MlpPlan(layout.mlp, blocks)


def _unit_axis(mlp: MlpLayout, proj: str, kind: str) -> int:
    """The axis of a stored tensor that runs over hidden units."""
    if kind == "bias":
        return 0
    if mlp.roles[proj] == "out":
        return 0 if mlp.conv1d else 1
    return 1 if mlp.conv1d else 0


def hidden_units(mlp: MlpLayout, parts: Mapping[Part, torch.Tensor], *, path=None) -> int:
    """The number of hidden units, checked to agree across every tensor of the block."""
    sizes = set()
    for (proj, kind), tensor in parts.items():
        size = tensor.shape[_unit_axis(mlp, proj, kind)] if tensor.ndim > _unit_axis(mlp, proj, kind) else -1
        if mlp.roles[proj] == "in_pair":
            size = size // 2 if size % 2 == 0 else -1
        sizes.add(size)
    if len(sizes) != 1 or -1 in sizes:
        shapes = ", ".join(f"{proj}.{kind} {tuple(t.shape)}" for (proj, kind), t in parts.items())
        raise InputError(f"MLP tensors disagree on the number of hidden units: {shapes}", path=path,
                         rule="lock-layout")
    return sizes.pop()


def permute_block(mlp: MlpLayout, parts: Mapping[Part, torch.Tensor], perm) -> dict[Part, torch.Tensor]:
    """Reorder the hidden units of one MLP block: new unit j is old unit perm[j]. Exact (an index copy)."""
    out = {}
    for (proj, kind), tensor in parts.items():
        axis = _unit_axis(mlp, proj, kind)
        if mlp.roles[proj] == "in_pair":  # [gate; up] halves get the same permutation
            halves = tensor.reshape(2, tensor.shape[0] // 2, *tensor.shape[1:])
            out[(proj, kind)] = take(halves, perm, 1).reshape(tensor.shape)
        else:
            out[(proj, kind)] = take(tensor, perm, axis)
    return out


def derive_permutation(key: RunKey, *, block: str, units: int) -> np.ndarray:
    return permutation(SeedStream(key.derive_seed(block=block, group=0, branch="mlp")), units)


def lock_mlp_block(plan: MlpPlan, block: str, tensors: Mapping[str, torch.Tensor], *, key: RunKey,
                   inverse: bool = False, path=None) -> dict[str, torch.Tensor]:
    """Permute (or, with inverse=True, un-permute) the hidden units of one MLP block."""
    names = plan.blocks[block]
    parts = {part: tensors[name] for part, name in names.items()}
    perm = derive_permutation(key, block=block, units=hidden_units(plan.layout, parts, path=path))
    if inverse:
        perm = np.argsort(perm)
    return {names[part]: t for part, t in permute_block(plan.layout, parts, perm).items()}


def neuron_features(mlp: MlpLayout, parts: Mapping[Part, torch.Tensor]) -> torch.Tensor:
    """[units, features]: each hidden unit's incoming rows, bias and outgoing column side by side, in a
    fixed part order. Unchanged by MergeLock's attention transforms; permuted by P. (For attacks and
    detection that match units between two models.)"""
    columns = []
    for (proj, kind) in sorted(parts):
        tensor = parts[(proj, kind)].to(torch.float64)
        if mlp.roles[proj] == "in_pair":
            half = tensor.shape[0] // 2
            columns += [tensor[:half].reshape(half, -1), tensor[half:].reshape(half, -1)]
            continue
        tensor = tensor.movedim(_unit_axis(mlp, proj, kind), 0)
        columns.append(tensor.reshape(tensor.shape[0], -1))
    return torch.cat(columns, dim=1)
