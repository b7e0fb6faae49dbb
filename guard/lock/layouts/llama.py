"""Separate q/k/v/o projections with HF rotate_half RoPE: Llama, Mistral, Qwen2 (qkv bias),
Qwen3 (per-head qk-norm), Gemma (head_dim != hidden/heads)."""

from __future__ import annotations

import dataclasses
import re

from guard.lock.layouts.base import HeadGeometry, Layout, block_regex, mlp_layout, config_value, partial_rotary_factor
from guard.lock.residual import ResidualLayout, rule

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


_LAYER = r"(?P<p>(?:.*\.)?layers\.\d+)"


def residual_layout(*, gain_offset: float = 0.0) -> ResidualLayout:
    """The pre-RMSNorm decoder stream shared by the Llama family and Phi-3 (fused qkv_proj, gate_up_proj)."""
    return ResidualLayout(
        norm_kind="rms",
        rules=(
            rule(r"(?:.*\.)?embed_tokens\.weight", 1),
            rule(_LAYER + r"\.self_attn\.(?:q_proj|k_proj|v_proj|qkv_proj)\.weight", 1, norm=r"{p}\.input_layernorm"),
            rule(_LAYER + r"\.self_attn\.o_proj\.(?:weight|bias)", 0),
            rule(_LAYER + r"\.mlp\.(?:gate_proj|up_proj|gate_up_proj)\.weight", 1,
                 norm=r"{p}\.post_attention_layernorm"),
            rule(_LAYER + r"\.mlp\.down_proj\.(?:weight|bias)", 0),
            rule(r"(?:lm_head|score)\.weight", 1, norm=r"(?:.*\.)?norm"),
        ),
        norms=re.compile(r"^(?P<norm>(?:.*\.)?(?:layers\.\d+\.(?:input_layernorm|post_attention_layernorm)|norm))"
                         r"\.weight$"),
        untouched=re.compile(r"^(?:.*\.self_attn\.(?:q_proj|k_proj|v_proj|qkv_proj)\.bias|.*\.self_attn\.[qk]_norm\.weight"
                             r"|.*\.mlp\.(?:gate_proj|up_proj|gate_up_proj)\.bias|.*rotary_emb\.inv_freq"
                             r"|(?:lm_head|score)\.bias)$"),
        gain_offset=gain_offset,
    )


# Gemma's RMSNorm multiplies by (1 + weight).
_RESIDUAL = residual_layout()
_GEMMA_RESIDUAL = residual_layout(gain_offset=1.0)

LAYOUT = Layout(
    name="llama",
    model_types=("llama", "mistral", "qwen2", "qwen3", "gemma"),
    pattern=block_regex(r"layers\.\d+\.self_attn", ROLES),
    roles=ROLES,
    geometry=geometry,
    blocks_expected=lambda config: (config.num_hidden_layers,),
    mlp=mlp_layout(r"layers\.\d+\.mlp", {"gate_proj": "in", "up_proj": "in", "down_proj": "out"}),
    residual=_RESIDUAL,
)
GEMMA = dataclasses.replace(LAYOUT, model_types=("gemma",), residual=_GEMMA_RESIDUAL)
LAYOUT = dataclasses.replace(LAYOUT, model_types=tuple(t for t in LAYOUT.model_types if t != "gemma"))
