"""Self-check: run the original and the protected model on the same probe batch and compare outputs.

Both models are loaded the way a user would load them (transformers `from_pretrained`, safetensors
only), one after the other, so peak memory is one model. The error is max|delta| / max|reference|
over the output logits (or the last hidden state for headless encoders).
"""

from __future__ import annotations

import dataclasses
import gc
import pathlib

import torch

from guard.errors import PolicyRefusal

# Largest allowed relative logit error per stored dtype. float32: the acceptance bound. bf16/fp16:
# rounding the transformed weights to 8 (bf16) or 11 (fp16) mantissa bits moves every attention output
# by about kappa * 2^-8 (resp. 2^-11) relative; measured on the tiny families and MiniLM (docs/lock.md).
ERROR_BOUNDS: dict[torch.dtype, float] = {torch.float32: 1e-4, torch.float64: 1e-8, torch.bfloat16: 5e-2,
                                          torch.float16: 1e-2}
PROBE = {"batch": 2, "seq": 16, "seed": 0}


@dataclasses.dataclass(frozen=True)
class SelfCheck:
    max_relative_error: float
    bound: float
    dtype: str

    @property
    def passed(self) -> bool:
        return self.max_relative_error <= self.bound

    def as_metadata(self) -> dict:
        return {"max_relative_logit_error": self.max_relative_error, "bound": self.bound, "dtype": self.dtype,
                "probe": dict(PROBE), "passed": self.passed}


def load_model(model_dir: str | pathlib.Path) -> torch.nn.Module:
    import transformers

    config = transformers.AutoConfig.from_pretrained(model_dir)
    arch = (config.architectures or [None])[0]
    model_cls = getattr(transformers, arch, None) if arch else None
    if model_cls is None:
        model_cls = transformers.AutoModel
    return model_cls.from_pretrained(model_dir, use_safetensors=True, dtype="auto").eval()


def probe_inputs(config) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(PROBE["seed"])
    batch, seq = PROBE["batch"], PROBE["seq"]
    if getattr(config, "model_type", None) == "vit" or hasattr(config, "image_size"):
        size = config.image_size
        return {"pixel_values": torch.randn(batch, getattr(config, "num_channels", 3), size, size, generator=gen)}
    vocab = config.vocab_size
    ids = torch.randint(min(3, vocab - 1), vocab, (batch, seq), generator=gen)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if getattr(config, "is_encoder_decoder", False):
        inputs["decoder_input_ids"] = torch.randint(min(3, vocab - 1), vocab, (batch, seq // 2), generator=gen)
    return inputs


def probe_output(model_dir: str | pathlib.Path) -> tuple[torch.Tensor, torch.dtype]:
    model = load_model(model_dir)
    dtype = next(model.parameters()).dtype
    inputs = probe_inputs(model.config)
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
    with torch.no_grad():
        out = model(**inputs)
    result = out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state
    del model
    gc.collect()
    return result.detach().to(torch.float64), dtype


def self_check(original_dir: str | pathlib.Path, candidate_dir: str | pathlib.Path) -> SelfCheck:
    ref, dtype = probe_output(original_dir)
    got, _ = probe_output(candidate_dir)
    error = ((got - ref).abs().max() / ref.abs().max().clamp(min=1e-30)).item()
    return SelfCheck(error, ERROR_BOUNDS.get(dtype, 1e-4), str(dtype).removeprefix("torch."))


def require_pass(check: SelfCheck, *, path=None) -> None:
    if not check.passed:
        raise PolicyRefusal(
            f"self-check failed: protected model's max relative logit error {check.max_relative_error:.3g} exceeds "
            f"the {check.dtype} bound {check.bound:g}; nothing was written (a smaller --bound keeps low-precision "
            f"models more exact)",
            path=path, rule="lock-selfcheck",
        )
