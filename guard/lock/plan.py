"""Which tensors of a checkpoint form which attention block, checked before anything is transformed."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from guard.errors import InputError
from guard.lock.layouts import layout_for
from guard.lock.layouts.base import HeadGeometry, Layout, Role, config_value
from guard.lock.mlp import MlpPlan, plan_mlp
from guard.lock.residual import ResidualPlan, plan_residual


@dataclasses.dataclass(frozen=True)
class LockPlan:
    layout: Layout
    geometry: HeadGeometry
    # block prefix -> (role, kind) -> tensor name; the o bias is not listed (it is never transformed)
    blocks: Mapping[str, Mapping[tuple[Role, str], str]]
    mlp: MlpPlan | None = None  # the MLP blocks whose hidden units are permuted (None: attention only)
    residual: ResidualPlan | None = None  # the residual-stream transform (None: the stream is left alone)

    def block_of(self) -> dict[str, str]:
        """tensor name -> block prefix, for the tensors the lock transforms."""
        return {name: block for block, parts in self.blocks.items() for name in parts.values()}

    def describe(self) -> dict[str, Any]:
        geo = self.geometry
        return {
            "layout": self.layout.name,
            "blocks": len(self.blocks),
            "heads": geo.num_heads,
            "kv_groups": geo.num_kv_heads,
            "head_dim": geo.head_dim,
            "qk": geo.qk_form.describe() + (" (qk-norm model: norm-preserving QK only)" if geo.qk_norm else ""),
            "vo": "a general well-conditioned block per key/value group",
        }


def plan_lock(names: Iterable[str], config: Any, *, path=None, mlp: bool = False, residual: str = "none") -> LockPlan:
    """Group the attention tensors of a checkpoint into blocks and check them against the config;
    with mlp=True also the MLP blocks whose hidden units get permuted; with residual "rotation" or
    "permutation" also every tensor that reads or writes the residual stream (residual.py)."""
    names = list(names)
    layout = layout_for(getattr(config, "model_type", None), path=path)
    try:
        geometry = layout.geometry(config)
    except (AttributeError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise InputError(f"config lacks the attention geometry MergeLock needs: {exc}", path=path,
                         rule="lock-config") from None
    blocks: dict[str, dict[tuple[Role, str], str]] = {}
    for name in names:
        found = layout.match(name)
        if found is None:
            continue
        block, role, kind = found
        if (role, kind) == ("o", "bias"):
            continue
        blocks.setdefault(block, {})[(role, kind)] = name
    expected = layout.blocks_expected(config)
    if len(blocks) not in expected:
        raise InputError(
            f"found {len(blocks)} {layout.name} attention blocks, the config implies {' or '.join(map(str, expected))}",
            path=path, rule="lock-layout",
        )
    required = layout.required()
    for block, parts in blocks.items():
        missing = sorted(f"{role}.{kind}" for role, kind in required - set(parts))
        if missing:
            raise InputError(f"attention block {block!r} lacks {', '.join(missing)}", path=path, rule="lock-layout")
    residual_plan = None
    if residual != "none":
        dim = config_value(config, "hidden_size", "n_embd", "d_model")
        residual_plan = plan_residual(names, layout.residual, config, requested=residual, dim=dim, path=path)
    return LockPlan(layout, geometry, blocks, plan_mlp(names, layout, config, path=path) if mlp else None,
                    residual_plan)


def check_shapes(plan: LockPlan, block: str, shapes: Mapping[tuple[Role, str], tuple[int, ...]], *, path=None) -> None:
    """Fail with one line if a block's tensors do not have the shapes the geometry implies."""
    geo, layout = plan.geometry, plan.layout
    q_rows, kv_rows = geo.num_heads * geo.head_dim, geo.num_kv_heads * geo.head_dim
    rows = {"q": q_rows, "k": kv_rows, "v": kv_rows, "qkv": q_rows + 2 * kv_rows}
    for (role, kind), shape in shapes.items():
        if kind == "bias":
            ok = len(shape) == 1 and shape[0] == rows[role]
        elif role == "o":
            ok = len(shape) == 2 and shape[0 if layout.conv1d else 1] == q_rows
        else:
            ok = len(shape) == 2 and shape[1 if layout.conv1d else 0] == rows[role]
        if not ok:
            raise InputError(
                f"tensor {plan.blocks[block][(role, kind)]!r} has shape {tuple(shape)}, which does not match "
                f"{geo.num_heads} heads x {geo.head_dim} dims ({geo.num_kv_heads} kv groups)",
                path=path, rule="lock-layout",
            )
