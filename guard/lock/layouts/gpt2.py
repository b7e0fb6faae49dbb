"""GPT-2: Conv1D weights stored [in, out]; c_attn fuses [q | k | v] along the output axis; no RoPE."""

from __future__ import annotations

import re

from guard.lock.layouts.base import HeadGeometry, Layout, block_regex, mlp_layout
from guard.lock.residual import ResidualLayout, rule

ROLES = {"c_attn": "qkv", "c_proj": "o"}


def geometry(config) -> HeadGeometry:
    return HeadGeometry(num_heads=config.n_head, num_kv_heads=config.n_head, head_dim=config.n_embd // config.n_head)


_BLOCK = r"(?P<p>(?:.*\.)?h\.\d+)"
# Conv1D weights are [in, out]: readers have the stream on axis 0, writers on axis 1.
RESIDUAL = ResidualLayout(
    norm_kind="layer",
    rules=(
        rule(r"(?:.*\.)?(?:wte|wpe)\.weight", 1),
        rule(_BLOCK + r"\.attn\.c_attn\.weight", 0, norm=r"{p}\.ln_1"),
        rule(_BLOCK + r"\.attn\.c_proj\.weight", 1),
        rule(_BLOCK + r"\.attn\.c_proj\.bias", 0),
        rule(_BLOCK + r"\.mlp\.c_fc\.weight", 0, norm=r"{p}\.ln_2"),
        rule(_BLOCK + r"\.mlp\.c_proj\.weight", 1),
        rule(_BLOCK + r"\.mlp\.c_proj\.bias", 0),
        rule(r"(?:lm_head|score)\.weight", 1, norm=r"(?:.*\.)?ln_f"),
    ),
    norms=re.compile(r"^(?P<norm>(?:.*\.)?(?:h\.\d+\.ln_[12]|ln_f))\.weight$"),
    untouched=re.compile(r"^(?:.*\.attn\.(?:c_attn\.bias|bias|masked_bias)|.*\.mlp\.c_fc\.bias|score\.bias)$"),
)

LAYOUT = Layout(
    name="gpt2",
    model_types=("gpt2",),
    pattern=block_regex(r"h\.\d+\.attn", ROLES),
    roles=ROLES,
    geometry=geometry,
    blocks_expected=lambda config: (config.n_layer,),
    fusing="concat",
    conv1d=True,
    mlp=mlp_layout(r"h\.\d+\.mlp", {"c_fc": "in", "c_proj": "out"}, conv1d=True),
    residual=RESIDUAL,
)
