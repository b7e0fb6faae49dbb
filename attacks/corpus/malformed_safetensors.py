"""A corpus of malformed model directories, each breaking exactly one safetensors/index/config rule.

`generate(out_dir)` writes one model directory per case (a valid config.json plus the broken file) and
returns the cases with the rule id `guard inspect` must name and the file it must blame. Everything is
built from bytes here, so the corpus needs neither torch nor the safetensors library. A few files claim
enormous sizes (a 100 MB header, an exabyte tensor); only one is big on disk, and it is sparse.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import struct
from collections.abc import Callable

CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}
ST = "model.safetensors"
INDEX = "model.safetensors.index.json"


@dataclasses.dataclass(frozen=True)
class MalformedCase:
    name: str
    rule: str  # the rule id guard must report
    blamed: str  # relative path of the file the error line must name
    description: str


def st_bytes(header: object, data: bytes = b"", *, raw_header: bytes | None = None, pad: bool = True) -> bytes:
    """A safetensors file from a header object (or raw header bytes) and a data buffer."""
    raw = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":")).encode()
    if pad and raw_header is None:
        raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


def tensor(dtype: str = "F32", shape: list | None = None, offsets: list | None = None, **extra) -> dict:
    shape = [2] if shape is None else shape
    return {"dtype": dtype, "shape": shape, "data_offsets": offsets if offsets is not None else [0, 8], **extra}


def _one(name: str, rule: str, description: str, content: bytes, relpath: str = ST):
    return name, rule, relpath, description, {relpath: content}


def _cases() -> list[tuple[str, str, str, str, dict[str, bytes | Callable[[pathlib.Path], None]]]]:
    eight = b"\0" * 8
    good = st_bytes({"w": tensor()}, eight)
    c = [
        _one("too-small", "st-too-small", "4-byte file", b"\x10\0\0\0"),
        _one("header-past-eof", "st-header-past-eof", "N = 1000 in a 24-byte file", struct.pack("<Q", 1000) + b"{}" + b" " * 14),
        _one("huge-header-claim", "st-header-too-large", "N claims 100 MB in a tiny file", struct.pack("<Q", 100_000_000) + b"{}      "),
        _one("header-ratio", "st-header-ratio", "a 2 MiB header (spaces) over 8 data bytes",
             st_bytes(None, eight, raw_header=(b'{"w":' + json.dumps(tensor()).encode() + b"}").ljust(2 << 20, b" "))),
        _one("u64-max-header", "st-header-too-large", "N = 2**64-1", struct.pack("<Q", 2**64 - 1) + b"{}      "),
        _one("empty-header", "st-header-not-object", "N = 0", struct.pack("<Q", 0)),
        _one("leading-whitespace", "st-header-start", "space before '{' (the official loader accepts it)",
             st_bytes(None, eight, raw_header=b' {"w":' + json.dumps(tensor()).encode() + b"}")),
        _one("leading-bom", "st-header-start", "UTF-8 BOM before '{'",
             st_bytes(None, eight, raw_header=b'\xef\xbb\xbf{"w":' + json.dumps(tensor()).encode() + b"}")),
        _one("nul-padding", "st-header-padding", "header padded with NUL bytes",
             st_bytes(None, eight, raw_header=b'{"w":' + json.dumps(tensor()).encode() + b"}\0\0\0")),
        _one("bad-utf8", "st-header-utf8", "invalid UTF-8 in a tensor name",
             st_bytes(None, eight, raw_header=b'{"w\xff\xfe":' + json.dumps(tensor()).encode() + b"}")),
        _one("invalid-json", "st-header-json", "unterminated JSON object",
             st_bytes(None, eight, raw_header=b'{"w":' + json.dumps(tensor()).encode() + b',}')),
        _one("nan-literal", "st-header-json", "NaN literal (not JSON) as an offset",
             st_bytes(None, eight, raw_header=b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,NaN]}}')),
        _one("deep-nesting", "st-header-json", "100k nested arrays in metadata",
             st_bytes(None, b"", raw_header=b'{"__metadata__":' + b"[" * 100_000 + b"]" * 100_000 + b"}")),
        _one("duplicate-tensor-key", "st-duplicate-key", "the same tensor name twice (the official loader keeps the last)",
             st_bytes(None, eight, raw_header=b'{"w":' + json.dumps(tensor()).encode() + b',"w":'
                      + json.dumps(tensor()).encode() + b"}")),
        _one("duplicate-inner-key", "st-duplicate-key", "dtype twice inside one tensor entry",
             st_bytes(None, eight, raw_header=b'{"w":{"dtype":"F32","dtype":"I64","shape":[2],"data_offsets":[0,8]}}')),
        _one("header-is-array", "st-header-start", "top-level JSON array", st_bytes(None, b"", raw_header=b"[]")),
        _one("metadata-nested", "st-metadata-type", "__metadata__ value is an object",
             st_bytes({"__metadata__": {"a": {"b": "c"}}, "w": tensor()}, eight)),
        _one("metadata-int", "st-metadata-type", "__metadata__ value is a number",
             st_bytes({"__metadata__": {"a": 1}, "w": tensor()}, eight)),
        _one("metadata-list", "st-metadata-type", "__metadata__ is a list", st_bytes({"__metadata__": ["a"], "w": tensor()}, eight)),
        _one("metadata-oversized", "st-metadata-too-large", "100 KiB of __metadata__",
             st_bytes({"__metadata__": {"blob": "x" * 100_000}, "w": tensor()}, eight)),
        _one("tensor-not-object", "st-tensor-entry", "tensor entry is a list", st_bytes({"w": [1, 2]}, b"")),
        _one("unknown-tensor-key", "st-tensor-unknown-key", "extra key in a tensor entry (the official loader accepts it)",
             st_bytes({"w": tensor(note="hi")}, eight)),
        _one("missing-tensor-key", "st-tensor-missing-key", "no shape",
             st_bytes({"w": {"dtype": "F32", "data_offsets": [0, 8]}}, eight)),
        _one("unknown-dtype", "st-bad-dtype", "dtype F128", st_bytes({"w": tensor("F128")}, eight)),
        _one("dtype-not-allowed", "st-dtype-not-allowed", "F4 is valid safetensors but outside the default allow-list",
             st_bytes({"w": tensor("F4", [4], [0, 2])}, b"\0\0")),
        _one("negative-dim", "st-bad-shape", "shape [-2]", st_bytes({"w": tensor(shape=[-2])}, eight)),
        _one("float-dim", "st-bad-shape", "shape [2.0]", st_bytes({"w": tensor(shape=[2.0])}, eight)),
        _one("bool-dim", "st-bad-shape", "shape [true]", st_bytes({"w": tensor(shape=[True])}, eight)),
        _one("negative-offset", "st-bad-offsets", "data_offsets [-8, 0]", st_bytes({"w": tensor(offsets=[-8, 0])}, eight)),
        _one("reversed-offsets", "st-bad-offsets", "end before begin", st_bytes({"w": tensor(offsets=[8, 0])}, eight)),
        _one("offset-over-u64", "st-bad-offsets", "offset 2**64", st_bytes({"w": tensor(offsets=[0, 2**64])}, eight)),
        _one("shape-overflow", "st-shape-overflow", "shape [2**40]*3 overflows u64",
             st_bytes({"w": tensor(shape=[2**40, 2**40, 2**40], offsets=[0, 8])}, eight)),
        _one("exabyte-tensor", "st-data-past-eof", "a consistent 1 EiB F32 tensor in a tiny file",
             st_bytes({"w": tensor(shape=[2**29, 2**29], offsets=[0, 2**60])}, eight)),
        _one("size-mismatch", "st-size-mismatch", "shape [3] F32 over 8 bytes", st_bytes({"w": tensor(shape=[3])}, eight)),
        _one("gap", "st-offset-gap", "first tensor starts at 8",
             st_bytes({"w": tensor(offsets=[8, 16])}, b"\0" * 16)),
        _one("overlap", "st-offset-overlap", "second tensor starts inside the first",
             st_bytes({"a": tensor(shape=[2], offsets=[0, 8]), "b": tensor(shape=[2], offsets=[4, 12])}, b"\0" * 12)),
        _one("alias", "st-offset-alias", "two tensors on the same bytes",
             st_bytes({"a": tensor(), "b": tensor()}, eight)),
        _one("trailing-bytes", "st-trailing-bytes", "bytes after the buffer (polyglot carrier)", good + b"PK\x03\x04junk"),
        _one("truncated-data", "st-data-past-eof", "data cut short", good[:-3]),
        _one("sparse-100mb-header", "st-header-too-large", "a real (sparse) file with a 100 MB header", b""),
    ]
    # The sparse case is written by _write; mark it so.
    c[-1][4][ST] = _sparse_huge_header
    shard1 = st_bytes({"a": tensor()}, eight)
    shard2 = st_bytes({"b": tensor()}, eight)
    s1, s2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"

    def index(weight_map: dict) -> bytes:
        return json.dumps({"metadata": {"total_size": 16}, "weight_map": weight_map}).encode()

    c += [
        ("index-missing-shard", "index-missing-shard", INDEX, "index names a shard that is not there",
         {s1: shard1, INDEX: index({"a": s1, "b": s2})}),
        ("index-unlisted-shard", "index-unlisted-shard", INDEX, "a shard on disk that the index leaves out",
         {s1: shard1, s2: shard2, INDEX: index({"a": s1})}),
        ("index-wrong-shard", "index-tensor-unlisted", INDEX, "tensor mapped to the other shard",
         {s1: shard1, s2: shard2, INDEX: index({"a": s2, "b": s1})}),
        ("index-phantom-tensor", "index-tensor-missing", INDEX, "index lists a tensor no shard holds",
         {s1: shard1, s2: shard2, INDEX: index({"a": s1, "b": s2, "c": s2})}),
        ("index-path-traversal", "path-unsafe-name", INDEX, "shard name ../model.safetensors",
         {s1: shard1, INDEX: index({"a": "../" + s1})}),
        ("index-absolute-path", "path-unsafe-name", INDEX, "shard name /etc/passwd",
         {s1: shard1, INDEX: index({"a": "/etc/passwd"})}),
        ("index-malformed-json", "json-malformed", INDEX, "index is not JSON", {s1: shard1, INDEX: b'{"weight_map": '}),
        ("index-no-weight-map", "index-schema", INDEX, "index without weight_map", {s1: shard1, INDEX: b'{"metadata": {}}'}),
        ("duplicate-across-shards", "tensor-duplicate", s2, "two unindexed files both hold tensor 'a'",
         {s1: shard1, s2: st_bytes({"a": tensor()}, eight)}),
        ("config-not-object", "config-not-object", "config.json", "config.json is a list", {ST: good, "config.json": b"[1]"}),
        ("config-malformed", "json-malformed", "config.json", "config.json is not JSON", {ST: good, "config.json": b"{model_type: llama}"}),
        ("symlink", "path-symlink", "linked.safetensors", "a symlink inside the directory",
         {ST: good, "linked.safetensors": _symlink_to(ST)}),
        ("symlink-escape", "path-symlink", "outside.json", "a symlink pointing out of the directory",
         {ST: good, "outside.json": _symlink_to("/etc/hostname")}),
    ]
    return c


def _sparse_huge_header(path: pathlib.Path) -> None:
    n = 100_000_000
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", n) + b"{")
        f.truncate(8 + n)


def _symlink_to(target: str) -> Callable[[pathlib.Path], None]:
    def make(path: pathlib.Path) -> None:
        os.symlink(target, path)

    return make


def generate(out_dir: str | os.PathLike) -> list[MalformedCase]:
    """Write every case under `out_dir/<case name>/` and return the cases."""
    out = pathlib.Path(out_dir)
    cases = []
    for name, rule, blamed, description, files in _cases():
        case_dir = out / name
        case_dir.mkdir(parents=True)
        if "config.json" not in files:
            (case_dir / "config.json").write_text(json.dumps(CONFIG))
        for rel, content in files.items():
            if callable(content):
                content(case_dir / rel)
            else:
                (case_dir / rel).write_bytes(content)
        cases.append(MalformedCase(name=name, rule=rule, blamed=blamed, description=description))
    return cases
