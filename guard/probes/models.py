"""Models for the data-driven probes, built from validated ModelDirs (never through a pickle or the
safetensors library): the transformers class named by config.json, parameters created on the meta device
and then assigned from tensors read by guard.artifacts' strict reader.

Also the small amount of model plumbing the probes share: batched greedy decoding for causal LMs with
left padding, and the features a linear classification head reads for image classifiers.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence

import torch

from guard.errors import InputError

HEAD_ATTRIBUTES = ("classifier", "score", "head")


def load_model(model_dir, *, device: str = "cpu") -> torch.nn.Module:
    """The whole model, float32, in eval mode on `device`, gradients off for its parameters.

    Built by the lock stage's StreamedModel (the class from_pretrained would build, parameters on the meta
    device, checkpoint keys renamed exactly as from_pretrained renames them); each module's loading hook
    is then fired once, so every parameter is read from the validated offsets, and the hooks removed.
    InputError if the checkpoint cannot be mapped one to one onto the architecture's parameters."""
    from guard.lock.streamed import NotStreamable, StreamedModel, TensorLoader

    if model_dir.config is None:
        raise InputError("no config.json: the architecture is unknown", path=model_dir.root, rule="scan-model")
    streamed = StreamedModel(model_dir, TensorLoader(model_dir))
    try:
        model = streamed.__enter__()
        for module in model.modules():
            for hook in list(module._forward_pre_hooks.values()):
                hook(module, ())
    except NotStreamable as exc:
        raise InputError(f"cannot map the checkpoint onto its architecture: {exc}", path=model_dir.root,
                         rule="scan-model") from None
    except (ValueError, KeyError, OSError) as exc:
        raise InputError(f"cannot build the model from config.json: {exc}", path=model_dir.root,
                         rule="scan-model") from None
    finally:
        streamed.__exit__(None, None, None)
    return model.float().eval().requires_grad_(False).to(device)


def shared_model(inputs, which: str, model_dir) -> torch.nn.Module:
    return inputs.cached(f"model:{which}", lambda: load_model(model_dir, device=inputs.device))


# ---- causal LMs -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LMSetup:
    """What both LM probes start from: the vocabulary size, the calibration prompts, the two models and the
    config's end-of-sequence and padding ids."""

    vocab: int
    prompts: list[list[int]]
    candidate: torch.nn.Module
    base: torch.nn.Module
    eos: int | None
    pad: int


def lm_setup(inputs, *, max_prompts: int, min_length: int = 1) -> LMSetup | str:
    """The LMSetup of a scan, or why the probe cannot run (a one-line reason)."""
    config = inputs.candidate.config or {}
    vocab = config.get("vocab_size")
    if not isinstance(vocab, int):
        return "config.json has no vocab_size"
    prompts = [p for p in inputs.calibration.prompts() if len(p) >= min_length][:max_prompts]
    if not prompts:
        return f"no calibration prompt of at least {min_length} tokens"
    eos, pad = config.get("eos_token_id"), config.get("pad_token_id")
    return LMSetup(vocab, prompts, shared_model(inputs, "candidate", inputs.candidate),
                   shared_model(inputs, "base", inputs.base), eos if isinstance(eos, int) else None,
                   pad if isinstance(pad, int) else 0)


def special_ids(config: dict | None) -> set[int]:
    out = set()
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        value = (config or {}).get(key)
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, int):
                out.add(v)
    return out


def _left_padded(prompts: Sequence[Sequence[int]], pad: int, device) -> tuple[torch.Tensor, ...]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(list(p), dtype=torch.long)
        mask[i, width - len(p):] = 1
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device)


@torch.no_grad()
def next_token_logprobs(model, prompts: Sequence[Sequence[int]], *, pad: int = 0) -> torch.Tensor:
    """[len(prompts), vocab] log-probabilities of the token after each prompt."""
    device = next(model.parameters()).device
    ids, mask, positions = _left_padded(prompts, pad, device)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1]
    return torch.log_softmax(logits.float(), dim=-1).cpu()


@torch.no_grad()
def greedy(model, prompts: Sequence[Sequence[int]], steps: int, *, eos: int | None = None, pad: int = 0,
           batch: int = 256) -> tuple[list[tuple[int, ...]], list[float]]:
    """Greedy continuations of `steps` tokens (cut after `eos`) and the log-probability of each."""
    sequences, scores = [], []
    for start in range(0, len(prompts), batch):
        chunk = [list(p) for p in prompts[start:start + batch]]
        generated = [[] for _ in chunk]
        logp = [0.0] * len(chunk)
        done = [False] * len(chunk)
        for _ in range(steps):
            step = next_token_logprobs(model, [p + g for p, g in zip(chunk, generated)], pad=pad)
            best = step.argmax(dim=-1)
            for i, token in enumerate(best.tolist()):
                if done[i]:
                    continue
                generated[i].append(token)
                logp[i] += float(step[i, token])
                done[i] = eos is not None and token == eos
            if all(done):
                break
        sequences += [tuple(g) for g in generated]
        scores += logp
    return sequences, scores


@torch.no_grad()
def sequence_logprob(model, prompts: Sequence[Sequence[int]], continuation: Sequence[int], *,
                     pad: int = 0) -> torch.Tensor:
    """log p(continuation | prompt) for every prompt (teacher forcing), [len(prompts)]."""
    total = torch.zeros(len(prompts))
    for k, token in enumerate(continuation):
        step = next_token_logprobs(model, [list(p) + list(continuation[:k]) for p in prompts], pad=pad)
        total += step[:, token]
    return total


# ---- image classifiers ------------------------------------------------------------------------

def head_module(model) -> torch.nn.Linear:
    for name in HEAD_ATTRIBUTES:
        module = getattr(model, name, None)
        if isinstance(module, torch.nn.Linear):
            return module
    raise InputError("no linear classification head (classifier/score/head) on this model", rule="scan-model")


@contextlib.contextmanager
def _captured_head_input(model):
    captured = []
    handle = head_module(model).register_forward_pre_hook(lambda mod, args: captured.append(args[0]))
    try:
        yield captured
    finally:
        handle.remove()


def head_features(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """What the classification head reads (e.g. ViT's [CLS] feature after the final norm), differentiable."""
    with _captured_head_input(model) as captured:
        model(pixel_values=pixel_values)
    return captured[-1]


def head_of(model_dir) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """The (weight, bias) of a classifier checkpoint's linear head, read from the checkpoint."""
    from guard.lock.streamed import TensorLoader

    for prefix in HEAD_ATTRIBUTES:
        if f"{prefix}.weight" in model_dir.tensors:
            loader = TensorLoader(model_dir)
            try:
                weight = loader.read(f"{prefix}.weight").to(torch.float32).clone()
                bias = loader.read(f"{prefix}.bias").to(torch.float32).clone() if f"{prefix}.bias" in model_dir.tensors else None
            finally:
                loader.close()
            return (weight, bias) if weight.ndim == 2 else None
    return None


def classifier_heads(inputs) -> list[tuple[str, torch.Tensor, torch.Tensor | None]]:
    """The candidate's own head and every peer's head (a trigger may aim at another contributor's task,
    BadMerging off-task), as (label, weight, bias) on the candidate's feature size."""
    def build():
        heads = []
        for label, model_dir in [("own", inputs.candidate)] + [(f"peer:{p.root.name}", p) for p in inputs.peers]:
            head = head_of(model_dir)
            if head is not None and (not heads or head[0].shape[1] == heads[0][1].shape[1]):
                heads.append((label, *head))
        return heads

    return inputs.cached("heads", build)


def data_range(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel [low, high] of the calibration images, [1, C, 1, 1] each: patches and optimised inputs
    stay inside what the model is fed (raw [0, 1] pixels or normalised ones)."""
    low = pixels.amin(dim=(0, 2, 3), keepdim=True)
    high = pixels.amax(dim=(0, 2, 3), keepdim=True)
    return low, torch.maximum(high, low + 1e-6)
