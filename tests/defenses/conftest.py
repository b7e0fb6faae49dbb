"""Tiny models for the defenses: a ViT base with two fine-tuned experts whose heads differ (as the vision
zoo's), and a tiny Llama base with two experts, each saved as a model directory."""

from __future__ import annotations

import dataclasses
import pathlib

import pytest
import torch


@dataclasses.dataclass
class Family:
    base: pathlib.Path
    experts: list[pathlib.Path]
    calibration: list[dict[str, torch.Tensor]]


def _vit(labels: int, seed: int):
    from guard.testing.zoo.vision.model import build_vit

    return build_vit(image_size=8, hidden=16, layers=1, heads=2, mlp=32, num_labels=labels, seed=seed)


@pytest.fixture(scope="session")
def vit_family(tmp_path_factory) -> Family:
    from guard.testing.factory import synthetic_fine_tune

    root = tmp_path_factory.mktemp("dam-vit")
    base = _vit(3, 0)
    base.save_pretrained(root / "base")
    experts = []
    for i, labels in enumerate((3, 3)):  # the engine merges heads too, so one size
        expert = _vit(3, 0)
        synthetic_fine_tune(expert, seed=i + 1, scale=0.2)
        head = torch.nn.Linear(16, labels)
        torch.nn.init.normal_(head.weight, generator=torch.Generator().manual_seed(i))
        expert.classifier = head
        expert.config.num_labels = labels
        expert.save_pretrained(root / f"expert-{i}")
        experts.append(root / f"expert-{i}")
    g = torch.Generator().manual_seed(5)
    calibration = [{"pixel_values": torch.rand(12, 1, 8, 8, generator=g)} for _ in experts]
    return Family(root / "base", experts, calibration)


@pytest.fixture(scope="session")
def llama_family(tmp_path_factory) -> Family:
    from guard.testing.factory import make_fine_tune_dir

    root = tmp_path_factory.mktemp("dam-llama")
    base = make_fine_tune_dir("llama", root / "base", seed=0)
    experts = [make_fine_tune_dir("llama", root / f"expert-{i}", seed=i + 1, scale=0.2) for i in range(2)]
    g = torch.Generator().manual_seed(6)
    calibration = []
    for _ in experts:
        ids = torch.randint(3, 100, (6, 5), generator=g)
        mask = torch.ones_like(ids)
        mask[0, 3:] = 0  # one right-padded prompt
        calibration.append({"input_ids": ids, "attention_mask": mask})
    return Family(base, experts, calibration)
