"""GPT-J: separate q/k/v/out projections, interleaved RoPE (rotate_every_two: planes (2i, 2i+1)) on
the first rotary_dim dims of each head."""

from __future__ import annotations

import re

from guard.lock.layouts.base import HeadGeometry, Layout, block_regex, mlp_layout
from guard.lock.residual import ResidualLayout, rule

ROLES = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "out_proj": "o"}


def geometry(config) -> HeadGeometry:
    head_dim = config.n_embd // config.n_head
    return HeadGeometry(num_heads=config.n_head, num_kv_heads=config.n_head, head_dim=head_dim,
                        rotary_dims=config.rotary_dim or head_dim, rotary_style="interleaved")


_BLOCK = r"(?P<p>(?:.*\.)?h\.\d+)"
# Attention and MLP run in parallel on the one ln_1 output.
RESIDUAL = ResidualLayout(
    norm_kind="layer",
    rules=(
        rule(r"(?:.*\.)?wte\.weight", 1),
        rule(_BLOCK + r"\.attn\.(?:q_proj|k_proj|v_proj)\.weight", 1, norm=r"{p}\.ln_1"),
        rule(_BLOCK + r"\.attn\.out_proj\.weight", 0),
        rule(_BLOCK + r"\.mlp\.fc_in\.weight", 1, norm=r"{p}\.ln_1"),
        rule(_BLOCK + r"\.mlp\.fc_out\.(?:weight|bias)", 0),
        rule(r"(?:lm_head|score)\.weight", 1, norm=r"(?:.*\.)?ln_f"),
    ),
    norms=re.compile(r"^(?P<norm>(?:.*\.)?(?:h\.\d+\.ln_1|ln_f))\.weight$"),
    untouched=re.compile(r"^(?:.*\.mlp\.fc_in\.bias|(?:lm_head|score)\.bias|.*\.attn\.(?:bias|masked_bias)"
                         r"|.*embed_positions)$"),
)

LAYOUT = Layout(
    name="gptj",
    model_types=("gptj",),
    pattern=block_regex(r"h\.\d+\.attn", ROLES),
    roles=ROLES,
    geometry=geometry,
    blocks_expected=lambda config: (config.n_layer,),
    mlp=mlp_layout(r"h\.\d+\.mlp", {"fc_in": "in", "fc_out": "out"}),
    residual=RESIDUAL,
)
