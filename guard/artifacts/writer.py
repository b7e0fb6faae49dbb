"""ModelWriter: atomic, byte-bounded safetensors output.

Tensors are buffered until the next one would push the current shard past `max_shard_bytes`; then the
shard is written (its own serializer: header + raw little-endian bytes, the layout of the format spec)
and dropped, so at most one shard is held. Everything goes to a staging directory from
guard.artifacts.atomic (a hidden sibling of `out_dir`); on a clean exit the shards get their final
names, an index is written if there are several, and the staging directory is fsynced and renamed into
place. On an exception, or if the process dies, `out_dir` is untouched: it is either absent (or the
old copy) or complete.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
from typing import Any

from guard.artifacts.atomic import atomic_directory
from guard.artifacts.dtypes import safetensors_dtype
from guard.artifacts.index import INDEX_SUFFIX, MAIN_INDEX
from guard.artifacts.paths import check_relname
from guard.errors import InputError

SINGLE_NAME = "model.safetensors"
SUPPORT_KINDS = frozenset({"json", "text", "sentencepiece", "image", "empty"})  # never weights, pickles or code


def shard_name(i: int, n: int) -> str:
    return f"model-{i:05d}-of-{n:05d}.safetensors"


class ModelWriter:
    def __init__(self, out_dir: str | os.PathLike, *, max_shard_bytes: int = 2_000_000_000, overwrite: bool = False,
                 metadata: dict[str, str] | None = None):
        if max_shard_bytes <= 0:
            raise ValueError("max_shard_bytes must be positive")
        self.out_dir = pathlib.Path(out_dir)
        self.max_shard_bytes = max_shard_bytes
        self.overwrite = overwrite
        self.metadata = {"format": "pt", **(metadata or {})}
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.metadata.items()):
            raise ValueError("safetensors metadata must map strings to strings")
        if (self.out_dir.exists() or self.out_dir.is_symlink()) and not overwrite:
            raise InputError("output already exists (pass overwrite to replace it)", path=self.out_dir, rule="output-exists")
        self._staging = None
        self._tmp: pathlib.Path | None = None
        self._pending: dict[str, Any] = {}
        self._pending_bytes = 0
        self._shards: list[tuple[str, list[str], int]] = []  # (temp name, tensor names, bytes)
        self._names: set[str] = set()
        self._files: set[str] = set()

    def __enter__(self) -> ModelWriter:
        self._staging = atomic_directory(self.out_dir, overwrite=self.overwrite)
        self._tmp = self._staging.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        staging, self._staging = self._staging, None
        try:
            if exc_type is None:
                self._finish()
        except BaseException as error:
            staging.__exit__(type(error), error, error.__traceback__)
            raise
        else:
            staging.__exit__(exc_type, exc, tb)  # commits (fsync, rename) on a clean exit, cleans up otherwise
        finally:
            self._tmp = None

    def _require_open(self) -> pathlib.Path:
        if self._tmp is None:
            raise RuntimeError("use ModelWriter as a context manager")
        return self._tmp

    def add(self, name: str, tensor) -> None:
        self._require_open()
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError(f"bad tensor name {name!r}")
        if name in self._names:
            raise ValueError(f"tensor {name!r} added twice")
        tensor = tensor.detach()
        nbytes = tensor.numel() * tensor.element_size()
        if self._pending and self._pending_bytes + nbytes > self.max_shard_bytes:
            self._flush()
        self._names.add(name)
        self._pending[name] = tensor
        self._pending_bytes += nbytes

    def copy_file(self, src_path: str | os.PathLike, relname: str) -> None:
        dst = self._target(relname)
        shutil.copyfile(src_path, dst, follow_symlinks=False)

    def copy_support_files(self, model, *, skip: tuple[str, ...] = ()) -> list[str]:
        """Copy the config, tokenizer and other plain files of a validated ModelDir (not its weights, its
        index, refused files, or relpaths in `skip`). Returns the copied relpaths."""
        refused = {f.path for f in model.refused()}
        copied = []
        for f in model.files:
            if (f.kind in SUPPORT_KINDS and f.relpath not in refused and f.relpath not in skip
                    and not f.relpath.endswith(INDEX_SUFFIX)):
                self.copy_file(model.root / f.relpath, f.relpath)
                copied.append(f.relpath)
        return copied

    def write_json(self, relname: str, obj: Any) -> None:
        self._target(relname).write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    def _target(self, relname: str) -> pathlib.Path:
        tmp = self._require_open()
        check_relname(relname)
        if relname in self._files or relname.endswith(".safetensors") or relname == MAIN_INDEX:
            raise ValueError(f"{relname!r} is already written or reserved for weights")
        self._files.add(relname)
        dst = tmp / relname
        dst.parent.mkdir(parents=True, exist_ok=True)
        return dst

    def _flush(self) -> None:
        if not self._pending:
            return
        tmp = self._require_open()
        name = f"shard-{len(self._shards):05d}.part"
        write_safetensors(tmp / name, self._pending, metadata=self.metadata)
        self._shards.append((name, list(self._pending), self._pending_bytes))
        self._pending = {}
        self._pending_bytes = 0

    def _finish(self) -> None:
        """Final shard names and the index, inside the staging directory."""
        tmp = self._require_open()
        self._flush()
        n = len(self._shards)
        if n == 1:
            os.rename(tmp / self._shards[0][0], tmp / SINGLE_NAME)
        elif n > 1:
            weight_map = {}
            for i, (part, names, _) in enumerate(self._shards, start=1):
                final = shard_name(i, n)
                os.rename(tmp / part, tmp / final)
                weight_map.update(dict.fromkeys(names, final))
            index = {"metadata": {"total_size": sum(b for _, _, b in self._shards)}, "weight_map": weight_map}
            (tmp / MAIN_INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def header_bytes(header: dict[str, Any]) -> bytes:
    """A safetensors file's first bytes: the 8-byte little-endian length, then the JSON header padded
    with spaces to a multiple of 8 (so every tensor starts aligned)."""
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw


def write_safetensors(path: pathlib.Path, tensors: dict[str, Any], *, metadata: dict[str, str] | None = None) -> None:
    """Serialize `tensors` (torch) to `path`: header padded with spaces to 8 bytes, then the raw bytes."""
    import torch

    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    prepared = []
    for name, t in tensors.items():
        t = t.detach().to("cpu").contiguous()
        nbytes = t.numel() * t.element_size()
        header[name] = {"dtype": safetensors_dtype(t.dtype), "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        prepared.append(t)
        offset += nbytes
    with open(path, "xb") as f:
        f.write(header_bytes(header))
        for t in prepared:
            if t.numel():
                f.write(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
        f.flush()
        os.fsync(f.fileno())
