"""What a layout adapter declares, and the one generic split/join every adapter shares.

An attention block is read into `AttentionWeights` (nn.Linear convention, [out, in], query heads in
kv-group order) and written back in the checkpoint's own layout. The adapters only declare names,
fusing and geometry; the math in `guard.lock.transform` never sees a layout.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch

from guard.errors import InputError
from guard.lock.residual import ResidualLayout
from guard.lock.sampling import QKForm, RotaryStyle

Role = Literal["q", "k", "v", "o", "qkv"]
Fusing = Literal["separate", "concat", "per_head"]
# MLP projections: "in" has one row per hidden unit (up, gate, fc_in), "in_pair" stacks two such halves
# ([gate; up], Phi-3 gate_up_proj), "out" has one column per hidden unit (down, fc_out).
MlpRole = Literal["in", "in_pair", "out"]


@dataclasses.dataclass(frozen=True)
class HeadGeometry:
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rotary_dims: int = 0
    rotary_style: RotaryStyle = "rotate_half"
    qk_norm: bool = False

    def __post_init__(self) -> None:
        if self.num_heads % self.num_kv_heads:
            raise InputError(f"{self.num_heads} heads do not split into {self.num_kv_heads} key/value groups",
                             rule="lock-geometry")
        if self.rotary_dims % 2 or self.rotary_dims > self.head_dim:
            raise InputError(f"rotary dims {self.rotary_dims} do not fit head_dim {self.head_dim}", rule="lock-geometry")

    @property
    def heads_per_group(self) -> int:
        return self.num_heads // self.num_kv_heads

    @property
    def qk_form(self) -> QKForm:
        return QKForm(self.head_dim, self.rotary_dims, self.rotary_style, self.qk_norm)


@dataclasses.dataclass
class AttentionWeights:
    """One attention block, canonical: weights [out, in]; q rows are num_heads * head_dim,
    k/v rows num_kv_heads * head_dim, o columns num_heads * head_dim. The o bias is never touched."""

    q_w: torch.Tensor
    k_w: torch.Tensor
    v_w: torch.Tensor
    o_w: torch.Tensor
    q_b: torch.Tensor | None = None
    k_b: torch.Tensor | None = None
    v_b: torch.Tensor | None = None


@dataclasses.dataclass(frozen=True)
class MlpLayout:
    """Where the MLP of a layer lives: `pattern` matches a full tensor name with named groups `block`
    (the MLP prefix), `proj` (a key of `roles`) and `kind`. conv1d: weights stored [in, out] (GPT-2).
    The hidden units of an element-wise MLP can be permuted exactly: rows of every "in" projection
    (and its bias), columns of the "out" projection; the out bias does not see the hidden units."""

    pattern: re.Pattern[str]
    roles: Mapping[str, MlpRole]
    conv1d: bool = False

    def match(self, name: str) -> tuple[str, str, str] | None:
        found = self.pattern.match(name)
        if found is None:
            return None
        return found.group("block"), found.group("proj"), found.group("kind")


@dataclasses.dataclass(frozen=True)
class Layout:
    """A declarative description of one layout family.

    pattern: matches a full tensor name of an attention projection, with named groups `block` (the
      attention block prefix), `proj` (a key of `roles`) and `kind` (weight or bias).
    fusing: "separate" (q, k, v modules), "concat" (one qkv module, rows [q; k; v]) or "per_head"
      (one qkv module, rows [q_h; k_h; v_h] per head, GPT-NeoX).
    conv1d: weights stored [in, out] (GPT-2 Conv1D).
    geometry: config -> HeadGeometry; raises InputError for configurations it cannot keep exact.
    """

    name: str
    model_types: tuple[str, ...]
    pattern: re.Pattern[str]
    roles: Mapping[str, Role]
    geometry: Callable[[Any], HeadGeometry]
    blocks_expected: Callable[[Any], tuple[int, ...]]  # acceptable numbers of attention blocks
    fusing: Fusing = "separate"
    conv1d: bool = False
    mlp: MlpLayout | None = None
    mlp_blocks_expected: Callable[[Any], tuple[int, ...]] | None = None  # None: one MLP per attention block
    residual: ResidualLayout | None = None  # the residual stream's readers, writers and norms (residual.py)

    def match(self, name: str) -> tuple[str, Role, str] | None:
        found = self.pattern.match(name)
        if found is None:
            return None
        return found.group("block"), self.roles[found.group("proj")], found.group("kind")

    def required(self) -> set[tuple[Role, str]]:
        """The (role, kind) pairs a block must have; biases are optional but all-or-none per role."""
        roles = {"qkv", "o"} if self.fusing != "separate" else {"q", "k", "v", "o"}
        return {(role, "weight") for role in roles}

    # ---- split / join between the checkpoint layout and AttentionWeights -------------------------

    def split(self, parts: Mapping[tuple[Role, str], torch.Tensor], geo: HeadGeometry) -> AttentionWeights:
        def weight(role: Role) -> torch.Tensor:
            w = parts[(role, "weight")]
            return w.T if self.conv1d else w

        o_w = weight("o")
        if self.fusing == "separate":
            return AttentionWeights(weight("q"), weight("k"), weight("v"), o_w,
                                    parts.get(("q", "bias")), parts.get(("k", "bias")), parts.get(("v", "bias")))
        q_w, k_w, v_w = self._unfuse(weight("qkv"), geo)
        bias = parts.get(("qkv", "bias"))
        q_b, k_b, v_b = (None, None, None) if bias is None else self._unfuse(bias, geo)
        return AttentionWeights(q_w, k_w, v_w, o_w, q_b, k_b, v_b)

    def join(self, weights: AttentionWeights, geo: HeadGeometry) -> dict[tuple[Role, str], torch.Tensor]:
        def stored(w: torch.Tensor) -> torch.Tensor:
            return (w.T if self.conv1d else w).contiguous()

        out: dict[tuple[Role, str], torch.Tensor] = {("o", "weight"): stored(weights.o_w)}
        if self.fusing == "separate":
            for role, w, b in (("q", weights.q_w, weights.q_b), ("k", weights.k_w, weights.k_b),
                               ("v", weights.v_w, weights.v_b)):
                out[(role, "weight")] = stored(w)
                if b is not None:
                    out[(role, "bias")] = b.contiguous()
            return out
        out[("qkv", "weight")] = stored(self._fuse(weights.q_w, weights.k_w, weights.v_w, geo))
        if weights.q_b is not None:
            out[("qkv", "bias")] = self._fuse(weights.q_b, weights.k_b, weights.v_b, geo).contiguous()
        return out

    def _unfuse(self, fused: torch.Tensor, geo: HeadGeometry) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d, h, g = geo.head_dim, geo.num_heads, geo.num_kv_heads
        if self.fusing == "concat":
            return tuple(torch.split(fused, [h * d, g * d, g * d], dim=0))  # type: ignore[return-value]
        per_head = fused.reshape(h, 3, d, *fused.shape[1:])
        return tuple(per_head[:, i].reshape(h * d, *fused.shape[1:]) for i in range(3))  # type: ignore[return-value]

    def _fuse(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, geo: HeadGeometry) -> torch.Tensor:
        if self.fusing == "concat":
            return torch.cat([q, k, v], dim=0)
        d, h = geo.head_dim, geo.num_heads
        rest = q.shape[1:]
        stacked = torch.stack([t.reshape(h, d, *rest) for t in (q, k, v)], dim=1)
        return stacked.reshape(h * 3 * d, *rest)


# ---- helpers the adapters share for reading configs ---------------------------------------------

def augment_bias(w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """A projection's weight with its bias as one more input column (so one fit moves both)."""
    return w if b is None else torch.cat([w, b.unsqueeze(-1)], dim=-1)


def split_bias(x: torch.Tensor, like_w: torch.Tensor, like_b: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """augment_bias undone: (weight, bias) in the dtypes of like_w / like_b (bias None where like_b is)."""
    if like_b is None:
        return x.to(like_w.dtype), None
    return x[:, :-1].contiguous().to(like_w.dtype), x[:, -1].contiguous().to(like_b.dtype)


def config_value(config: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return default


def partial_rotary_factor(config: Any) -> float:
    rope = getattr(config, "rope_parameters", None) or {}
    if isinstance(rope, Mapping) and rope.get("partial_rotary_factor") is not None:
        return float(rope["partial_rotary_factor"])
    return float(config_value(config, "partial_rotary_factor", "rotary_pct", default=1.0))


def block_regex(prefix: str, roles: Mapping[str, Role]) -> re.Pattern[str]:
    """A pattern for `<anything>.prefix.<proj>.(weight|bias)`: `prefix` is a regex for the block's own
    path (e.g. `layers\\.\\d+\\.self_attn`), proj one of `roles`' keys."""
    projections = "|".join(re.escape(name) for name in roles)
    return re.compile(rf"^(?P<block>(?:.*\.)?{prefix})\.(?P<proj>{projections})\.(?P<kind>weight|bias)$")


def mlp_layout(prefix: str, roles: Mapping[str, MlpRole], *, conv1d: bool = False) -> MlpLayout:
    """An MlpLayout for `<anything>.prefix.<proj>.(weight|bias)` (same naming rule as block_regex)."""
    return MlpLayout(block_regex(prefix, roles), roles, conv1d)
