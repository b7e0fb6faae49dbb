"""T5: q/k/v/o without biases, relative position bias added to the scores (score-invariant), no
1/sqrt(d) scaling; encoder self-attention, decoder self-attention and cross-attention (EncDecAttention,
keys and values from the encoder stream) all follow the same per-head rule."""

from __future__ import annotations

import re

from guard.lock.layouts.base import HeadGeometry, Layout, block_regex, mlp_layout
from guard.lock.residual import ResidualLayout, rule

ROLES = {"q": "q", "k": "k", "v": "v", "o": "o"}


def geometry(config) -> HeadGeometry:
    return HeadGeometry(num_heads=config.num_heads, num_kv_heads=config.num_heads, head_dim=config.d_kv)


def blocks_expected(config) -> tuple[int, ...]:
    decoder = config.num_decoder_layers if config.num_decoder_layers is not None else config.num_layers
    # Full encoder-decoder, or an encoder-only checkpoint (T5EncoderModel).
    return (config.num_layers + 2 * decoder, config.num_layers)


def mlp_blocks_expected(config) -> tuple[int, ...]:
    decoder = config.num_decoder_layers if config.num_decoder_layers is not None else config.num_layers
    return (config.num_layers + decoder, config.num_layers)


_SUBLAYER = r"(?P<p>(?:.*\.)?(?:encoder|decoder)\.block\.\d+\.layer\.\d+)"
# One stream basis for encoder and decoder: they share the embedding. Cross-attention's keys and values
# read the encoder's output through the encoder's final norm.
RESIDUAL = ResidualLayout(
    norm_kind="rms",
    rules=(
        rule(r"(?:.*\.)?(?:shared|embed_tokens)\.weight", 1),
        rule(_SUBLAYER + r"\.(?:SelfAttention\.(?:q|k|v)|EncDecAttention\.q)\.weight", 1, norm=r"{p}\.layer_norm"),
        rule(_SUBLAYER + r"\.EncDecAttention\.(?:k|v)\.weight", 1, norm=r"(?:.*\.)?encoder\.final_layer_norm"),
        rule(_SUBLAYER + r"\.(?:SelfAttention|EncDecAttention)\.o\.weight", 0),
        rule(_SUBLAYER + r"\.DenseReluDense\.(?:wi|wi_0|wi_1)\.weight", 1, norm=r"{p}\.layer_norm"),
        rule(_SUBLAYER + r"\.DenseReluDense\.wo\.weight", 0),
        rule(r"lm_head\.weight", 1, norm=r"(?:.*\.)?decoder\.final_layer_norm"),
    ),
    norms=re.compile(r"^(?P<norm>(?:.*\.)?(?:encoder|decoder)\.(?:block\.\d+\.layer\.\d+\.layer_norm|final_layer_norm))"
                     r"\.weight$"),
    untouched=re.compile(r"^.*\.relative_attention_bias\.weight$"),
)

LAYOUT = Layout(
    name="t5",
    model_types=("t5",),
    pattern=block_regex(r"block\.\d+\.layer\.\d+\.(?:SelfAttention|EncDecAttention)", ROLES),
    roles=ROLES,
    geometry=geometry,
    blocks_expected=blocks_expected,
    mlp=mlp_layout(r"block\.\d+\.layer\.\d+\.DenseReluDense", {"wi": "in", "wi_0": "in", "wi_1": "in", "wo": "out"}),
    mlp_blocks_expected=mlp_blocks_expected,
    residual=RESIDUAL,
)
