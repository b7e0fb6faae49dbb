"""The ViT used by the vision zoo: a transformers ViTForImageClassification whose `classifier`
is the task head. Only the encoder (`vit.*`) is merged; each task keeps its own head."""

from __future__ import annotations

import pathlib

import torch

HEAD_PREFIX = "classifier."


def is_head(key: str) -> bool:
    """True for the per-task head's tensors, which merges leave out (they keep each task's own)."""
    return key.startswith(HEAD_PREFIX)


def build_vit(*, image_size: int, hidden: int, layers: int, heads: int, mlp: int, num_labels: int, seed: int):
    import transformers

    config = transformers.ViTConfig(
        image_size=image_size, patch_size=4, num_channels=1, hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=mlp, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, num_labels=num_labels,
    )
    torch.manual_seed(seed)
    return transformers.ViTForImageClassification(config).eval()


def with_head(model, head: dict[str, torch.Tensor]):
    """Replace the model's classifier with `head` ({'weight', 'bias'}), resizing it if needed."""
    weight, bias = head["weight"], head["bias"]
    classifier = torch.nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        classifier.weight.copy_(weight)
        classifier.bias.copy_(bias)
    model.classifier = classifier.to(next(model.parameters()).device)
    model.config.num_labels = weight.shape[0]
    return model


def load_encoder(model, state) -> None:
    """Load every non-head tensor of `state` (in-memory names) into `model`; a missing one is an error."""
    current = model.state_dict()
    missing = [k for k in current if not is_head(k) and k not in state]
    if missing:
        raise KeyError(f"encoder tensors missing from the state: {missing[:3]}")
    model.load_state_dict({k: (current[k] if is_head(k) else state[k]) for k in current}, strict=True)


def head_of(model) -> dict[str, torch.Tensor]:
    return {"weight": model.classifier.weight.detach().clone(), "bias": model.classifier.bias.detach().clone()}


def features(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """The [CLS] feature after the final layer norm: what `classifier` reads."""
    return model.vit(pixel_values=pixel_values).last_hidden_state[:, 0]


def _quiet() -> None:
    import transformers

    transformers.utils.logging.disable_progress_bar()


def save(model, out_dir: pathlib.Path) -> pathlib.Path:
    _quiet()
    model.to("cpu").save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def load(model_dir: pathlib.Path | str):
    import transformers

    _quiet()
    return transformers.ViTForImageClassification.from_pretrained(model_dir).eval()
