"""GPT-J: separate q/k/v/out projections, interleaved RoPE (rotate_every_two: planes (2i, 2i+1)) on
the first rotary_dim dims of each head."""

from __future__ import annotations

from guard.lock.layouts.base import HeadGeometry, Layout, block_regex, mlp_layout

ROLES = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "out_proj": "o"}


def geometry(config) -> HeadGeometry:
    head_dim = config.n_embd // config.n_head
    return HeadGeometry(num_heads=config.n_head, num_kv_heads=config.n_head, head_dim=head_dim,
                        rotary_dims=config.rotary_dim or head_dim, rotary_style="interleaved")


LAYOUT = Layout(
    name="gptj",
    model_types=("gptj",),
    pattern=block_regex(r"h\.\d+\.attn", ROLES),
    roles=ROLES,
    geometry=geometry,
    blocks_expected=lambda config: (config.n_layer,),
    mlp=mlp_layout(r"h\.\d+\.mlp", {"fc_in": "in", "fc_out": "out"}),
)
