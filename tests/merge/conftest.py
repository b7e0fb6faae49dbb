"""bf16 factory models for merge tests: a base and two synthetic fine-tunes, built once per session."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def merge_inputs(tmp_path_factory):
    """(base, [ft1, ft2]) bf16 llama directories; the base is sharded, the fine-tunes are not."""
    from guard.testing.factory import make_fine_tune_dir

    root = tmp_path_factory.mktemp("merge-inputs")
    base = make_fine_tune_dir("llama", root / "base", seed=0, shards=3, dtype=torch.bfloat16)
    return base, [make_fine_tune_dir("llama", root / f"ft{i}", seed=i, dtype=torch.bfloat16) for i in (1, 2)]
