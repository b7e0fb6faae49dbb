"""Harmless pickle payloads, one per attack class of the reference note, written opcode by opcode.

Every payload's only effect, if something ever unpickled it, is to create an empty marker file
(`open(marker, "w")` reached by some route), so a test can prove guard never ran it: the marker must
not exist after `guard inspect`. Nothing here pickles a live object; the bytes are assembled by hand.

Classes covered: direct globals (GLOBAL, STACK_GLOBAL through the memo, INST, protocol 0 text),
indirect resolvers (pkgutil.resolve_name, importlib.import_module + operator.methodcaller, pydoc.locate,
operator.methodcaller on pathlib), nested loaders (pickle.loads of an inner payload), a payload followed
by a broken stream, stacked pickles (legacy torch), protocol-0 text that only a CPython-exact walk
recognises (POP of a MARK, strtol integers, a FRAME boundary inside a line), torch zip checkpoints,
7z-wrapped, and renames (.safetensors, .txt, .bin, README.md, config.json).
"""

from __future__ import annotations

import dataclasses
import io
import os
import pathlib
import struct
import zipfile
from collections.abc import Callable

PROTO = b"\x80"
STOP = b"."
REDUCE = b"R"
MARK = b"("
TUPLE = b"t"
TUPLE1, TUPLE2 = b"\x85", b"\x86"
STACK_GLOBAL = b"\x93"


def proto(n: int) -> bytes:
    return PROTO + bytes([n])


def global_(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def ustr(s: str) -> bytes:
    data = s.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def binbytes(data: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(data)) + data


def binput(i: int) -> bytes:
    return b"q" + bytes([i])


def binget(i: int) -> bytes:
    return b"h" + bytes([i])


def _open_args(marker: str) -> bytes:
    return ustr(marker) + ustr("w") + TUPLE2


def _check_marker(marker: str) -> str:
    if any(c in marker for c in "'\n\\"):
        raise ValueError("marker path must not contain quotes, backslashes or newlines")
    return marker


# ---- raw payload builders: marker path -> pickle bytes -------------------------------------------------

def direct_global(marker: str) -> bytes:
    """GLOBAL builtins.open, REDUCE."""
    return proto(2) + global_("builtins", "open") + _open_args(marker) + REDUCE + STOP


def stack_global_memo(marker: str) -> bytes:
    """STACK_GLOBAL whose module and name come back from the memo (defeats naive 'previous two strings')."""
    return (proto(4) + ustr("builtins") + binput(0) + ustr("open") + binput(1) + b"0" + b"0"  # POP both
            + binget(0) + binget(1) + STACK_GLOBAL + _open_args(marker) + REDUCE + STOP)


def protocol0_text(marker: str) -> bytes:
    """Pure ASCII (protocol 0): looks like a text file."""
    m = _check_marker(marker)
    return f"cbuiltins\nopen\n(S'{m}'\nS'w'\ntR.".encode()


def inst_opcode(marker: str) -> bytes:
    """INST: import and call in one opcode."""
    m = _check_marker(marker)
    return f"(S'{m}'\nS'w'\nibuiltins\nopen\n.".encode()


def pkgutil_resolve_name(marker: str) -> bytes:
    """pkgutil.resolve_name('builtins:open') (GHSA-vvpj-8cmc-gx39), then call the result."""
    return (proto(2) + global_("pkgutil", "resolve_name") + ustr("builtins:open") + TUPLE1 + REDUCE
            + _open_args(marker) + REDUCE + STOP)


def importlib_methodcaller(marker: str) -> bytes:
    """operator.methodcaller('open', marker, 'w')(importlib.import_module('builtins'))."""
    caller = global_("operator", "methodcaller") + MARK + ustr("open") + ustr(marker) + ustr("w") + TUPLE + REDUCE
    module = global_("importlib", "import_module") + ustr("builtins") + TUPLE1 + REDUCE
    return proto(2) + caller + module + TUPLE1 + REDUCE + STOP


def pydoc_locate(marker: str) -> bytes:
    """pydoc.locate('builtins.open'), then call the result."""
    return (proto(2) + global_("pydoc", "locate") + ustr("builtins.open") + TUPLE1 + REDUCE
            + _open_args(marker) + REDUCE + STOP)


def methodcaller_touch(marker: str) -> bytes:
    """operator.methodcaller('touch')(pathlib.Path(marker))."""
    caller = global_("operator", "methodcaller") + ustr("touch") + TUPLE1 + REDUCE
    path = global_("pathlib", "Path") + ustr(marker) + TUPLE1 + REDUCE
    return proto(2) + caller + path + TUPLE1 + REDUCE + STOP


def nested_loads(marker: str) -> bytes:
    """pickle.loads(<direct payload>): the outer stream holds only bytes and one 'harmless-looking' call."""
    return proto(3) + global_("pickle", "loads") + binbytes(direct_global(marker)) + TUPLE1 + REDUCE + STOP


def broken_after_payload(marker: str) -> bytes:
    """The payload runs, then the stream breaks (invalid opcode, no STOP): scanners that give up miss it."""
    return direct_global(marker)[:-1] + b"\xff\xfe garbage"


def pop_mark_text(marker: str) -> bytes:
    """Protocol 0, pure ASCII, starting with MARK POP: CPython pops the mark and goes on (issue 10, hole 1)."""
    return b"(0" + protocol0_text(marker)


def strtol_int_text(marker: str) -> bytes:
    """An INT argument CPython reads with strtol base 0 (`0x1`), then the payload (issue 10, hole 1)."""
    return b"I0x1\n0" + protocol0_text(marker)


def frame_dropped_line(marker: str) -> bytes:
    """A FRAME whose end falls inside the GLOBAL's module line: unpickling from a file without peek
    (io.BytesIO) drops the frame's last byte and imports `builtins`; from bytes it would be `Xbuiltins`."""
    return (proto(4) + b"\x95" + struct.pack("<Q", 2) + b"cX" + b"builtins\nopen\n" + _open_args(marker)
            + REDUCE + STOP)


def stacked_legacy(marker: str) -> bytes:
    """Legacy torch layout: a benign first pickle (a magic number), the payload in the second."""
    return proto(2) + b"K\x01" + STOP + direct_global(marker)


RAW_PAYLOADS: dict[str, tuple[str, Callable[[str], bytes]]] = {
    # name -> (attack class, builder)
    "direct-global": ("direct globals", direct_global),
    "stack-global-memo": ("direct globals", stack_global_memo),
    "protocol0-text": ("direct globals", protocol0_text),
    "inst-opcode": ("direct globals", inst_opcode),
    "pkgutil-resolve-name": ("indirect resolvers", pkgutil_resolve_name),
    "importlib-methodcaller": ("indirect resolvers", importlib_methodcaller),
    "pydoc-locate": ("indirect resolvers", pydoc_locate),
    "methodcaller-touch": ("indirect resolvers", methodcaller_touch),
    "nested-loads": ("nested loaders", nested_loads),
    "broken-after-payload": ("parser differentials", broken_after_payload),
    "stacked-legacy": ("parser differentials", stacked_legacy),
    "pop-mark-text": ("parser differentials", pop_mark_text),
    "strtol-int-text": ("parser differentials", strtol_int_text),
    "frame-dropped-line": ("parser differentials", frame_dropped_line),
}


# ---- containers ----------------------------------------------------------------------------------------

def torch_zip(payload: bytes) -> bytes:
    """A torch-style zip checkpoint (archive/data.pkl, version, byteorder) carrying `payload`."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/version", "3\n")
    return buf.getvalue()


def seven_zip(inner_name: str, inner: bytes) -> bytes:
    """`inner` wrapped in a 7z archive ("nullifAI"), via py7zr."""
    import py7zr

    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, "w") as archive:
        archive.writestr(inner, inner_name)
    return buf.getvalue()


@dataclasses.dataclass(frozen=True)
class PayloadCase:
    name: str
    attack_class: str
    relpath: str  # the payload's file inside the case directory
    raw_name: str  # which RAW_PAYLOADS entry it carries
    container: str  # "raw", "torch-zip", "7z"


def _case_files(marker: str) -> list[tuple[PayloadCase, bytes]]:
    out = []
    for name, (attack_class, build) in RAW_PAYLOADS.items():
        out.append((PayloadCase(name, attack_class, f"{name}.pkl", name, "raw"), build(marker)))
    zipped = torch_zip(direct_global(marker))
    out += [
        (PayloadCase("torch-zip", "torch zip", "pytorch_model.bin", "direct-global", "torch-zip"), zipped),
        (PayloadCase("torch-zip-as-safetensors", "renamed", "model.safetensors", "direct-global", "torch-zip"), zipped),
        (PayloadCase("7z-wrapped-torch", "7z-wrapped", "model.bin", "direct-global", "7z"), seven_zip("archive.pt", zipped)),
        (PayloadCase("pickle-as-safetensors", "renamed", "model.safetensors", "direct-global", "raw"), direct_global(marker)),
        (PayloadCase("pickle-as-txt", "renamed", "vocab.txt", "protocol0-text", "raw"), protocol0_text(marker)),
        (PayloadCase("pickle-as-bin", "renamed", "pytorch_model.bin", "pkgutil-resolve-name", "raw"), pkgutil_resolve_name(marker)),
        (PayloadCase("text-pickle-as-bin", "renamed", "pytorch_model.bin", "pop-mark-text", "raw"), pop_mark_text(marker)),
        (PayloadCase("text-pickle-as-readme", "renamed", "README.md", "strtol-int-text", "raw"), strtol_int_text(marker)),
        (PayloadCase("pickle-as-config", "renamed", "config.json", "importlib-methodcaller", "raw"), importlib_methodcaller(marker)),
        (PayloadCase("broken-as-safetensors", "renamed", "model.safetensors", "broken-after-payload", "raw"),
         broken_after_payload(marker)),
    ]
    return out


def write_payload_dirs(out_dir: str | os.PathLike, *, marker: str | os.PathLike) -> list[PayloadCase]:
    """One model directory per case under `out_dir/<name>/`, each holding a config.json and the payload file."""
    marker = _check_marker(str(marker))
    out = pathlib.Path(out_dir)
    cases = []
    for case, data in _case_files(marker):
        case_dir = out / case.name
        case_dir.mkdir(parents=True)
        if case.relpath != "config.json":
            (case_dir / "config.json").write_text('{"model_type": "llama", "architectures": ["LlamaForCausalLM"]}')
        (case_dir / case.relpath).write_bytes(data)
        cases.append(case)
    return cases
