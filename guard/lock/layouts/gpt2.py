"""GPT-2: Conv1D weights stored [in, out]; c_attn fuses [q | k | v] along the output axis; no RoPE."""

from __future__ import annotations

from guard.lock.layouts.base import HeadGeometry, Layout, block_regex, mlp_layout

ROLES = {"c_attn": "qkv", "c_proj": "o"}


def geometry(config) -> HeadGeometry:
    return HeadGeometry(num_heads=config.n_head, num_kv_heads=config.n_head, head_dim=config.n_embd // config.n_head)


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
)
