"""Decide what a file is by its content, whatever its extension, and what that means for safety.

A file is accepted only as a kind guard recognises completely: safetensors (strictly parsed), JSON
(parsed), UTF-8 text, Python source, a sentencepiece model (protobuf fields tiling the file), an
image, a numpy array of plain numbers (header parsed, size exact), or empty. Before anything else,
every file is walked the way CPython's unpickler would read it (pickle_scan.py): a stream CPython
would act on is a pickle, whatever its name or first byte. Pickles, archives, unknown binaries, remote
code and files with weight-like names (.bin, .pt, .ckpt, ...) that are not safetensors become
"refuse" findings; nothing is ever deserialised. A file that claims to be safetensors (by extension or
by a plausible header) and is not a pickle is parsed strictly, and a malformed one raises InputError.

Kinds: safetensors, json, text, python, pickle, zip, 7z, archive (gzip/bz2/xz/zstd/tar), gguf, numpy,
sentencepiece, image, empty, unknown.
"""

from __future__ import annotations

import ast
import codecs
import dataclasses
import errno
import math
import os
import pathlib
import struct
import zipfile

from guard.artifacts import pickle_scan
from guard.artifacts.findings import Finding
from guard.artifacts.identity import file_identity, open_regular
from guard.artifacts.json_text import find_keys, parse_json
from guard.artifacts.policy import ReadPolicy
from guard.artifacts.safetensors_header import SafetensorsHeader, parse_header
from guard.errors import InputError

KINDS = ("safetensors", "json", "text", "python", "pickle", "zip", "7z", "archive", "gguf", "numpy", "sentencepiece",
         "image", "empty", "unknown")
# Names loaders treat as weights (torch.load, joblib, np.load, h5py, flax): accepted only as safetensors, or
# for .npy a plain-number numpy array (which np.load reads without pickle).
WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".dill", ".npy", ".npz", ".h5",
                   ".hdf5", ".keras", ".msgpack")
# JSON keys that make transformers fetch and run code from the repository (trust_remote_code).
REMOTE_CODE_KEYS = {"auto_map": "remote-code-auto-map", "custom_pipelines": "remote-code-custom-pipeline"}

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip"), (b"PK\x07\x08", "zip"),
    (b"7z\xbc\xaf\x27\x1c", "7z"), (b"GGUF", "gguf"), (b"\x93NUMPY", "numpy"),
    (b"\x89PNG\r\n\x1a\n", "image"), (b"\xff\xd8\xff", "image"), (b"GIF87a", "image"), (b"GIF89a", "image"),
    (b"\x1f\x8b", "archive"), (b"BZh", "archive"), (b"\xfd7zXZ\x00", "archive"), (b"\x28\xb5\x2f\xfd", "archive"),
)
_TEXT_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class Sniffed:
    kind: str
    findings: tuple[Finding, ...] = ()
    header: SafetensorsHeader | None = None
    json_value: object = None  # kept only when asked (config.json, index files)
    size: int = 0
    identity: tuple[int, ...] = ()  # guard.artifacts.identity.file_identity of the file that was read


def sniff_file(root: pathlib.Path, relpath: str, *, policy: ReadPolicy, keep_json: bool = False) -> Sniffed:
    path = root / relpath
    try:
        with open_regular(root, relpath, follow_symlinks=policy.allow_symlinks) as f:
            st = os.fstat(f.fileno())
            head = f.read(512)
            f.seek(0)
            sniffed = _sniff_open(f, head, st.st_size, relpath, policy, keep_json, display=str(path))
            return dataclasses.replace(sniffed, size=st.st_size, identity=file_identity(st))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError("a symlink appeared after the directory was listed", path=path, rule="path-symlink") from None
        raise InputError(f"cannot read: {exc.strerror}", path=path, rule="path-unreadable") from None


def _refuse(rule: str, relpath: str, message: str) -> Finding:
    return Finding("refuse", rule, relpath, message)


def _sniff_open(f, head: bytes, size: int, relpath: str, policy: ReadPolicy, keep_json: bool, display: str) -> Sniffed:
    sniffed = _identify(f, head, size, relpath, policy, keep_json, display)
    if relpath.lower().endswith(WEIGHT_SUFFIXES) and sniffed.kind not in ("safetensors", "numpy") and not any(
            finding.severity == "refuse" for finding in sniffed.findings):
        refusal = _refuse("weights-not-safetensors", relpath,
                          f"a weights name ({os.path.splitext(relpath)[1]}) holding {sniffed.kind} content; "
                          "guard accepts weights only as safetensors")
        sniffed = dataclasses.replace(sniffed, findings=(*sniffed.findings, refusal))
    return sniffed


def _identify(f, head: bytes, size: int, relpath: str, policy: ReadPolicy, keep_json: bool, display: str) -> Sniffed:
    if size == 0:
        return Sniffed("empty")
    # First, what CPython's unpickler would do with these bytes: whatever else a file is, if an
    # unpickler would import or call something from it, it is a pickle.
    scan = pickle_scan.scan_pickle(f, budget=policy.max_pickle_scan_bytes, size=size)
    f.seek(0)
    claims_safetensors = relpath.endswith(".safetensors") or _looks_like_safetensors(head, size)
    if scan.is_pickle:
        header = None
        if claims_safetensors:
            try:
                header = parse_header(f, file_size=size, policy=policy, where=display)
            except InputError:
                pass  # a pickle renamed to .safetensors is a pickle (refused, exit 1), not malformed input
        if header is not None:
            finding = _refuse("pickle-polyglot", relpath, "valid safetensors that is also a " + pickle_scan.describe(scan))
            return Sniffed("safetensors", (finding,), header=header)
        rule = "pickle-unsafe-global" if scan.unsafe_globals else "pickle-file"
        return Sniffed("pickle", (_refuse(rule, relpath, pickle_scan.describe(scan) + "; guard never unpickles"),))
    magic = next((kind for prefix, kind in _MAGIC if head.startswith(prefix)), None)
    if magic is None and len(head) > 262 and head[257:262] == b"ustar":
        magic = "archive"
    if magic == "zip":
        return Sniffed("zip", (_scan_zip(f, relpath, policy),))
    if magic == "7z":
        return Sniffed("7z", (_refuse("archive-7z", relpath, "7z archive: may wrap a pickle (nullifAI); not opened"),))
    if magic == "archive":
        return Sniffed("archive", (_refuse("archive-compressed", relpath, "compressed or tar archive; not opened"),))
    if magic == "gguf":
        return Sniffed("gguf", (Finding("warn", "gguf-file", relpath, "GGUF file: not read by guard (chat templates unchecked)"),))
    if magic == "numpy":
        return Sniffed("numpy", (_numpy_finding(head, size, relpath),))
    if magic == "image":
        return Sniffed("image")
    if claims_safetensors:
        header = parse_header(f, file_size=size, policy=policy, where=display)
        return Sniffed("safetensors", tuple(Finding("warn", rule, relpath, msg) for rule, msg in header.warnings),
                       header=header)
    if head[:1] == b"\x0a" and _is_sentencepiece(f, size):
        return Sniffed("sentencepiece")
    f.seek(0)
    if not _is_utf8_text(f):
        return Sniffed("unknown", (_refuse("unknown-binary", relpath, "binary content of no known format"),))
    if relpath.endswith(".py"):
        return Sniffed("python", (Finding("warn", "remote-code-file", relpath, "Python source: custom code that trust_remote_code would run"),))
    if relpath.endswith(".json") or head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{":
        sniffed = _sniff_json(f, size, relpath, policy, keep_json)
        if sniffed.kind == "json" or relpath.endswith(".json"):
            return sniffed
    return Sniffed("text")


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= size - 8 and head[8:9] in (b"{", b" ", b"\t", b"\r", b"\n")


def _is_sentencepiece(f, size: int) -> bool:
    """A sentencepiece ModelProto: protobuf whose top-level fields are all length-delimited fields 1-5
    (pieces, trainer/normalizer specs, self-test data, denormalizer spec) that tile the file exactly."""
    pos = 0
    seen_pieces = False
    while pos < size:
        f.seek(pos)
        key, pos = _varint(f, pos)
        if key is None or key & 7 != 2 or not 1 <= key >> 3 <= 5:
            return False
        seen_pieces |= key >> 3 == 1
        length, pos = _varint(f, pos)
        if length is None or pos + length > size:
            return False
        pos += length
    return seen_pieces and pos == size


def _varint(f, pos: int) -> tuple[int | None, int]:
    value = 0
    for shift in range(0, 64, 7):
        byte = f.read(1)
        if not byte:
            return None, pos
        pos += 1
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value, pos
    return None, pos


def _is_utf8_text(f) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    try:
        while chunk := f.read(_TEXT_CHUNK):
            if b"\x00" in chunk:
                return False
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True



def _sniff_json(f, size: int, relpath: str, policy: ReadPolicy, keep_json: bool) -> Sniffed:
    if size > policy.max_json_bytes:
        # Too large to parse within the limits, so its remote-code keys cannot be checked: refused.
        return Sniffed("json", (_refuse("json-too-large", relpath, f"{size} bytes, over the JSON cap of "
                                        f"{policy.max_json_bytes}: its remote-code keys cannot be checked"),))
    f.seek(0)
    try:
        value, duplicates = parse_json(f.read().decode("utf-8-sig"))
    except (ValueError, RecursionError) as exc:
        return Sniffed("text", (Finding("warn", "json-malformed", relpath, f"not valid JSON: {str(exc)[:200]}"),))
    findings = []
    if duplicates:
        findings.append(_refuse("json-duplicate-key", relpath, f"duplicate key {duplicates[0][:200]!r}: readers "
                                "disagree on which value counts (Python keeps the last)"))
    for key, targets in find_keys(value, frozenset(REMOTE_CODE_KEYS)):
        shown = ", ".join(f"{k}={v}" for k, v in targets.items()) if isinstance(targets, dict) else str(targets)
        findings.append(_refuse(REMOTE_CODE_KEYS[key], relpath,
                                f"{key} asks for custom code (trust_remote_code): {shown[:300]}"))
    return Sniffed("json", tuple(findings), json_value=value if keep_json else None)


def _numpy_finding(head: bytes, size: int, relpath: str) -> Finding:
    """Read the .npy header literal (a bounded dict literal): object dtypes hold pickles; anything else
    must be a plain array whose data fills the file exactly (no room for a second payload)."""
    meta = None
    try:
        major = head[6]
        if major == 1:
            (hlen,) = struct.unpack("<H", head[8:10])
            start = 10
        else:
            (hlen,) = struct.unpack("<I", head[8:12])
            start = 12
        literal = head[start:start + hlen].decode("latin-1")
        meta = ast.literal_eval(literal) if len(literal) == hlen else None
        descr = str(meta.get("descr")) if isinstance(meta, dict) else None
    except (ValueError, SyntaxError, IndexError, struct.error, MemoryError, RecursionError):
        descr = None
    if descr is None:
        return _refuse("numpy-unreadable", relpath, "numpy file with an unreadable header")
    if "O" in descr:
        return _refuse("numpy-object-dtype", relpath, f"numpy array of dtype {descr!r} holds pickled objects")
    expected = _numpy_bytes(meta, start + hlen)
    if expected != size:
        return _refuse("numpy-unreadable", relpath, f"numpy header describes {expected} bytes, the file has {size}")
    return Finding("warn", "numpy-file", relpath, f"numpy array (dtype {descr}); guard reads safetensors only")


def _numpy_bytes(meta: dict, data_start: int) -> int | None:
    import numpy as np

    shape = meta.get("shape")
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        return None
    try:
        itemsize = np.dtype(meta["descr"]).itemsize
    except (TypeError, ValueError, KeyError, SyntaxError):
        return None
    return data_start + itemsize * math.prod(shape)


def _scan_zip(f, relpath: str, policy: ReadPolicy) -> Finding:
    """A zip is refused (torch checkpoints keep a pickle in data.pkl); say which pickles and globals it holds."""
    try:
        with zipfile.ZipFile(f) as zf:
            infos = zf.infolist()
            pickles = []
            budget = policy.max_pickle_scan_bytes  # shared by all members: a zip bomb costs no more than one pickle
            for info in infos[:10_000]:
                if info.is_dir() or budget <= 0:
                    continue
                with zf.open(info) as member:
                    scan = pickle_scan.scan_pickle(member, budget=budget, size=info.file_size)
                budget -= scan.consumed
                if scan.is_pickle:
                    pickles.append((info.filename, scan))
    except Exception as exc:  # noqa: BLE001 - zipfile/zlib raise many types; the zip is refused either way
        return _refuse("zip-file", relpath, f"zip archive that cannot be listed ({type(exc).__name__}); refused unopened")
    if not pickles:
        return _refuse("zip-file", relpath, f"zip archive of {len(infos)} entries (no pickle found by content); guard reads safetensors only")
    unsafe = [(name, s) for name, s in pickles if s.unsafe_globals]
    name, scan = (unsafe or pickles)[0]
    rule = "pickle-unsafe-global" if unsafe else "pickle-file"
    return _refuse(rule, relpath, f"zip archive (torch checkpoint?) with pickle {name}: {pickle_scan.describe(scan)}")
