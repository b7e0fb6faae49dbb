"""GPT-NeoX (Pythia): query_key_value rows are [q_h; k_h; v_h] per head (the forward views the output
as (..., heads, 3 * head_size) and chunks it), partial rotary (rotary_pct) with rotate_half on the
first rotary dims of each head."""

from __future__ import annotations

import re

from guard.lock.layouts.base import HeadGeometry, Layout, block_regex, mlp_layout, partial_rotary_factor
from guard.lock.residual import ResidualLayout, rule

ROLES = {"query_key_value": "qkv", "dense": "o"}


def geometry(config) -> HeadGeometry:
    heads = config.num_attention_heads
    head_dim = config.hidden_size // heads
    return HeadGeometry(num_heads=heads, num_kv_heads=heads, head_dim=head_dim,
                        rotary_dims=int(head_dim * partial_rotary_factor(config)), rotary_style="rotate_half")


_LAYER = r"(?P<p>(?:.*\.)?layers\.\d+)"
RESIDUAL = ResidualLayout(
    norm_kind="layer",
    rules=(
        rule(r"(?:.*\.)?embed_in\.weight", 1),
        rule(_LAYER + r"\.attention\.query_key_value\.weight", 1, norm=r"{p}\.input_layernorm"),
        rule(_LAYER + r"\.attention\.dense\.(?:weight|bias)", 0),
        rule(_LAYER + r"\.mlp\.dense_h_to_4h\.weight", 1, norm=r"{p}\.post_attention_layernorm"),
        rule(_LAYER + r"\.mlp\.dense_4h_to_h\.(?:weight|bias)", 0),
        rule(r"(?:embed_out|lm_head|score)\.weight", 1, norm=r"(?:.*\.)?final_layer_norm"),
    ),
    norms=re.compile(r"^(?P<norm>(?:.*\.)?(?:layers\.\d+\.(?:input_layernorm|post_attention_layernorm)"
                     r"|final_layer_norm))\.weight$"),
    untouched=re.compile(r"^(?:.*\.attention\.(?:query_key_value\.bias|bias|masked_bias)|.*\.mlp\.dense_h_to_4h\.bias"
                         r"|.*rotary_emb\.inv_freq|score\.bias)$"),
)

LAYOUT = Layout(
    name="gpt_neox",
    model_types=("gpt_neox",),
    pattern=block_regex(r"layers\.\d+\.attention", ROLES),
    roles=ROLES,
    geometry=geometry,
    blocks_expected=lambda config: (config.num_hidden_layers,),
    fusing="per_head",
    mlp=mlp_layout(r"layers\.\d+\.mlp", {"dense_h_to_4h": "in", "dense_4h_to_h": "out"}),
    residual=RESIDUAL,
)
