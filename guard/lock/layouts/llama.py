"""Separate q/k/v/o projections with HF rotate_half RoPE: Llama, Mistral, Qwen2 (qkv bias),
Qwen3 (per-head qk-norm), Gemma (head_dim != hidden/heads)."""

from __future__ import annotations

from guard.lock.layouts.base import HeadGeometry, Layout, block_regex, mlp_layout, config_value, partial_rotary_factor

ROLES = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o"}
QK_NORM_TYPES = ("qwen3",)


def geometry(config) -> HeadGeometry:
    heads = config.num_attention_heads
    head_dim = config_value(config, "head_dim", default=config.hidden_size // heads)
    return HeadGeometry(
        num_heads=heads,
        num_kv_heads=config_value(config, "num_key_value_heads", default=heads),
        head_dim=head_dim,
        rotary_dims=int(head_dim * partial_rotary_factor(config)),
        rotary_style="rotate_half",
        qk_norm=config.model_type in QK_NORM_TYPES,
    )


LAYOUT = Layout(
    name="llama",
    model_types=("llama", "mistral", "qwen2", "qwen3", "gemma"),
    pattern=block_regex(r"layers\.\d+\.self_attn", ROLES),
    roles=ROLES,
    geometry=geometry,
    blocks_expected=lambda config: (config.num_hidden_layers,),
    mlp=mlp_layout(r"layers\.\d+\.mlp", {"gate_proj": "in", "up_proj": "in", "down_proj": "out"}),
)
