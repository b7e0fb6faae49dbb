"""Self-check: run the original and the protected model on the same probe batch and compare outputs.

Both models run the real transformers forward, built the way `from_pretrained` builds them (same
class, config, dtype, key renaming), one after the other. By default they are streamed
(guard.lock.streamed): parameters stay on disk and each module's are read just before its forward and
dropped after, so peak memory is about the largest module plus the probe's activations, not a model.
A model that cannot be streamed module by module (a checkpoint converter that merges tensors) is
loaded whole with `from_pretrained`; `mode` in the metadata says which ran. The error is
max|delta| / max|reference| over the output logits (or the last hidden state for headless encoders).
"""

from __future__ import annotations

import dataclasses
import gc
import pathlib
import threading

import torch

from guard.errors import PolicyRefusal

# Largest allowed relative logit error per stored dtype. float32: the acceptance bound. bf16/fp16:
# rounding the transformed weights to 8 (bf16) or 11 (fp16) mantissa bits moves every attention output
# by about kappa * 2^-8 (resp. 2^-11) relative; measured on the tiny families and MiniLM (docs/lock.md).
ERROR_BOUNDS: dict[torch.dtype, float] = {torch.float32: 1e-4, torch.float64: 1e-8, torch.bfloat16: 5e-2,
                                          torch.float16: 1e-2}
PROBE = {"batch": 2, "seq": 16, "seed": 0}
# Model builds must not overlap any forward: transformers builds under a process-wide default dtype
# (and the meta-device patch is process-wide), which a forward on another thread would see. A lone probe
# holds the lock for build and forward; `probe_pair` builds both models under it, then runs the two
# forwards side by side (the transform workers never depend on the default dtype).
_MODEL_LOCK = threading.Lock()


@dataclasses.dataclass(frozen=True)
class SelfCheck:
    max_relative_error: float
    bound: float
    dtype: str
    mode: str = "streamed"  # "streamed" (module by module) or "full" (from_pretrained, whole model)
    peak_tensor_bytes: int = 0  # streamed: most tensor bytes the loader had alive at once

    @property
    def passed(self) -> bool:
        return self.max_relative_error <= self.bound

    def as_metadata(self) -> dict:
        return {"max_relative_logit_error": self.max_relative_error, "bound": self.bound, "dtype": self.dtype,
                "probe": dict(PROBE), "passed": self.passed, "mode": self.mode}


def load_model(model_dir) -> torch.nn.Module:
    """The whole model, loaded by transformers' from_pretrained (its key renaming and weight converters)
    from the validated config and the validated tensor bytes of a ModelDir: nothing is re-read by name."""
    from guard.lock.modeling import model_class, transformers_config
    from guard.lock.streamed import TensorLoader

    config = transformers_config(model_dir.config, path=model_dir.root)
    loader = TensorLoader(model_dir)
    try:
        state = {name: loader.read(name) for name in model_dir.tensors}
    finally:
        loader.close()
    cls = model_class(config, path=model_dir.root)
    return cls.from_pretrained(None, config=config, state_dict=state, dtype="auto").eval()


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


def _run(model: torch.nn.Module, dtype: torch.dtype) -> torch.Tensor:
    inputs = probe_inputs(model.config)
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
    with torch.no_grad():
        out = model(**inputs)
    result = out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state
    if result.device.type == "meta":  # some parameter was used outside its module's forward
        from guard.lock.streamed import NotStreamable

        raise NotStreamable("the forward produced meta tensors")
    return result.detach().to(torch.float64)


def probe_output(model_dir) -> tuple[torch.Tensor, torch.dtype]:
    """The probe's output with the whole model loaded by from_pretrained (the fallback).
    `model_dir`: a path or a validated guard.artifacts ModelDir."""
    with _MODEL_LOCK:
        model = load_model(_validated(model_dir))
        dtype = next(model.parameters()).dtype
        result = _run(model, dtype)
    del model
    gc.collect()
    return result, dtype


def streamed_probe_output(model_dir, loader=None) -> tuple[torch.Tensor, torch.dtype, int]:
    """The probe's output with parameters read module by module (guard.lock.streamed).
    `model_dir`: a path or a validated guard.artifacts ModelDir. Returns (output, dtype, peak tensor bytes)."""
    from guard.lock.streamed import StreamedModel, TensorLoader

    model_dir = _validated(model_dir)
    loader = loader or TensorLoader(model_dir)
    with _MODEL_LOCK, StreamedModel(model_dir, loader) as model:
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
        result = _run(model, dtype)
    return result, dtype, loader.peak_bytes


def probe_pair(original_dir, candidate_loader, executor) -> tuple:
    """Futures of `streamed_probe_output` for the original (a validated ModelDir) and for the candidate,
    whose tensors `candidate_loader` supplies: both models are built first, one after the other, then the
    two forwards run at once on `executor` (which needs two free workers). A build that cannot stream
    (NotStreamable) makes both futures raise NotStreamable."""
    from guard.lock.streamed import NotStreamable, StreamedModel, TensorLoader

    barrier = threading.Barrier(2)

    def probe(loader):
        try:
            with _MODEL_LOCK:
                streamed = StreamedModel(original_dir, loader)
                model = streamed.__enter__()
        except BaseException:
            barrier.abort()
            raise
        try:
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                raise NotStreamable("the other model of the pair could not be built") from None
            dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
            return _run(model, dtype), dtype, loader.peak_bytes
        finally:
            streamed.__exit__(None, None, None)

    return executor.submit(probe, TensorLoader(original_dir)), executor.submit(probe, candidate_loader)


def self_check(original_dir, candidate_dir, *, streamed: bool = True, reference=None, candidate=None) -> SelfCheck:
    """Run the probe through the original and the candidate model (paths or validated ModelDirs) and
    compare. streamed=False loads each model whole with from_pretrained. `reference`, `candidate`:
    futures of the two models' `streamed_probe_output`, already started (protect runs both while it
    writes the candidate)."""
    from guard.lock.streamed import NotStreamable

    mode, peak = "full", 0
    if streamed:
        try:
            ref, dtype, peak_ref = reference.result() if reference is not None else streamed_probe_output(original_dir)
            got, _, peak_got = candidate.result() if candidate is not None else streamed_probe_output(candidate_dir)
            mode, peak = "streamed", max(peak_ref, peak_got)
        except NotStreamable:
            streamed = False
    if not streamed:
        ref, dtype = probe_output(original_dir)
        got, _ = probe_output(candidate_dir)
    error = ((got - ref).abs().max() / ref.abs().max().clamp(min=1e-30)).item()
    return SelfCheck(error, ERROR_BOUNDS.get(dtype, 1e-4), str(dtype).removeprefix("torch."), mode, peak)


def _validated(model_dir):
    """A validated ModelDir for a path (a ModelDir is returned as it is)."""
    if hasattr(model_dir, "tensors"):
        return model_dir
    from guard.artifacts import open_model_dir

    return open_model_dir(pathlib.Path(model_dir))


def require_pass(check: SelfCheck, *, path=None) -> None:
    if not check.passed:
        raise PolicyRefusal(
            f"self-check failed: protected model's max relative logit error {check.max_relative_error:.3g} exceeds "
            f"the {check.dtype} bound {check.bound:g}; nothing was written (a smaller --bound keeps low-precision "
            f"models more exact)",
            path=path, rule="lock-selfcheck",
        )
