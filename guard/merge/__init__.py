"""Merge stage: weight-space merges, streamed tensor by tensor from disk.

- `guard.merge.methods.REGISTRY`: the methods (linear, task_arithmetic, ties, dare_linear, dare_ties,
  breadcrumbs, breadcrumbs_ties, model_stock, slerp), one module each; `guard.merge.method` is the
  interface a method implements (a function over one `TensorGroup`).
- `guard.merge.sparsify`: magnitude (threshold or argsort tie rule), outlier and random masks.
- `guard.merge.config`: the mergekit YAML subset plus the `guard:` section (pydantic).
- `guard.merge.engine`: `MergeJob` + `run_merge` / `merged_tensors` (streaming from validated ModelDirs, positional output
  mirroring an input's shards, device cpu/cuda/auto, `TensorHook`s for stages).
- `guard.merge.api`: `merge_tensors` / `merge_state_dicts` over tensors already in memory.

Importing this package is cheap; torch loads with the modules that need it.
"""

from __future__ import annotations

from guard._lazy import lazy_attributes

__all__ = ["MergeConfig", "MergeJob", "TensorHook", "load_merge_config", "merge_state_dicts", "merge_tensors",
           "merged_tensors", "run_merge"]

_LAZY = {
    "MergeConfig": "guard.merge.config",
    "load_merge_config": "guard.merge.config",
    "MergeJob": "guard.merge.engine",
    "TensorHook": "guard.merge.engine",
    "run_merge": "guard.merge.engine",
    "merged_tensors": "guard.merge.engine",
    "merge_state_dicts": "guard.merge.api",
    "merge_tensors": "guard.merge.api",
}


__getattr__ = lazy_attributes(__name__, _LAZY)
