"""The merged model's shards, laid out like an input's and written tensor by tensor at their offsets.

The output mirrors the layout model (the base, else the first model): the same shard files and index
name, the same tensors in each shard in the same order; only dtypes (and so offsets) may differ when
`out_dtype` asks for it. Every header is known before any tensor is merged, so each shard is created
at its final size and each merged tensor is written at its offset (`os.pwrite`) by one background
thread while the next tensor merges; at most `max_pending_bytes` of results wait for it. Nothing is
held per shard, so memory does not grow with the shard size. The caller writes into a staging
directory and renames it into place when everything (checks, signature) is done.
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import torch

from guard.artifacts.dtypes import DTYPE_BITS
from guard.artifacts.writer import header_bytes


class MergedShards:
    def __init__(self, layout, out_dir: pathlib.Path, *, dtypes: Mapping[str, str], metadata: Mapping[str, str],
                 max_pending_bytes: int):
        self.layout = layout
        self.out_dir = out_dir
        self.dtypes = dict(dtypes)  # tensor name -> safetensors dtype of the output
        self.metadata = {"format": "pt", **metadata}
        self.max_pending_bytes = max_pending_bytes
        self._fds: dict[str, int] = {}
        self._where: dict[str, tuple[str, int, int]] = {}  # name -> (shard, absolute offset, bytes)
        self._pending: set[str] = set()
        self._futures: collections.deque = collections.deque()
        self._pending_bytes = 0
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="guard-merge-write")
        self.total_bytes = 0

    def __enter__(self) -> MergedShards:
        try:
            for shard in self.layout.shards:
                self._create(shard)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def _create(self, shard: str) -> None:
        infos = sorted((t for t in self.layout.tensors.values() if t.shard == shard), key=lambda t: t.begin)
        header: dict = {"__metadata__": self.metadata}
        offset = 0
        sizes = []
        for info in infos:
            dtype = self.dtypes[info.name]
            nbytes = info.numel * DTYPE_BITS[dtype] // 8
            header[info.name] = {"dtype": dtype, "shape": list(info.shape), "data_offsets": [offset, offset + nbytes]}
            sizes.append((info.name, offset, nbytes))
            offset += nbytes
        raw = header_bytes(header)
        path = self.out_dir / shard
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._fds[shard] = fd
        _pwrite_all(fd, raw, 0)
        os.ftruncate(fd, len(raw) + offset)
        for name, start, nbytes in sizes:
            self._where[name] = (shard, len(raw) + start, nbytes)
            self._pending.add(name)
        self.total_bytes += offset

    def put(self, name: str, tensor: torch.Tensor) -> None:
        """Queue `tensor` (CPU, the output dtype and the layout's shape) for writing at its place."""
        shard, offset, nbytes = self._where[name]
        if name not in self._pending:
            raise ValueError(f"tensor {name!r} written twice")
        from guard.artifacts.dtypes import safetensors_dtype

        if safetensors_dtype(tensor.dtype) != self.dtypes[name] or tuple(tensor.shape) != self.layout.tensors[name].shape:
            raise ValueError(f"tensor {name!r}: {tensor.dtype} {tuple(tensor.shape)} is not the planned "
                             f"{self.dtypes[name]} {self.layout.tensors[name].shape}")
        self._pending.discard(name)
        if not nbytes:
            return
        data = tensor.contiguous().reshape(-1).view(torch.uint8).numpy()
        self._futures.append((self._io.submit(_pwrite_all, self._fds[shard], data, offset), nbytes))
        self._pending_bytes += nbytes
        while self._futures and (self._pending_bytes > self.max_pending_bytes or self._futures[0][0].done()):
            self._wait_oldest()

    def _wait_oldest(self) -> None:
        future, nbytes = self._futures.popleft()
        self._pending_bytes -= nbytes
        future.result()  # a failed write raises here, in the merging thread

    def finish(self) -> None:
        while self._futures:
            self._wait_oldest()
        if self._pending:
            raise RuntimeError(f"{len(self._pending)} tensors were never written, e.g. {sorted(self._pending)[0]!r}")
        if self.layout.index is not None:
            index = {"metadata": {"total_size": self.total_bytes},
                     "weight_map": {name: where[0] for name, where in sorted(self._where.items())}}
            (self.out_dir / self.layout.index).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n",
                                                          encoding="utf-8")

    def close(self) -> None:
        try:
            for future, _ in self._futures:
                future.cancel()
            self._io.shutdown(wait=True)
        finally:
            self._futures.clear()
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()


def _pwrite_all(fd: int, data, offset: int) -> None:
    view = memoryview(data).cast("B")
    while view:
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done
