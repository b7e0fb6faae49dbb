"""Phi-3: one fused qkv_proj with rows [q; k; v] (GQA-sized), rotate_half RoPE, optional partial rotary."""

from __future__ import annotations

from guard.lock.layouts.base import HeadGeometry, Layout, block_regex, mlp_layout, config_value, partial_rotary_factor

ROLES = {"qkv_proj": "qkv", "o_proj": "o"}


def geometry(config) -> HeadGeometry:
    heads = config.num_attention_heads
    head_dim = config_value(config, "head_dim", default=config.hidden_size // heads)
    return HeadGeometry(
        num_heads=heads,
        num_kv_heads=config_value(config, "num_key_value_heads", default=heads),
        head_dim=head_dim,
        rotary_dims=int(head_dim * partial_rotary_factor(config)),
        rotary_style="rotate_half",
    )


LAYOUT = Layout(
    name="phi3",
    model_types=("phi3",),
    pattern=block_regex(r"layers\.\d+\.self_attn", ROLES),
    roles=ROLES,
    geometry=geometry,
    blocks_expected=lambda config: (config.num_hidden_layers,),
    fusing="concat",
    mlp=mlp_layout(r"layers\.\d+\.mlp", {"gate_up_proj": "in_pair", "down_proj": "out"}),
)
