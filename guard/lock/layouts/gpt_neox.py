"""GPT-NeoX (Pythia): query_key_value rows are [q_h; k_h; v_h] per head (the forward views the output
as (..., heads, 3 * head_size) and chunks it), partial rotary (rotary_pct) with rotate_half on the
first rotary dims of each head."""

from __future__ import annotations

from guard.lock.layouts.base import HeadGeometry, Layout, block_regex, mlp_layout, partial_rotary_factor

ROLES = {"query_key_value": "qkv", "dense": "o"}


def geometry(config) -> HeadGeometry:
    heads = config.num_attention_heads
    head_dim = config.hidden_size // heads
    return HeadGeometry(num_heads=heads, num_kv_heads=heads, head_dim=head_dim,
                        rotary_dims=int(head_dim * partial_rotary_factor(config)), rotary_style="rotate_half")


LAYOUT = Layout(
    name="gpt_neox",
    model_types=("gpt_neox",),
    pattern=block_regex(r"layers\.\d+\.attention", ROLES),
    roles=ROLES,
    geometry=geometry,
    blocks_expected=lambda config: (config.num_hidden_layers,),
    fusing="per_head",
    mlp=mlp_layout(r"layers\.\d+\.mlp", {"dense_h_to_4h": "in", "dense_4h_to_h": "out"}),
)
