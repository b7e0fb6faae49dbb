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


def relative_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    """max |got - ref| / max |ref|: the self-check's measure."""
    return ((got - ref).abs().max() / ref.abs().max()).item()


def reloaded(model, state):
    """A fresh model of `model`'s class and config with `state` loaded."""
    clone = type(model)(model.config).eval()
    clone.load_state_dict(state)
    return clone


def not_restored(back: dict, original: dict) -> list[str]:
    """Names of the float tensors unlock did not bring back within rtol 1e-5 and 1e-5 of the tensor's
    largest entry (float32 arithmetic through transforms of condition number up to bound^2, drawn afresh
    for each protect run: an absolute 1e-6 is below what a 1.3-sized entry can keep)."""
    return [k for k, v in original.items() if v.is_floating_point()
            and not torch.allclose(back[k], v, rtol=1e-5, atol=1e-5 * float(v.abs().max()))]


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
