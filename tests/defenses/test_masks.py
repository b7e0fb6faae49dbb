"""Concrete masks: shapes per granularity, seeded samples, the deterministic final mask."""

from __future__ import annotations

import torch

from guard.defenses.masks import ConcreteMask, expand, logit_shape, renormalise


def test_logit_shapes_per_granularity():
    assert logit_shape((6, 10), granularity="entry", block=4) == (6, 10)
    assert logit_shape((6, 10), granularity="row", block=4) == (6, 1)
    assert logit_shape((6, 10), granularity="block", block=4) == (2, 3)
    assert logit_shape((6, 2, 5), granularity="block", block=4) == (2, 3)
    assert logit_shape((9,), granularity="block", block=4) == (3,)
    assert logit_shape((6, 10), granularity="tensor", block=4) == (1, 1)


def test_block_cells_tile_the_tensor():
    cells = torch.arange(6.0).reshape(2, 3)
    full = expand(cells, (6, 10), granularity="block", block=4)
    assert full.shape == (6, 10)
    assert full[0, 0] == 0 and full[3, 3] == 0 and full[4, 0] == 3 and full[5, 9] == 5 and full[0, 8] == 2
    assert expand(torch.tensor([1.0, 2.0, 3.0]), (9,), granularity="block", block=4).tolist() == [1] * 4 + [2] * 4 + [3]


def test_samples_are_seeded_and_differentiable_and_the_deterministic_mask_thresholds_at_one_half():
    mask = ConcreteMask({"w": (4, 5), "b": (5,)}, granularity="row")
    first = mask.sample(temperature=0.5, generator=torch.Generator().manual_seed(1))
    again = mask.sample(temperature=0.5, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert first["w"].shape == (4, 5) and bool((first["w"][:, 0:1] == first["w"]).all())  # one value per row
    first["w"].sum().backward()
    assert mask.logits["w"].grad is not None and mask.logits["w"].grad.shape == (4, 1)
    with torch.no_grad():
        mask.logits["w"].copy_(torch.tensor([[1.0], [-1.0], [0.2], [-0.2]]))
    assert mask.deterministic()["w"][:, 0].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert renormalise(torch.tensor([0.0, 1.0, 1.0, 0.0])).tolist() == [0.0, 2.0, 2.0, 0.0]
    assert renormalise(torch.zeros(3)).tolist() == [0.0, 0.0, 0.0]
