"""Digits data for the vision zoo: scikit-learn's bundled 8x8 digits (no download), up-sampled,
split once, and turned into tasks by an input transform plus a label function."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

# Fixed split sizes (of 1797 images); the split seed is fixed too, so every profile and family seed
# sees the same train / validation / calibration / test images. Settings (merge coefficients, attack
# strengths) are chosen on the validation split; figures are reported on the test split.
SPLIT_SEED = 1234
N_TEST = 500
N_CALIBRATION = 100
N_VALIDATION = 250
SPLITS = ("train", "validation", "calibration", "test")


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    transform: str  # identity | rot90 | invert | hflip
    num_labels: int
    label: Callable[[np.ndarray], np.ndarray]
    description: str


def _digit(d: np.ndarray) -> np.ndarray:
    return d


def _parity(d: np.ndarray) -> np.ndarray:
    return d % 2


def _mod3(d: np.ndarray) -> np.ndarray:
    return d % 3


def _at_least_five(d: np.ndarray) -> np.ndarray:
    return (d >= 5).astype(d.dtype)


# The pre-training task of the shared base, and the expert tasks fine-tuned from it. Each expert task
# changes the input domain, the label space, or both, so its task vector carries real information.
PRETRAIN = Task("digit", "identity", 10, _digit, "digit identity, upright images (base pre-training)")
TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("digit_rot90", "rot90", 10, _digit, "digit identity on images rotated by 90 degrees"),
        Task("digit_inverted", "invert", 10, _digit, "digit identity on colour-inverted images"),
        Task("parity_flipped", "hflip", 2, _parity, "digit parity on mirrored images"),
        Task("mod3", "identity", 3, _mod3, "digit modulo 3 on upright images"),
        Task("at_least_five_rot90", "rot90", 2, _at_least_five, "digit >= 5 on images rotated by 90 degrees"),
    )
}
DEFAULT_TASKS: tuple[str, ...] = ("digit_rot90", "digit_inverted", "parity_flipped", "mod3", "at_least_five_rot90")


def task(name: str) -> Task:
    if name == PRETRAIN.name:
        return PRETRAIN
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown vision task {name!r}; known: {', '.join(TASKS)}") from None


@functools.lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    images, digits = load_digits(return_X_y=True)
    return (images.reshape(-1, 1, 8, 8) / 16.0).astype(np.float32), digits.astype(np.int64)


@functools.lru_cache(maxsize=1)
def _split_indices() -> dict[str, np.ndarray]:
    n = len(_raw()[1])
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    bounds = np.cumsum([N_TEST, N_CALIBRATION, N_VALIDATION])
    test, calib, validation, train = np.split(order, bounds)
    return {"test": np.sort(test), "calibration": np.sort(calib), "validation": np.sort(validation), "train": np.sort(train)}


@functools.lru_cache(maxsize=4)
def _upsampled(image_size: int) -> torch.Tensor:
    images = torch.from_numpy(_raw()[0])
    return F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False).clamp(0, 1)


def transform_images(images: torch.Tensor, transform: str) -> torch.Tensor:
    if transform == "identity":
        return images
    if transform == "rot90":
        return torch.rot90(images, 1, dims=(-2, -1))
    if transform == "invert":
        return 1.0 - images
    if transform == "hflip":
        return torch.flip(images, dims=(-1,))
    raise ValueError(f"unknown transform {transform!r}")


def digits(split: str) -> np.ndarray:
    """The digit (0-9) of every image of a split, whatever the task."""
    return _raw()[1][_split_indices()[split]]


def task_data(name: str, split: str, *, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(pixel_values [N, 1, S, S] in [0, 1], labels [N]) of a task's split."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    spec = task(name)
    idx = _split_indices()[split]
    pixels = transform_images(_upsampled(image_size)[idx], spec.transform).contiguous()
    labels = torch.from_numpy(spec.label(_raw()[1][idx]))
    return pixels, labels


def calibration_inputs(name: str, *, image_size: int) -> torch.Tensor:
    """Unlabeled inputs of a task, from the calibration split (disjoint from train and test)."""
    return task_data(name, "calibration", image_size=image_size)[0]
