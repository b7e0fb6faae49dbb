"""Locked shards written in place of the input's, tensor for tensor.

MergeLock changes values, never names, dtypes, shapes or order, so every output shard has the same
tensors at the same positions as its input shard (only the header's metadata differs). That lets the
output be written positionally:
- tensors the lock does not touch (embeddings, norms, lm_head, ...) are copied file to file by the
  kernel (`os.copy_file_range`, as `cp` does): their bytes are never read into Python nor decoded;
- transformed tensors are read (from the validated offsets), transformed one block at a time and
  written at their offset with `os.pwrite`.
The kernel copies and the positional writes run on one background thread, so they overlap the reads
and the transform of the next block; at most `max_pending_bytes` of results wait for it. Peak memory
is therefore about one attention or MLP block, its result and the results still being written,
whatever the shard size. The files go to the staging directory that `guard.lock.protect` renames into place once self-checked;
`sync()` fsyncs them (run beside the self-check) so a renamed output is durable.

Each tensor's bytes become readable from the output (`read_back`) as soon as they are written, so the
self-check's forward through the protected model runs while later tensors are still being transformed.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import pathlib
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from guard.artifacts.tensors import open_shard, read_buffer, read_tensor
from guard.artifacts.writer import header_bytes
from guard.errors import InputError

_COPY_CHUNK = 1 << 30  # copy_file_range may copy less than asked; loop in chunks


class LockedShards:
    """Writes every shard of a validated ModelDir to `out_dir` (same relative names), where
    `transformed` names the tensors that will be handed to `put`; all others are copied verbatim."""

    def __init__(self, model, out_dir: pathlib.Path, *, transformed: Iterable[str], metadata: dict[str, str],
                 max_pending_bytes: int | None = None):
        self.model = model
        self._transformed = set(transformed)
        if max_pending_bytes is None:  # about one tensor in flight: memory stays near a block, not a shard
            sizes = [model.tensors[name].nbytes for name in self._transformed]
            max_pending_bytes = max([64 << 20, *sizes])
        self.max_pending_bytes = max_pending_bytes
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="guard-lock-write")
        self._futures: collections.deque = collections.deque()  # (future, bytes held until it is done)
        self._pending_bytes = 0
        self.out_dir = out_dir
        self._metadata = {"format": "pt", **metadata}
        self._src: dict[str, int] = {}
        self._dst: dict[str, int] = {}
        self._offset: dict[str, int] = {}  # tensor name -> absolute offset in its output shard
        self._pending: set[str] = set()
        self._written: dict[str, threading.Event] = {}  # set once the tensor's bytes are in the output
        self._aborted = False
        self.written: list[pathlib.Path] = []

    def __enter__(self) -> LockedShards:
        try:
            for shard in self.model.shards:
                self._open_shard(shard)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def _submit(self, fn, *args, nbytes: int = 0) -> None:
        self._futures.append((self._io.submit(fn, *args), nbytes))
        self._pending_bytes += nbytes
        while self._futures and (self._pending_bytes > self.max_pending_bytes or self._futures[0][0].done()):
            self._wait_oldest()

    def _wait_oldest(self) -> None:
        future, nbytes = self._futures.popleft()
        self._pending_bytes -= nbytes
        future.result()  # re-raises a failed write here, in the caller's thread

    def drain(self) -> None:
        """Wait for every queued copy and write (raising the first failure)."""
        while self._futures:
            self._wait_oldest()

    def close(self) -> None:
        try:
            for future, _ in self._futures:
                future.cancel()
            self._io.shutdown(wait=True)
        finally:
            self._futures.clear()
            self._abort_readers()
            self._close_files()

    def _abort_readers(self) -> None:
        """Wake every reader still waiting for a tensor that will now never be written."""
        unfinished = [event for event in self._written.values() if not event.is_set()]
        if unfinished:
            self._aborted = True
            for event in unfinished:
                event.set()

    def read_back(self, name: str) -> np.ndarray:
        """The bytes of `name` as written to the output, once they are (blocks until then)."""
        self._written[name].wait()
        info = self.model.tensors[name]
        fd = self._dst.get(info.shard)
        if self._aborted or fd is None:
            raise RuntimeError(f"the output stopped being written before {name!r}")
        return read_buffer(fd, _at(info, self._offset[name]), self.out_dir / info.shard)

    def _close_files(self) -> None:
        for fd in (*self._src.values(), *self._dst.values()):
            os.close(fd)
        self._src.clear()
        self._dst.clear()

    def _open_shard(self, shard: str) -> None:
        src = self._src[shard] = open_shard(self.model, shard)
        infos = sorted((t for t in self.model.tensors.values() if t.shard == shard), key=lambda t: t.begin)
        header: dict = {"__metadata__": self._metadata}
        offset = 0
        for info in infos:
            header[info.name] = {"dtype": info.dtype, "shape": list(info.shape),
                                 "data_offsets": [offset, offset + info.nbytes]}
            offset += info.nbytes
        raw = header_bytes(header)
        data_start = len(raw)
        dst_path = self.out_dir / shard
        dst_path.parent.mkdir(parents=True, exist_ok=True)
        dst = os.open(dst_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        self._dst[shard] = dst
        self.written.append(dst_path)
        _write_all(dst, raw, 0)
        os.ftruncate(dst, data_start + offset)  # the final size up front: positional writes fill it in
        # Copy every maximal run of untouched tensors in one kernel call.
        run_src = run_dst = run_len = 0
        run_names: list[str] = []
        position = data_start
        for info in infos:
            self._offset[info.name] = position
            self._written[info.name] = threading.Event()
            if info.name in self._transformed:
                self._pending.add(info.name)
                if run_len:
                    self._submit(self._copy_run, src, dst, run_src, run_dst, run_len, run_names)
                run_len, run_names = 0, []
            elif run_len and run_src + run_len == info.begin:
                run_len += info.nbytes
                run_names.append(info.name)
            else:
                if run_len:
                    self._submit(self._copy_run, src, dst, run_src, run_dst, run_len, run_names)
                run_src, run_dst, run_len, run_names = info.begin, position, info.nbytes, [info.name]
            position += info.nbytes
        if run_len:
            self._submit(self._copy_run, src, dst, run_src, run_dst, run_len, run_names)

    def _copy_run(self, src: int, dst: int, src_offset: int, dst_offset: int, length: int, names: list[str]) -> None:
        _copy_range(src, dst, src_offset, dst_offset, length)
        for name in names:
            self._written[name].set()

    def _write_tensor(self, name: str, fd: int, data, offset: int) -> None:
        _write_all(fd, data, offset)
        self._written[name].set()

    def read(self, name: str) -> torch.Tensor:
        """A transformed-to-be tensor's value, read from its validated offsets."""
        info = self.model.tensors[name]
        return read_tensor(self._src[info.shard], info, self.model.root / info.shard)

    def put(self, name: str, tensor: torch.Tensor) -> None:
        info = self.model.tensors[name]
        if name not in self._pending:
            raise ValueError(f"tensor {name!r} is not awaited (written twice, or not transformed)")
        if tuple(tensor.shape) != tuple(info.shape) or tensor.dtype != self.read_dtype(name):
            raise ValueError(f"tensor {name!r} changed shape or dtype")
        self._pending.discard(name)
        if info.nbytes:
            flat = tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
            self._submit(self._write_tensor, name, self._dst[info.shard], flat, self._offset[name], nbytes=info.nbytes)
        else:
            self._written[name].set()

    def read_dtype(self, name: str) -> torch.dtype:
        from guard.artifacts.dtypes import torch_dtype

        return torch_dtype(self.model.tensors[name].dtype)

    def finish(self, index_relpath: str | None) -> None:
        self.drain()
        if self._pending:
            raise RuntimeError(f"{len(self._pending)} transformed tensors were never written, e.g. "
                               f"{sorted(self._pending)[0]!r}")
        if index_relpath is not None:
            weight_map = {t.name: t.shard for t in self.model.tensors.values()}
            index = {"metadata": {"total_size": sum(t.nbytes for t in self.model.tensors.values())},
                     "weight_map": weight_map}
            path = self.out_dir / index_relpath
            path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            self.written.append(path)


def _at(info, offset: int):
    """`info` (a validated TensorInfo) placed at `offset` of the output shard."""
    return dataclasses.replace(info, begin=offset, end=offset + info.nbytes)


def _write_all(fd: int, data, offset: int) -> None:
    view = memoryview(data).cast("B")
    while view:
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done


def _copy_range(src: int, dst: int, src_offset: int, dst_offset: int, length: int) -> None:
    """Copy bytes file to file in the kernel where possible (no user-space copy), else by reads."""
    while length:
        step = min(length, _COPY_CHUNK)
        done = 0
        if hasattr(os, "copy_file_range"):
            try:
                done = os.copy_file_range(src, dst, step, src_offset, dst_offset)
            except OSError:
                done = 0  # e.g. EXDEV on older kernels: fall back to a plain copy
        if done <= 0:
            chunk = os.pread(src, min(step, 64 << 20), src_offset)
            if not chunk:
                raise InputError("input shard shorter than validated", rule="file-changed")
            _write_all(dst, chunk, dst_offset)
            done = len(chunk)
        src_offset, dst_offset, length = src_offset + done, dst_offset + done, length - done
