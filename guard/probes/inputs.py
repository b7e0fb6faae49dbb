"""What a scan looks at: the candidate, its base, peers, an optional trusted safety pair and calibration
inputs, all as validated guard.artifacts ModelDirs (nothing is unpickled; tensors are read on demand).

`ScanInputs` also caches what several probes share: the one streaming pass over the weights
(`weight_pass`) and models loaded for the data-driven probes.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any

from guard.errors import InputError

CLASSIFIER_SUFFIX = "ForImageClassification"
CAUSAL_LM_SUFFIX = "ForCausalLM"
CALIBRATION_KEYS = {"image-classifier": ("pixel_values",), "causal-lm": ("input_ids",)}


def model_kind(model_dir) -> str:
    """"causal-lm", "image-classifier" or "other", from config.json's architecture."""
    arch = model_dir.architecture or ""
    if arch.endswith(CAUSAL_LM_SUFFIX):
        return "causal-lm"
    if arch.endswith(CLASSIFIER_SUFFIX):
        return "image-classifier"
    return "other"


@dataclasses.dataclass(frozen=True)
class SafetyPair:
    aligned: Any  # ModelDir
    unaligned: Any  # ModelDir


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Unlabeled inputs: `pixel_values` [N, C, H, W] for image classifiers, `input_ids` [N, L] (right-padded,
    with `attention_mask`) for causal LMs. Read from one safetensors file."""

    path: pathlib.Path
    tensors: dict[str, Any]

    def count(self) -> int:
        return int(next(iter(self.tensors.values())).shape[0])

    def prompts(self) -> list[list[int]]:
        """Causal-LM calibration as token-id lists without padding."""
        ids = self.tensors["input_ids"]
        mask = self.tensors.get("attention_mask")
        rows = []
        for i in range(ids.shape[0]):
            n = int(mask[i].sum()) if mask is not None else ids.shape[1]
            rows.append([int(t) for t in ids[i, :n]])
        return rows


def read_calibration(path: str | os.PathLike, *, kind: str) -> Calibration:
    """Strictly read a calibration safetensors file (guard's own header parser and offsets)."""
    import torch

    from guard.artifacts.safetensors_header import read_header
    from guard.artifacts.sniff import sniff_file
    from guard.artifacts.policy import ReadPolicy
    from guard.artifacts.tensors import read_tensor

    path = pathlib.Path(path)
    if not path.is_file():
        raise InputError("calibration file not found", path=path, rule="scan-calibration")
    sniffed = sniff_file(path.parent, path.name, policy=ReadPolicy())
    if sniffed.kind != "safetensors":
        raise InputError(f"calibration must be a safetensors file, found {sniffed.kind}", path=path,
                         rule="scan-calibration")
    header = read_header(path)
    tensors = {}
    fd = os.open(path, os.O_RDONLY)
    try:
        for info in header.tensors:
            tensors[info.name] = read_tensor(fd, info, path).clone()
    finally:
        os.close(fd)
    wanted = CALIBRATION_KEYS.get(kind)
    if wanted is None:
        raise InputError(f"calibration inputs are used for image classifiers and causal LMs; this model is {kind}",
                         path=path, rule="scan-calibration")
    missing = [k for k in wanted if k not in tensors]
    if missing:
        raise InputError(f"a {kind} calibration file needs tensor {missing[0]!r}; it has {sorted(tensors)}",
                         path=path, rule="scan-calibration")
    first = tensors[wanted[0]]
    if kind == "image-classifier" and (first.ndim != 4 or not first.is_floating_point()):
        raise InputError(f"pixel_values must be a float [N, C, H, W] tensor, got {first.dtype} {tuple(first.shape)}",
                         path=path, rule="scan-calibration")
    if kind == "causal-lm":
        if first.ndim != 2 or first.is_floating_point():
            raise InputError(f"input_ids must be an integer [N, L] tensor, got {first.dtype} {tuple(first.shape)}",
                             path=path, rule="scan-calibration")
        mask = tensors.get("attention_mask")
        if mask is not None and tuple(mask.shape) != tuple(first.shape):
            raise InputError("attention_mask must have the shape of input_ids", path=path, rule="scan-calibration")
        tensors["input_ids"] = first.to(torch.long)
    if first.shape[0] < 4:
        raise InputError(f"at least 4 calibration inputs are needed, found {first.shape[0]}", path=path,
                         rule="scan-calibration")
    return Calibration(path=path, tensors=tensors)


@dataclasses.dataclass
class ScanInputs:
    candidate: Any  # ModelDir
    base: Any | None = None
    peers: list = dataclasses.field(default_factory=list)
    safety_pair: SafetyPair | None = None
    calibration: Calibration | None = None
    device: str = "cpu"
    # Results that depend only on the base and public inputs (keyed by content), which a caller scanning
    # many candidates against one base may share between scans (benchmarks do).
    shared: dict | None = None
    _cache: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def kind(self) -> str:
        return model_kind(self.candidate)

    def cached(self, key: str, build):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def reusable(self, key, build):
        store = self._cache if self.shared is None else self.shared
        if key not in store:
            store[key] = build()
        return store[key]

    def describe(self) -> dict[str, Any]:
        return {"model": str(self.candidate.root), "kind": self.kind,
                "base": None if self.base is None else str(self.base.root),
                "peers": [str(p.root) for p in self.peers],
                "aligned": None if self.safety_pair is None else str(self.safety_pair.aligned.root),
                "unaligned": None if self.safety_pair is None else str(self.safety_pair.unaligned.root),
                "calibration": None if self.calibration is None else str(self.calibration.path),
                "parameters": self.candidate.parameter_count(), "device": self.device}
