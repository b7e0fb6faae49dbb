"""Streaming tensor reads from validated safetensors offsets (never through safetensors' own loader).

Tensors are read one at a time, shard by shard in file order, into a buffer of exactly the validated
size, and handed to torch without a copy; peak memory is the largest tensor (plus what the caller keeps).
A shard is opened without following symlinks and must still be the file validation read (device, inode,
ctime, mtime, size: guard.artifacts.identity), and iter_tensors checks that again after every tensor it
reads, so a file swapped, rewritten or touched since `open_model_dir` is refused (`file-changed`)
instead of trusted.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from guard.artifacts.dtypes import FLOAT_DTYPES, torch_dtype
from guard.artifacts.findings import Finding
from guard.artifacts.identity import check_unchanged, open_validated
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
            identity = model.file(shard).identity
            for info in infos:
                read = [read_tensor(fd, info, model.root / shard)]  # held in a list so the frame keeps no reference
                check_unchanged(fd, identity, model.root / shard)  # no write during or before the read
                yield info.name, read.pop().to(device)
        finally:
            os.close(fd)


def open_shard(model, shard: str) -> int:
    """A read-only descriptor on one validated shard; refused (file-changed) unless it is still the file
    validation read."""
    return open_validated(model.root, shard, model.file(shard).identity,
                          follow_symlinks=model.policy.allow_symlinks)


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
