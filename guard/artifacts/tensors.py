"""Streaming tensor reads from validated safetensors offsets (never through safetensors' own loader).

Tensors are read one at a time, shard by shard in file order, into a buffer of exactly the validated
size, and handed to torch without a copy; peak memory is the largest tensor (plus what the caller keeps).
Before reading, each shard's size and mtime are compared with what validation saw, so a file swapped or
grown since `open_model_dir` is refused instead of trusted.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from guard.artifacts.dtypes import FLOAT_DTYPES, torch_dtype
from guard.artifacts.findings import Finding
from guard.errors import InputError


def iter_tensors(model, *, device="cpu", names: Iterable[str] | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    wanted = None if names is None else set(names)
    if wanted is not None:
        unknown = wanted - set(model.tensors)
        if unknown:
            raise KeyError(sorted(unknown)[0])
    for shard in model.shards:
        infos = [t for t in model.tensors.values() if t.shard == shard and (wanted is None or t.name in wanted)]
        if not infos:
            continue
        fd = open_shard(model, shard)
        try:
            for info in infos:
                yield info.name, read_tensor(fd, info, model.root / shard).to(device)
        finally:
            os.close(fd)


def open_shard(model, shard: str) -> int:
    """A read-only descriptor on one validated shard; refused if its size or mtime changed since validation."""
    path = model.root / shard
    report = model.file(shard)
    fd = os.open(path, os.O_RDONLY)
    st = os.fstat(fd)
    if (st.st_size, st.st_mtime_ns) != (report.size, report.mtime_ns):
        os.close(fd)
        raise InputError("file changed since it was validated", path=path, rule="file-changed")
    return fd


def read_buffer(fd: int, info, path) -> np.ndarray:
    """One tensor's bytes from its validated offsets, read positionally (threads may share the descriptor)."""
    buf = np.empty(info.nbytes, dtype=np.uint8)  # not zero-filled: every byte is read into
    view, done = memoryview(buf), 0
    while done < info.nbytes:
        got = os.preadv(fd, [view[done:]], info.begin + done)
        if got <= 0:
            raise InputError(f"short read of tensor {info.name!r}", path=path, rule="file-changed")
        done += got
    return buf


def as_tensor(buf: np.ndarray, info) -> torch.Tensor:
    """The tensor viewing `buf` (no copy), with the validated dtype and shape."""
    dtype = torch_dtype(info.dtype)
    if info.nbytes == 0:
        return torch.empty(info.shape, dtype=dtype)
    return torch.from_numpy(buf).view(dtype).reshape(info.shape)


def read_tensor(fd: int, info, path) -> torch.Tensor:
    return as_tensor(read_buffer(fd, info, path), info)


def scan_values(model) -> list[Finding]:
    """Optional value scan: NaN/Inf in float tensors, BOOL bytes other than 0/1 (each a refusal)."""
    findings = []
    for name, tensor in model.iter_tensors():
        info = model.tensors[name]
        if info.dtype == "BOOL":
            bad = int((tensor.view(torch.uint8) > 1).sum())
            if bad:
                findings.append(Finding("refuse", "tensor-bool-value", info.shard,
                                        f"tensor {name!r}: {bad} BOOL bytes other than 0/1"))
        elif info.dtype in FLOAT_DTYPES or info.dtype.startswith("F8"):
            values = tensor if info.dtype in FLOAT_DTYPES else tensor.float()
            bad = int((~torch.isfinite(values)).sum())
            if bad:
                findings.append(Finding("refuse", "tensor-nan-inf", info.shard, f"tensor {name!r}: {bad} NaN/Inf values"))
    return findings
