"""Strict safetensors header parsing (no torch, no safetensors library).

Makes every check the official loader makes (safetensors 0.8 `read_metadata`/`validate`) and more:
duplicate keys anywhere in the header, anything but `{` at byte 8, padding other than trailing spaces,
unknown or missing per-tensor keys, non-string or oversized `__metadata__`, a configurable header cap
and header-to-file ratio, and a dtype allow-list. Sizes declared by the file are compared with the real
file size before anything is read or allocated from them, so a file that claims a 100 MB header or an
exabyte tensor costs a few bytes of memory. Each failure is an InputError with a rule id.
"""

from __future__ import annotations

import dataclasses
import math
import os
import struct

from guard.artifacts.dtypes import DTYPE_BITS
from guard.artifacts.json_text import parse_json
from guard.artifacts.policy import ReadPolicy
from guard.errors import InputError

U64_MAX = (1 << 64) - 1
TENSOR_KEYS = frozenset({"dtype", "shape", "data_offsets"})


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str  # safetensors name, e.g. "F32"
    shape: tuple[int, ...]
    begin: int  # absolute file offsets of the tensor's bytes, end exclusive
    end: int
    shard: str = ""  # relative path of the file holding it (filled in by ModelDir)

    @property
    def nbytes(self) -> int:
        return self.end - self.begin

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclasses.dataclass(frozen=True)
class SafetensorsHeader:
    file_size: int
    header_len: int
    metadata: dict[str, str]
    tensors: tuple[TensorInfo, ...]  # in data order
    warnings: tuple[tuple[str, str], ...]  # (rule, message) for oddities that are not errors

    @property
    def data_start(self) -> int:
        return 8 + self.header_len


def read_header(path: str | os.PathLike, *, policy: ReadPolicy | None = None,
                display_path: str | None = None) -> SafetensorsHeader:
    """Open `path` and strictly parse its header; InputError(path=display_path or path, rule=...) if malformed."""
    where = display_path if display_path is not None else str(path)
    try:
        with open(path, "rb") as f:
            return parse_header(f, file_size=os.fstat(f.fileno()).st_size, policy=policy or ReadPolicy(), where=where)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=where, rule="path-unreadable") from None


def parse_header(f, *, file_size: int, policy: ReadPolicy, where: str) -> SafetensorsHeader:
    def fail(rule: str, message: str) -> InputError:
        return InputError(message, path=where, rule=rule)

    if file_size < 8:
        raise fail("st-too-small", f"file is {file_size} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", f.read(8))
    if n > policy.max_header_bytes:
        raise fail("st-header-too-large", f"header claims {n} bytes, over the cap of {policy.max_header_bytes}")
    if 8 + n > file_size:
        raise fail("st-header-past-eof", f"header claims {n} bytes but the file has only {file_size - 8} after the length")
    if n < 2:
        raise fail("st-header-not-object", f"header of {n} bytes cannot hold a JSON object")
    if n > policy.header_ratio_min_bytes and n > policy.max_header_ratio * file_size:
        raise fail("st-header-ratio", f"header is {n} of {file_size} bytes, over the ratio {policy.max_header_ratio}")
    raw = f.read(n)
    if len(raw) != n:
        raise fail("st-header-past-eof", f"file shrank while reading: wanted {n} header bytes, got {len(raw)}")
    if raw[:1] != b"{":
        raise fail("st-header-start", f"header must begin with '{{' at byte 8, found {raw[:1]!r}")
    body = raw.rstrip(b" ")
    if not body.endswith(b"}"):
        raise fail("st-header-padding", "header may be padded only with trailing spaces after the closing '}'")
    try:
        text = body.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise fail("st-header-utf8", f"header is not valid UTF-8 (byte {exc.start + 8})") from None
    try:
        header, duplicates = parse_json(text, allow_constants=False)
    except (ValueError, RecursionError) as exc:
        raise fail("st-header-json", f"header is not valid JSON: {str(exc)[:200]}") from None
    if duplicates:
        raise fail("st-duplicate-key", f"duplicate key {duplicates[0][:200]!r} in header")
    if not isinstance(header, dict):
        raise fail("st-header-not-object", f"header is a JSON {type(header).__name__}, not an object")
    warnings: list[tuple[str, str]] = []
    if n % 8:
        warnings.append(("st-header-unaligned", f"header length {n} is not a multiple of 8"))
    metadata = _check_metadata(header.pop("__metadata__", {}), policy, fail)
    tensors = [_check_tensor(name, entry, policy, fail) for name, entry in header.items()]
    return SafetensorsHeader(file_size=file_size, header_len=n, metadata=metadata,
                             tensors=_check_layout(tensors, 8 + n, file_size, fail), warnings=tuple(warnings))


def _check_metadata(meta: object, policy: ReadPolicy, fail) -> dict[str, str]:
    if not isinstance(meta, dict):
        raise fail("st-metadata-type", f"__metadata__ must be an object of strings, found {type(meta).__name__}")
    size = 0
    for key, value in meta.items():
        if not isinstance(value, str):
            raise fail("st-metadata-type", f"__metadata__[{key[:100]!r}] is {type(value).__name__}, not a string")
        size += len(key.encode()) + len(value.encode())
    if size > policy.max_metadata_bytes:
        raise fail("st-metadata-too-large", f"__metadata__ holds {size} bytes, over the cap of {policy.max_metadata_bytes}")
    return meta


def _is_uint(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= U64_MAX


def _check_tensor(name: str, entry: object, policy: ReadPolicy, fail) -> TensorInfo:
    label = repr(name[:200])
    if not isinstance(entry, dict):
        raise fail("st-tensor-entry", f"tensor {label} entry is a {type(entry).__name__}, not an object")
    unknown = sorted(set(entry) - TENSOR_KEYS)
    if unknown:
        raise fail("st-tensor-unknown-key", f"tensor {label} has unknown keys {unknown[:5]}")
    missing = sorted(TENSOR_KEYS - set(entry))
    if missing:
        raise fail("st-tensor-missing-key", f"tensor {label} lacks {missing}")
    dtype = entry["dtype"]
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise fail("st-bad-dtype", f"tensor {label} has unknown dtype {str(dtype)[:50]!r}")
    if dtype not in policy.allowed_dtypes:
        raise fail("st-dtype-not-allowed", f"tensor {label} dtype {dtype} is not in the allowed dtypes")
    shape = entry["shape"]
    if not isinstance(shape, list) or not all(_is_uint(d) for d in shape):
        raise fail("st-bad-shape", f"tensor {label} shape must be a list of non-negative integers")
    offsets = entry["data_offsets"]
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_uint(o) for o in offsets)):
        raise fail("st-bad-offsets", f"tensor {label} data_offsets must be two non-negative 64-bit integers")
    begin, end = offsets
    if end < begin:
        raise fail("st-bad-offsets", f"tensor {label} ends ({end}) before it begins ({begin})")
    bits = DTYPE_BITS[dtype]
    for d in shape:
        bits *= d
        if bits > U64_MAX:  # the official loader computes this with checked u64/usize arithmetic
            raise fail("st-shape-overflow", f"tensor {label} shape {shape[:8]} overflows 64-bit size arithmetic")
    if bits % 8:
        raise fail("st-misaligned-bits", f"tensor {label} holds {bits} bits, not a whole number of bytes")
    if bits // 8 != end - begin:
        raise fail("st-size-mismatch",
                   f"tensor {label} {dtype}{shape} needs {bits // 8} bytes but data_offsets span {end - begin}")
    return TensorInfo(name=name, dtype=dtype, shape=tuple(shape), begin=begin, end=end)


def _check_layout(tensors: list[TensorInfo], data_start: int, file_size: int, fail) -> tuple[TensorInfo, ...]:
    """The byte buffer must be covered exactly: no gap, overlap, alias or trailing byte."""
    ordered = sorted(tensors, key=lambda t: (t.begin, t.end))
    cursor = 0
    previous = None
    for t in ordered:
        if t.begin > cursor:
            raise fail("st-offset-gap", f"gap of {t.begin - cursor} bytes before tensor {t.name[:200]!r}")
        if t.begin < cursor:
            rule = "st-offset-alias" if previous and (previous.begin, previous.end) == (t.begin, t.end) else "st-offset-overlap"
            raise fail(rule, f"tensor {t.name[:200]!r} [{t.begin}, {t.end}) overlaps tensor {previous.name[:200]!r}")
        cursor = t.end
        previous = t
    expected = data_start + cursor
    if expected > file_size:
        raise fail("st-data-past-eof", f"tensor data needs {expected} bytes but the file has {file_size}")
    if expected < file_size:
        raise fail("st-trailing-bytes", f"{file_size - expected} bytes after the last tensor (polyglot or truncated header)")
    return tuple(dataclasses.replace(t, begin=data_start + t.begin, end=data_start + t.end) for t in ordered)


