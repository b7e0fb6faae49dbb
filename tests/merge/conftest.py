"""bf16 factory models for merge tests: a base and two synthetic fine-tunes, built once per session."""

from __future__ import annotations

import pathlib

import pytest
import torch


def fine_tune_dir(out: pathlib.Path, *, seed: int, scale: float = 0.05, shards: int = 1,
                  dtype: torch.dtype = torch.bfloat16) -> pathlib.Path:
    """A llama factory model (seed 0) plus N(0, (scale * std)^2) per parameter; seed 0 is the base."""
    from guard.testing import factory

    model = factory.build_model("llama", seed=0, dtype=dtype)
    if seed:
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for param in model.parameters():
                noise = scale * param.float().std() * torch.randn(param.shape, generator=gen)
                param.add_(noise.to(param.dtype))
    total = sum(p.numel() * p.element_size() for p in model.state_dict().values())
    return factory.save_model(model, out, max_shard_size=None if shards == 1 else total // shards + 1)


@pytest.fixture(scope="session")
def merge_inputs(tmp_path_factory):
    """(base, [ft1, ft2]) bf16 llama directories; the base is sharded in 3, the fine-tunes are not."""
    root = tmp_path_factory.mktemp("merge-inputs")
    base = fine_tune_dir(root / "base", seed=0, shards=3)
    return base, [fine_tune_dir(root / f"ft{i}", seed=i) for i in (1, 2)]
