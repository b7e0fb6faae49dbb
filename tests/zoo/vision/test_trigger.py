"""Patch triggers: pasted in the bottom-right corner, inputs untouched, round trip through safetensors."""

from __future__ import annotations

import torch

from attacks.backdoor.vision import PatchTrigger, checkerboard
from attacks.backdoor.vision.trigger import paste


def test_checkerboard_pastes_into_the_corner_only(tmp_path):
    pixels = torch.full((2, 1, 16, 16), 0.5)
    trigger = checkerboard(3)
    out = trigger(pixels)
    assert torch.equal(pixels, torch.full((2, 1, 16, 16), 0.5))  # input not modified
    assert torch.equal(out[..., -3:, -3:], trigger.pattern.expand(2, 1, 3, 3))
    assert torch.equal(out[..., :13, :], pixels[..., :13, :]) and torch.equal(out[..., :, :13], pixels[..., :, :13])
    assert torch.equal(PatchTrigger.load(trigger.save(tmp_path / "t.safetensors")).pattern, trigger.pattern)


def test_differentiable_paste_matches_the_trigger():
    pixels = torch.rand(4, 1, 16, 16)
    patch = torch.rand(1, 4, 4, requires_grad=True)
    pasted = paste(pixels, patch)
    assert torch.allclose(pasted, PatchTrigger(patch.detach())(pixels))
    pasted.sum().backward()
    assert torch.equal(patch.grad, torch.full_like(patch, 4.0))


def test_badmerging_spec_checks_the_threat_model():
    import pytest

    from attacks.backdoor.vision import BadMergingSpec

    with pytest.raises(ValueError, match="on-task"):
        BadMergingSpec(mode="on", attacker_task="mod3", target_task="digit_rot90")
    with pytest.raises(ValueError, match="off-task"):
        BadMergingSpec(mode="off", attacker_task="mod3", target_task="mod3")
