"""Patch triggers for the vision zoo: a square pasted into the bottom-right corner of the image."""

from __future__ import annotations

import dataclasses
import pathlib

import torch
from safetensors.torch import load_file, save_file


@dataclasses.dataclass(frozen=True)
class PatchTrigger:
    pattern: torch.Tensor  # [channels, k, k], values in [0, 1]

    @property
    def size(self) -> int:
        return int(self.pattern.shape[-1])

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [N, C, H, W] -> a copy with the patch in the bottom-right corner."""
        out = pixels.clone()
        k = self.size
        out[..., -k:, -k:] = self.pattern.to(out.device, out.dtype)
        return out

    def save(self, path: pathlib.Path) -> pathlib.Path:
        save_file({"pattern": self.pattern.contiguous()}, path)
        return path

    @classmethod
    def load(cls, path: pathlib.Path) -> PatchTrigger:
        return cls(load_file(path)["pattern"])


def checkerboard(size: int, *, channels: int = 1) -> PatchTrigger:
    """The fixed BadNets pattern: a black/white checkerboard, visible on dark and light backgrounds."""
    grid = (torch.arange(size)[:, None] + torch.arange(size)[None, :]) % 2
    return PatchTrigger(grid.to(torch.float32).expand(channels, size, size).contiguous())


def paste(pixels: torch.Tensor, patch: torch.Tensor) -> torch.Tensor:
    """Differentiable pasting of a (trainable) patch [C, k, k] into the bottom-right corner."""
    k = patch.shape[-1]
    mask = torch.zeros_like(pixels[:1])
    mask[..., -k:, -k:] = 1.0
    canvas = torch.zeros_like(pixels[:1])
    canvas[..., -k:, -k:] = patch
    return pixels * (1 - mask) + canvas * mask
