"""Metrics of the vision zoo: accuracy, attack success rate, and merged-model evaluation.

Definitions follow BadMerging (CCS 2024): ASR is measured on triggered test images of the target task,
excluding images whose true label is the target class; CA is the clean accuracy of the merge without
the attacker's model, BA the clean accuracy of the merge that includes it.
"""

from __future__ import annotations

import copy
import functools
import pathlib
from collections.abc import Callable, Mapping

import torch
from guard.merge import merge_state_dicts
from guard.testing.zoo.vision import data, train
from guard.testing.zoo.vision import model as vit

# Merge settings used for every figure unless stated: the reference values for task arithmetic
# (lambda 0.3) and TIES (top-20% density, lambda 1).
MERGES: dict[str, dict] = {
    "task_arithmetic": {"scale": 0.3},
    "ties": {"density": 0.2, "scale": 1.0},
}

PixelTransform = Callable[[torch.Tensor], torch.Tensor]


def accuracy(model, task: str, *, image_size: int, split: str = "test") -> float:
    pixels, labels = data.task_data(task, split, image_size=image_size)
    return float((train.predict(model, pixels) == labels).float().mean())


def attack_success_rate(model, task: str, *, trigger: PixelTransform, target: int, image_size: int,
                        split: str = "test") -> float:
    """Share of triggered test images of `task` (true label != target) classified as `target`."""
    pixels, labels = data.task_data(task, split, image_size=image_size)
    keep = labels != target
    predicted = train.predict(model, trigger(pixels[keep]))
    return float((predicted == target).float().mean())


def load_state(model_dir: pathlib.Path | str) -> dict[str, torch.Tensor]:
    """The state dict as transformers holds it in memory (its names differ from the names in the file,
    which transformers 5 keeps in the legacy `vit.encoder.layer.N` layout). Memoised: read-only."""
    return _template(str(model_dir))[1]


@functools.lru_cache(maxsize=32)
def _template(model_dir: str):
    model = vit.load(model_dir)
    return model, {k: v.detach().clone() for k, v in model.state_dict().items()}


def merge_encoders(base_dir: pathlib.Path, expert_dirs: Mapping[str, pathlib.Path], method: str,
                   **params) -> dict[str, torch.Tensor]:
    """Merge the experts' encoders onto the base (heads excluded: the result keeps the base's head).
    Memoised per (directories, method, params), since every attack is compared with the same clean merge;
    treat the result as read-only."""
    return _merge_cached(str(base_dir), tuple(str(d) for d in expert_dirs.values()), method,
                         tuple(sorted(params.items())))


@functools.lru_cache(maxsize=16)
def _merge_cached(base_dir: str, expert_dirs: tuple[str, ...], method: str, params: tuple) -> dict[str, torch.Tensor]:
    return merge_state_dicts(method, load_state(base_dir), [load_state(d) for d in expert_dirs],
                             exclude=vit.is_head, **dict(params))


def model_from_state(base_dir: pathlib.Path, encoder_state: Mapping[str, torch.Tensor],
                     head: Mapping[str, torch.Tensor]):
    """A ViTForImageClassification with `encoder_state`'s encoder and the given task head."""
    model = copy.deepcopy(_template(str(base_dir))[0])
    vit.load_encoder(model, encoder_state)
    return vit.with_head(model, head)


def merged_accuracies(base_dir: pathlib.Path, expert_dirs: Mapping[str, pathlib.Path],
                      heads: Mapping[str, Mapping[str, torch.Tensor]], method: str, *, image_size: int,
                      split: str = "test", **params) -> dict[str, float]:
    """Accuracy of the merged encoder on every task, each with its own head (`split`: test, or
    validation for choosing settings)."""
    merged = merge_encoders(base_dir, expert_dirs, method, **params)
    base_model = model_from_state(base_dir, merged, next(iter(heads.values())))
    out = {}
    for task, head in heads.items():
        out[task] = accuracy(vit.with_head(copy.deepcopy(base_model), head), task, image_size=image_size, split=split)
    return out
