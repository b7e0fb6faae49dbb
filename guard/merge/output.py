"""The merged model's shards, laid out like an input's and written tensor by tensor at their offsets.

The output mirrors the layout model (the base, else the first model): the same shard files and index
name, the same tensors in each shard in the same order; only dtypes (and so offsets) may differ when
`out_dtype` asks for it. Every header is known before any tensor is merged, so each shard is created
at its final size and each merged tensor is written at its offset (`os.pwrite`) by one background
thread while the next tensor merges; at most `max_pending_bytes` of results wait for it. Nothing is
held per shard, so memory does not grow with the shard size. The caller writes into a staging
directory and renames it into place when everything (checks, signature) is done.

The positional writing and its bounded background queue are the lock stage's (guard.lock.output,
which writes MergeLock's shards the same way); this class only plans headers with the output dtypes
and writes every tensor (nothing is copied from the input).
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Mapping

import torch

from guard.artifacts.dtypes import DTYPE_BITS, safetensors_dtype
from guard.artifacts.writer import header_bytes
from guard.lock.output import LockedShards, _write_all


class MergedShards(LockedShards):
    def __init__(self, layout, out_dir: pathlib.Path, *, dtypes: Mapping[str, str], metadata: Mapping[str, str],
                 max_pending_bytes: int):
        self.dtypes = dict(dtypes)  # tensor name -> safetensors dtype of the output
        self.total_bytes = 0
        self._shard_of: dict[str, str] = {}
        super().__init__(layout, out_dir, transformed=layout.tensors, metadata=dict(metadata),
                         max_pending_bytes=max_pending_bytes)

    def _open_shard(self, shard: str) -> None:
        infos = sorted((t for t in self.model.tensors.values() if t.shard == shard), key=lambda t: t.begin)
        header: dict = {"__metadata__": self._metadata}
        offsets = []
        offset = 0
        for info in infos:
            dtype = self.dtypes[info.name]
            nbytes = info.numel * DTYPE_BITS[dtype] // 8
            header[info.name] = {"dtype": dtype, "shape": list(info.shape), "data_offsets": [offset, offset + nbytes]}
            offsets.append((info.name, offset))
            offset += nbytes
        raw = header_bytes(header)
        path = self.out_dir / shard
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = self._dst[shard] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self.written.append(path)
        _write_all(fd, raw, 0)
        os.ftruncate(fd, len(raw) + offset)  # the final size up front: positional writes fill it in
        for name, start in offsets:
            self._offset[name] = len(raw) + start
            self._shard_of[name] = shard
            self._pending.add(name)
        self.total_bytes += offset

    def put(self, name: str, tensor: torch.Tensor) -> None:
        """Queue `tensor` (CPU, the output dtype and the layout's shape) for writing at its place."""
        if name not in self._pending:
            raise ValueError(f"tensor {name!r} written twice, or not in the layout")
        info = self.model.tensors[name]
        if safetensors_dtype(tensor.dtype) != self.dtypes[name] or tuple(tensor.shape) != info.shape:
            raise ValueError(f"tensor {name!r}: {tensor.dtype} {tuple(tensor.shape)} is not the planned "
                             f"{self.dtypes[name]} {info.shape}")
        self._pending.discard(name)
        if tensor.numel():
            flat = tensor.contiguous().reshape(-1).view(torch.uint8).numpy()
            self._submit(_write_all, self._dst[self._shard_of[name]], flat, self._offset[name], nbytes=flat.nbytes)

    def finish(self, index_relpath: str | None = None) -> None:
        self.drain()
        if self._pending:
            raise RuntimeError(f"{len(self._pending)} tensors were never written, e.g. {sorted(self._pending)[0]!r}")
        if self.model.index is not None:
            index = {"metadata": {"total_size": self.total_bytes}, "weight_map": dict(sorted(self._shard_of.items()))}
            (self.out_dir / self.model.index).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n",
                                                         encoding="utf-8")
