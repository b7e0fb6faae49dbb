"""BERT-style encoders with absolute positions: BERT/MiniLM (attention.self.query ...) and ViT, in
both its checkpoint naming (attention.attention.query, attention.output.dense) and the transformers 5
module naming (attention.q_proj ...). Biases on q, k, v."""

from __future__ import annotations

import dataclasses
import re

from guard.errors import InputError
from guard.lock.layouts.base import HeadGeometry, Layout, block_regex, mlp_layout
from guard.lock.residual import ResidualLayout, rule

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


_LAYER = r"(?P<p>(?:.*\.)?layers?\.\d+)"
# BERT is post-norm: the stream is a LayerNorm's output, so only a permutation is exact (residual.py) and
# no reader needs its norm. The MLM head's transform writes the space its decoder (tied to the word
# embeddings) reads, so that space is permuted too.
BERT_RESIDUAL = ResidualLayout(
    norm_kind="layer",
    post_norm=True,
    rules=(
        rule(r"(?:.*\.)?embeddings\.(?:word_embeddings|position_embeddings|token_type_embeddings)\.weight", 1),
        rule(_LAYER + r"\.attention\.self\.(?:query|key|value)\.weight", 1),
        rule(_LAYER + r"\.attention\.output\.dense\.(?:weight|bias)", 0),
        rule(_LAYER + r"\.intermediate\.dense\.weight", 1),
        rule(_LAYER + r"\.output\.dense\.(?:weight|bias)", 0),
        rule(r"(?:.*\.)?pooler\.dense\.weight", 1),
        rule(r"cls\.predictions\.transform\.dense\.weight", 1, 0),
        rule(r"cls\.predictions\.transform\.dense\.bias", 0),
        rule(r"cls\.predictions\.decoder\.weight", 1),
    ),
    norms=re.compile(r"^(?P<norm>(?:.*\.)?(?:embeddings\.LayerNorm|layers?\.\d+\.(?:attention\.)?output\.LayerNorm"
                     r"|cls\.predictions\.transform\.LayerNorm))\.weight$"),
    untouched=re.compile(r"^(?:.*\.attention\.self\.(?:query|key|value)\.bias|.*\.intermediate\.dense\.bias"
                         r"|(?:.*\.)?pooler\.dense\.bias|cls\.predictions\.(?:decoder\.)?bias"
                         r"|cls\.seq_relationship\.(?:weight|bias)|.*embeddings\.(?:position_ids|token_type_ids))$"),
)
def bert_heads(config) -> tuple[tuple, str]:
    """A token classifier or a QA head reads the stream; a sequence classifier reads the pooler."""
    arch = (getattr(config, "architectures", None) or [""])[0]
    if arch.endswith(("ForTokenClassification", "ForQuestionAnswering")):
        return (rule(r"(?:classifier|qa_outputs)\.weight", 1),), r"(?:classifier|qa_outputs)\.bias"
    if arch.endswith(("ForSequenceClassification", "ForMultipleChoice")):
        return (), r"classifier\.(?:weight|bias)"
    return (), ""


BERT_RESIDUAL = dataclasses.replace(BERT_RESIDUAL, heads=bert_heads)

# ViT is pre-norm (layernorm_before / layernorm_after, final layernorm): a rotation keeping 1 is exact.
VIT_RESIDUAL = ResidualLayout(
    norm_kind="layer",
    rules=(
        rule(r"(?:.*\.)?embeddings\.(?:cls_token|mask_token|position_embeddings)", -1),
        rule(r"(?:.*\.)?embeddings\.patch_embeddings\.projection\.(?:weight|bias)", 0),
        rule(_LAYER + r"\.attention\.(?:attention\.(?:query|key|value)|q_proj|k_proj|v_proj)\.weight", 1,
             norm=r"{p}\.layernorm_before"),
        rule(_LAYER + r"\.attention\.(?:output\.dense|o_proj)\.(?:weight|bias)", 0),
        rule(_LAYER + r"\.(?:intermediate\.dense|mlp\.fc1)\.weight", 1, norm=r"{p}\.layernorm_after"),
        rule(_LAYER + r"\.(?:output\.dense|mlp\.fc2)\.(?:weight|bias)", 0),
        rule(r"(?:classifier|(?:.*\.)?pooler\.dense)\.weight", 1, norm=r"(?:.*\.)?layernorm"),
    ),
    norms=re.compile(r"^(?P<norm>(?:.*\.)?(?:layers?\.\d+\.layernorm_(?:before|after)|layernorm))\.weight$"),
    untouched=re.compile(r"^(?:.*\.attention\.(?:attention\.(?:query|key|value)|q_proj|k_proj|v_proj)\.bias"
                         r"|.*\.(?:intermediate\.dense|mlp\.fc1)\.bias|(?:classifier|(?:.*\.)?pooler\.dense)\.bias)$"),
    tied=lambda config: False,
)

BERT = Layout(
    name="bert",
    model_types=("bert",),
    pattern=block_regex(r"layer\.\d+\.attention", BERT_ROLES),
    roles=BERT_ROLES,
    geometry=geometry,
    blocks_expected=lambda config: (config.num_hidden_layers,),
    mlp=BERT_MLP,
    residual=BERT_RESIDUAL,
)

VIT = Layout(
    name="vit",
    model_types=("vit",),
    pattern=block_regex(r"layers?\.\d+\.attention", VIT_ROLES),
    roles=VIT_ROLES,
    geometry=geometry,
    blocks_expected=lambda config: (config.num_hidden_layers,),
    mlp=VIT_MLP,
    residual=VIT_RESIDUAL,
)
