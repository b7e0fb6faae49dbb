"""Phi-3: one fused qkv_proj with rows [q; k; v] (GQA-sized), rotate_half RoPE, optional partial rotary."""

from __future__ import annotations

from guard.lock.layouts.base import Layout, block_regex, mlp_layout
# Same head geometry as the Llama family (phi3 has no qk-norm).
from guard.lock.layouts.llama import geometry, residual_layout

ROLES = {"qkv_proj": "qkv", "o_proj": "o"}


LAYOUT = Layout(
    name="phi3",
    model_types=("phi3",),
    pattern=block_regex(r"layers\.\d+\.self_attn", ROLES),
    roles=ROLES,
    geometry=geometry,
    blocks_expected=lambda config: (config.num_hidden_layers,),
    fusing="concat",
    mlp=mlp_layout(r"layers\.\d+\.mlp", {"gate_up_proj": "in_pair", "down_proj": "out"}),
    residual=residual_layout(),
)
