"""Fixtures for the MergeLock tests: a fixed lock key and tiny models (the factory's families plus GPT-J,
which is the one layout with interleaved RoPE)."""

from __future__ import annotations

import pytest
import torch

from guard.lock.keys import LockKey, RunKey

LOCK_FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "gpt2", "gpt_neox", "phi3", "gemma", "bert", "vit", "t5", "gptj")


def build_gptj(seed: int = 0) -> torch.nn.Module:
    import transformers

    config = transformers.GPTJConfig(vocab_size=128, n_embd=64, n_layer=2, n_head=4, rotary_dim=8, n_positions=64,
                                     bos_token_id=1, eos_token_id=2)
    torch.manual_seed(seed)
    model = transformers.GPTJForCausalLM(config)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # random norms and biases, as the factory does
        for param in model.parameters():
            if param.ndim == 1:
                param.add_(0.1 * torch.randn(param.shape, generator=gen))
    return model.eval()


def build(family: str, seed: int = 0) -> torch.nn.Module:
    from guard.testing import factory

    return build_gptj(seed) if family == "gptj" else factory.build_model(family, seed=seed)


def synthetic_fine_tune(state: dict, *, scale: float, seed: int = 1) -> dict:
    """A stand-in fine-tune: every float tensor moved by `scale` of its norm in a random direction."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, t in state.items():
        noise = torch.randn(t.shape, generator=gen)
        out[name] = t + scale * t.norm() / noise.norm() * noise if t.is_floating_point() else t
    return out


def model_output(model: torch.nn.Module, inputs: dict) -> torch.Tensor:
    with torch.no_grad():
        out = model(**inputs)
    return out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state


@pytest.fixture(scope="session")
def lock_key() -> LockKey:
    return LockKey(bytes(range(32)))


@pytest.fixture(scope="session")
def other_key() -> LockKey:
    return LockKey(bytes(range(1, 33)))


@pytest.fixture(scope="session")
def run_key(lock_key) -> RunKey:
    """lock_key bound to a fixed nonce: the in-memory transforms (protect_state) are reproducible."""
    return lock_key.for_run(bytes(32))


@pytest.fixture(scope="session")
def other_run_key(other_key) -> RunKey:
    return other_key.for_run(bytes(32))


def save_family(family: str, out, *, shards: int = 1, dtype: torch.dtype = torch.float32):
    """A saved tiny model directory of `family` (GPT-J included)."""
    from guard.testing import factory

    if family == "gptj":
        return factory.save_model(build_gptj().to(dtype), out)
    return factory.make_model_dir(family, out, shards=shards, dtype=dtype)


@pytest.fixture(scope="session")
def protected_family(tmp_path_factory, lock_key):
    """protected_family(family) -> (original dir, protected dir, LockResult), built once per session."""
    from guard.lock.protect import protect_model

    root = tmp_path_factory.mktemp("lock-families")
    built: dict = {}

    def get(family: str):
        if family not in built:
            src = save_family(family, root / f"{family}-orig")
            result = protect_model(src, root / f"{family}-locked", key=lock_key)
            built[family] = (src, result.out_dir, result)
        return built[family]

    return get
