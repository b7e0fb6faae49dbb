"""The Llama-style architecture of the LM family (RoPE, GQA), and saving/loading model directories."""

from __future__ import annotations

import pathlib

import torch

from guard.testing.zoo.lm.vocab import BOS_ID, EOS_ID, PAD_ID, TOKENS, save_vocab

MAX_POSITIONS = 32


def build_config(*, hidden: int, layers: int, intermediate: int, heads: int = 4, kv_heads: int = 2):
    import transformers

    return transformers.LlamaConfig(
        vocab_size=len(TOKENS),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=MAX_POSITIONS,
        rope_theta=10000.0,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        tie_word_embeddings=False,
    )


def init_model(config, *, seed: int) -> torch.nn.Module:
    import transformers

    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(config)


def _quiet() -> None:
    import transformers

    transformers.utils.logging.disable_progress_bar()


def save(model: torch.nn.Module, out_dir: str | pathlib.Path) -> pathlib.Path:
    _quiet()
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    save_vocab(out)
    return out


def load(model_dir: str | pathlib.Path) -> torch.nn.Module:
    import transformers

    _quiet()
    return transformers.LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


def from_state_dict(config_dir: str | pathlib.Path, state_dict: dict[str, torch.Tensor]) -> torch.nn.Module:
    """A model with the architecture saved in `config_dir` and the given weights (e.g. a merge)."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(config_dir)
    model = transformers.LlamaForCausalLM(config)
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def state_dict(model_dir: str | pathlib.Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(pathlib.Path(model_dir) / "model.safetensors"))
