"""Unlabeled calibration inputs for the defenses, read strictly (guard's safetensors header checks and
positional reads; never a pickle). Vision: `pixel_values` [N, C, H, W]; LMs: `input_ids` [N, L] and
optionally `attention_mask` (right-padded), as the zoo ships them."""

from __future__ import annotations

import os
import pathlib

import torch

from guard.errors import InputError


def read_calibration(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    from guard.artifacts.safetensors_header import read_header
    from guard.artifacts.tensors import read_tensor

    path = pathlib.Path(path)
    if not path.is_file():
        raise InputError("calibration file not found", path=path, rule="calibration-missing")
    header = read_header(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        return {info.name: read_tensor(fd, info, path).clone() for info in header.tensors}
    finally:
        os.close(fd)


def classifier_inputs(tensors: dict[str, torch.Tensor], *, path) -> torch.Tensor:
    pixels = tensors.get("pixel_values")
    if pixels is None or not pixels.is_floating_point() or pixels.dim() < 2 or pixels.shape[0] == 0:
        raise InputError("calibration file has no floating pixel_values [N, ...]", path=path, rule="calibration-format")
    return pixels.float()


def lm_prompts(tensors: dict[str, torch.Tensor], *, path) -> dict[str, torch.Tensor]:
    ids = tensors.get("input_ids")
    if ids is None or ids.is_floating_point() or ids.dim() != 2 or ids.shape[0] == 0:
        raise InputError("calibration file has no integer input_ids [N, L]", path=path, rule="calibration-format")
    mask = tensors.get("attention_mask")
    mask = torch.ones_like(ids) if mask is None else mask
    if tuple(mask.shape) != tuple(ids.shape):
        raise InputError("calibration attention_mask does not match input_ids", path=path, rule="calibration-format")
    return {"input_ids": ids.long(), "attention_mask": mask.long()}
