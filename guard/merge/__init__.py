"""Merge stage: weight-space merges of a base model with fine-tuned experts, tensor by tensor.

One module per method in `guard.merge.methods`, each registered in `MERGE_METHODS` with a frozen
pydantic parameter model. Methods work on one tensor at a time so that the pipeline can stream
(load a tensor from every input, merge, write, evict).
"""

from guard.merge.registry import MERGE_METHODS, MergeMethod, merge_state_dicts, merge_tensors

__all__ = ["MERGE_METHODS", "MergeMethod", "merge_state_dicts", "merge_tensors"]
