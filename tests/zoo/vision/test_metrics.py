"""Merging helpers of the vision zoo: heads stay out of merges, encoders must be complete."""

from __future__ import annotations

import pytest
import torch

from guard.testing.zoo.vision import merge_encoders, model_from_state
from guard.testing.zoo.vision.metrics import load_state


def test_merge_leaves_heads_out_and_moves_the_encoder(vision_family):
    base = load_state(vision_family.base_dir)
    merged = merge_encoders(vision_family.base_dir, vision_family.expert_dirs, "task_arithmetic", scale=0.3)
    assert torch.equal(merged["classifier.weight"], base["classifier.weight"])
    changed = [k for k in base if not k.startswith("classifier.") and not torch.equal(merged[k], base[k])]
    assert len(changed) > len(base) // 2  # the encoder really moved (names are transformers' in-memory ones)


def test_model_from_state_takes_the_given_head_and_rejects_partial_encoders(vision_family):
    task = vision_family.tasks[1]
    state = load_state(vision_family.expert_dir(task))
    model = model_from_state(vision_family.base_dir, state, vision_family.head(task))
    assert torch.equal(model.classifier.weight, vision_family.head(task)["weight"])
    partial = {k: v for k, v in state.items() if "layers.0." not in k}
    with pytest.raises(KeyError, match="encoder tensors missing"):
        model_from_state(vision_family.base_dir, partial, vision_family.head(task))
