"""BERT-style encoders with absolute positions: BERT/MiniLM (attention.self.query ...) and ViT, in
both its checkpoint naming (attention.attention.query, attention.output.dense) and the transformers 5
module naming (attention.q_proj ...). Biases on q, k, v."""

from __future__ import annotations

from guard.errors import InputError
from guard.lock.layouts.base import HeadGeometry, Layout, block_regex, mlp_layout

BERT_ROLES = {"self.query": "q", "self.key": "k", "self.value": "v", "output.dense": "o"}
# The MLP: intermediate.dense (in) and the layer's own output.dense (out), a sibling of `attention`;
# the pattern needs `output` right after the layer index, so attention.output.dense never matches.
BERT_MLP = mlp_layout(r"layers?\.\d+", {"intermediate.dense": "in", "output.dense": "out"})
# ViT modules in transformers 5 are named mlp.fc1 / mlp.fc2; checkpoints keep intermediate/output.dense.
VIT_MLP = mlp_layout(r"layers?\.\d+", {"intermediate.dense": "in", "output.dense": "out", "mlp.fc1": "in",
                                         "mlp.fc2": "out"})
VIT_ROLES = {"attention.query": "q", "attention.key": "k", "attention.value": "v", "output.dense": "o",
             "q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o"}


def geometry(config) -> HeadGeometry:
    # relative_key_query position embeddings act on q and k separately: not score-invariant.
    positions = getattr(config, "position_embedding_type", None) or "absolute"
    if positions != "absolute":
        raise InputError(f"position_embedding_type {positions!r} is not supported by MergeLock (absolute only)",
                         rule="lock-unsupported")
    heads = config.num_attention_heads
    return HeadGeometry(num_heads=heads, num_kv_heads=heads, head_dim=config.hidden_size // heads)


BERT = Layout(
    name="bert",
    model_types=("bert",),
    pattern=block_regex(r"layer\.\d+\.attention", BERT_ROLES),
    roles=BERT_ROLES,
    geometry=geometry,
    blocks_expected=lambda config: (config.num_hidden_layers,),
    mlp=BERT_MLP,
)

VIT = Layout(
    name="vit",
    model_types=("vit",),
    pattern=block_regex(r"layers?\.\d+\.attention", VIT_ROLES),
    roles=VIT_ROLES,
    geometry=geometry,
    blocks_expected=lambda config: (config.num_hidden_layers,),
    mlp=VIT_MLP,
)
