"""Pickle opcode walk: what CPython's unpickler would do with a byte stream, without ever unpickling it.

A symbolic copy of CPython 3.11's C unpickler (`Modules/_pickle.c`, the `pickle.Unpickler` every loader
uses): the same opcode table, the same argument parsing (INT through C `strtol` with base 0 and then
`int(s, 0)`, FLOAT through `PyOS_string_to_double`, quoted STRING escapes, ASCII/UTF-8 decoding of
names), the same object stack with marks kept apart from it (a POP on a mark pops the mark; no pop may
reach below the last mark), and the same memo. It records every global a real unpickler would resolve
and every call it would make, and stops exactly where CPython raises. Where CPython's behaviour
depends on the objects involved (a `persistent_load`, out-of-band buffers, the copyreg extension
registry, `__setitem__` of an imported object) the walk assumes the loader goes on, so it can only
report more than a given loader would do, never less. `tests/artifacts/test_pickle_differential.py`
checks that claim against `pickle.Unpickler` on generated opcode streams (protocols 0-5).

Classification (`PickleScan.is_pickle`): a stream is a pickle when an unpickler would act on it:
resolve a global or make a call (even if the stream breaks afterwards: the payload has already run,
GHSA-9gvj-pp9x-gcfr), or load complete pickles up to the end of the data. A walk that runs out of
budget while the stream is still valid is a pickle too (fail closed). Bytes that merely begin like a
pickle and break before doing anything (a safetensors header length of 0x0580 reads as PROTO 5), or
text whose first bytes CPython could load as plain data (`N.` then prose), are not.

Memory stays small whatever the stream claims: large arguments are skipped (by seek when the stream
allows it), never buffered, and the walk stops at a byte, operation, stack and memo budget.
"""

from __future__ import annotations

import codecs
import dataclasses
import io
import math
import pickletools
import re
import warnings

# Globals a plain torch/numpy checkpoint needs. Anything else is reported as unsafe. guard refuses
# pickle files either way (it never unpickles); the list only sorts ordinary checkpoints from payloads.
SAFE_GLOBALS: frozenset[str] = frozenset({
    "collections.OrderedDict", "_codecs.encode",  # bytes in protocol < 3 pickles
    *(f"{m}.{n}" for m in ("builtins", "__builtin__") for n in ("set", "frozenset", "slice", "complex")),
    "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
    "torch.Size", "torch.device",
    *(f"torch.{k}Storage" for k in ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool")),
    *(f"torch.{d}" for d in ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")),
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct", "numpy.ndarray", "numpy.dtype",
})

DYNAMIC = "<dynamic>"  # a STACK_GLOBAL whose module or name is not a literal string guard can read
HIGHEST_PROTOCOL = 5
_MAX_KEPT_STRING = 4096  # longer strings are kept as "some str": no real module or attribute name is that long
_MAX_LINE = 1 << 16  # longer text arguments are skipped, not buffered (their value is then unknown)
_MAX_MEMO = 1 << 20
_MAX_STACK = 1 << 20
_MAX_OPS = 1_000_000  # about a second of walking; real checkpoints' pickles are far shorter
_SKIP_CHUNK = 1 << 20
_SSIZE_MAX = (1 << 63) - 1
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1  # C long on the 64-bit platforms guard runs on
_C_SPACE = b" \t\n\v\f\r"
_INT_CHARS = frozenset(b"0123456789abcdefABCDEFxXoObB_+-" + _C_SPACE)
_FLOAT = re.compile(rb"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:inf(?:inity)?|nan))")
_INF_OR_NAN = re.compile(rb"[+-]?(?i:inf(?:inity)?|nan)")


@dataclasses.dataclass(frozen=True)
class PickleScan:
    is_pickle: bool
    protocol: int | None  # PROTO of the first stream, if it has one
    globals: tuple[str, ...]  # "module.name" in first-seen order; DYNAMIC for names that are not literals
    calls: int  # calls an unpickler would make (on imported objects)
    stopped_cleanly: bool  # the first stream reached STOP
    error: str | None  # why the walk stopped early, if it did
    error_offset: int | None
    truncated: bool  # a budget ran out while the stream was still valid
    consumed: int = 0  # bytes read from the stream
    streams: int = 0  # complete pickles (STOP reached) one after the other
    complete: bool = False  # complete pickles cover the data exactly, up to its end

    @property
    def unsafe_globals(self) -> tuple[str, ...]:
        return tuple(g for g in self.globals if g not in SAFE_GLOBALS)


# ---- the values the symbolic machine tracks ------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Str:
    """An exact str (STACK_GLOBAL accepts only those); text None when too long to keep."""
    text: str | None


class _Data:
    """Plain data that is certainly not an exact str: numbers, bytes, containers, None, booleans."""


class _Any:
    """Anything at all (a global, the result of a call, a persistent load): it may even be a str."""


DATA, ANY = _Data(), _Any()


class _Broken(Exception):
    """CPython's unpickler raises here."""


class _OutOfBudget(Exception):
    """The walk's own limits ran out; the stream was still valid."""


class _EndOfData(Exception):
    """No byte left where the next pickle would start."""


class _Reader:
    """Bounded reads over a binary stream, with CPython's two ways of reading a FRAME.

    CPython reads a frame's bytes into a buffer. Unpickling from bytes (`pickle.loads`, or a file with
    `peek`, such as `open(path, "rb")`) sees the data as contiguous; unpickling from a file without
    `peek` (an `io.BytesIO`) drops the rest of the frame when a fixed-size read or a line crosses its
    end, and goes on reading after it. `drop_frame_rest` selects the second behaviour; `crossed`
    records that a read crossed a frame's end, where the two behaviours part.
    `size`, when known, lets a declared length that runs past the end fail as CPython fails ("pickle
    data was truncated") instead of exhausting the budget.
    """

    def __init__(self, f, *, budget: int, size: int | None, drop_frame_rest: bool = False):
        self.f = f
        self.start = _tell(f)
        self.pos = 0
        self.budget = budget
        self.size = size
        self.read_bytes = 0
        self.drop_frame_rest = drop_frame_rest
        self.frame_end: int | None = None
        self.crossed = False
        # Zip members "seek" by decompressing: skip them by reading, within the budget.
        self.cheap_seek = size is not None and _seekable(f) and not hasattr(f, "_decompressor")

    def _charge(self, n: int) -> None:
        if self.read_bytes + n > self.budget:
            raise _OutOfBudget()
        self.read_bytes += n

    def _check_available(self, n: int) -> None:
        if self.size is not None and self.pos + n > self.size:
            raise _Broken("pickle data was truncated")

    def _buffered_read(self, n: int, *, into: bool = False) -> None:
        """Frame bookkeeping before a read of n bytes (`into`: CPython's _Unpickler_ReadInto, used for
        BINBYTES and BYTEARRAY8 payloads, which uses the rest of the frame and goes on in the file)."""
        if self.frame_end is None:
            return
        if self.pos + n <= self.frame_end:
            return
        if self.pos < self.frame_end and not into:
            self.crossed = True
            if self.drop_frame_rest:
                self._skip(self.frame_end - self.pos)
        self.frame_end = None

    def read(self, n: int) -> bytes:
        self._buffered_read(n)
        return self._read(n)

    def _read(self, n: int) -> bytes:
        self._check_available(n)
        self._charge(n)
        data = self.f.read(n)
        self.pos += len(data)
        if len(data) != n:
            raise _Broken("pickle data was truncated")
        return data

    def read_opcode(self) -> bytes:
        """The next opcode byte, or b"" at the end of the data."""
        self._buffered_read(1)
        if self.size is not None and self.pos >= self.size:
            return b""
        self._charge(1)
        code = self.f.read(1)
        self.pos += len(code)
        return code

    def skip(self, n: int, *, into: bool) -> None:
        """An argument that is skipped, never kept (`into`: a BINBYTES-style payload, see _buffered_read)."""
        self._buffered_read(n, into=into)
        self._skip(n)

    def _skip(self, n: int) -> None:
        self._check_available(n)
        if self.cheap_seek:
            self.f.seek(n, io.SEEK_CUR)
            self.pos += n
            return
        while n:
            n -= len(self._read(min(n, _SKIP_CHUNK)))

    def start_frame(self, n: int) -> None:
        """FRAME of n bytes: buffered as a whole (unless it fits in the frame being read)."""
        self._buffered_read(n)
        self._check_available(n)
        if self.frame_end is None:
            self.frame_end = self.pos + n

    def readline(self) -> bytes | None:
        """One line including its '\\n' (CPython requires the newline); None if longer than _MAX_LINE
        (the line is then skipped through its newline, never kept)."""
        if self.frame_end is not None and self.pos >= self.frame_end:
            self.frame_end = None
        if self.frame_end is None:
            return self._scan_line(None, b"")[0]
        kept, found = self._scan_line(self.frame_end - self.pos, b"")
        if found:
            return kept
        self.crossed, self.frame_end = True, None
        # Bytes input: the line goes on after the frame. A file without peek: CPython drops the partial
        # line with the rest of the frame and reads a whole new line after it.
        return self._scan_line(None, b"" if self.drop_frame_rest else kept)[0]

    def _scan_line(self, bound: int | None, kept: bytes | None) -> tuple[bytes | None, bool]:
        """Read until '\\n', or until `bound` bytes are read. `kept`: the line so far (None once longer
        than _MAX_LINE). Returns (line kept, whether the newline was found)."""
        remaining = bound
        while remaining != 0:
            limit = _MAX_LINE + 1 if remaining is None else min(_MAX_LINE + 1, remaining)
            if self.size is not None:
                limit = min(limit, self.size - self.pos)
            if limit <= 0:
                raise _Broken("pickle data was truncated (line without a newline)")
            limit = min(limit, self.budget - self.read_bytes)
            if limit <= 0:
                raise _OutOfBudget()
            part = self.f.readline(limit)
            self.pos += len(part)
            self.read_bytes += len(part)
            if not part.endswith(b"\n") and len(part) < limit:
                raise _Broken("pickle data was truncated (line without a newline)")
            if remaining is not None:
                remaining -= len(part)
            if kept is not None:
                kept = kept + part if len(kept) + len(part) <= _MAX_LINE + 1 else None
            if part.endswith(b"\n"):
                return kept, True
        return kept, False

    def end_stream(self) -> None:
        """After STOP: the next pickle is read by a new Unpickler, with an empty buffer. A file without
        peek has already consumed the whole frame, so the next pickle starts after it."""
        if self.frame_end is not None and self.pos < self.frame_end:
            self.crossed = True
            if self.drop_frame_rest:
                self._skip(self.frame_end - self.pos)
        self.frame_end = None

    def rewind(self) -> bool:
        """Back to where the walk started, for a second walk; False if the stream cannot seek."""
        if not _seekable(self.f) or self.start is None:
            return False
        self.f.seek(self.start)
        return True


def _tell(f) -> int | None:
    try:
        return f.tell()
    except (AttributeError, OSError, ValueError):
        return None


def _seekable(f) -> bool:
    try:
        return bool(f.seekable())
    except (AttributeError, OSError, ValueError):
        return False


# ---- argument parsing exactly as _pickle.c does it -------------------------------------------------------

def _c_string(line: bytes) -> bytes:
    """What C string functions see of a line: everything before the first NUL."""
    return line.split(b"\0", 1)[0]


def _py_long_ok(text: bytes, base: int) -> int | None:
    """PyLong_FromString(text, NULL, base) on a C string: the value, or None where CPython raises."""
    text = _c_string(text)
    if not text or any(c not in _INT_CHARS for c in text):
        return None
    try:
        return int(text.decode("ascii"), base)
    except ValueError:
        return None


def _digit(c: int) -> int:
    if 0x30 <= c <= 0x39:
        return c - 0x30
    if 0x61 <= c <= 0x7A:
        return c - 0x61 + 10
    if 0x41 <= c <= 0x5A:
        return c - 0x41 + 10
    return 99


def _c_strtol_ok(line: bytes) -> bool:
    """strtol(s, &end, 0) read a long without overflow and stopped at the newline or the string's end."""
    s = _c_string(line)
    n, i = len(s), 0
    while i < n and s[i] in _C_SPACE:
        i += 1
    negative = i < n and s[i] == 0x2D
    if i < n and s[i] in b"+-":
        i += 1
    base = 10
    if i < n and s[i] == 0x30:
        if i + 2 < n and s[i + 1] in b"xX" and _digit(s[i + 2]) < 16:
            base, i = 16, i + 2
        else:
            base = 8
    start, value = i, 0
    while i < n and _digit(s[i]) < base:
        value = value * base + _digit(s[i])
        i += 1
    if i == start:
        return n == 0 or s[0] == 0x0A  # no conversion: endptr is the string's start (a NUL there passes)
    if not _LONG_MIN <= (-value if negative else value) <= _LONG_MAX:
        return False  # ERANGE
    return i == n or s[i] == 0x0A


def _float_ok(line: bytes) -> bool:
    """PyOS_string_to_double with an OverflowError, then the endptr check of load_float."""
    s = _c_string(line)
    match = _FLOAT.match(s)
    if match is None:
        return False
    end = match.end()
    if end != len(s) and s[end] != ord("\n"):
        return False
    literal = match.group()
    return _INF_OR_NAN.fullmatch(literal) is not None or not math.isinf(float(literal))


def _decode(data: bytes, encoding: str, what: str) -> str:
    try:
        if encoding == "utf-8-surrogatepass":
            return data.decode("utf-8", "surrogatepass")
        return data.decode(encoding, "strict")
    except UnicodeDecodeError:
        raise _Broken(f"{what} is not valid {encoding}") from None


def _str_value(text: str) -> _Str:
    return _Str(text if len(text) <= _MAX_KEPT_STRING else None)


def _quoted_string(line: bytes) -> _Str:
    """STRING: quoted with ' or ", backslash escapes (PyBytes_DecodeEscape), then ASCII (the default encoding)."""
    body = line[:-1]
    if not (len(body) >= 2 and body[0] == body[-1] and body[0] in b"'\""):
        raise _Broken("the STRING opcode argument must be quoted")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # CPython only warns about unknown escapes
            raw = codecs.escape_decode(body[1:-1])[0]
    except ValueError as exc:
        raise _Broken(f"bad STRING escape: {exc}") from None
    return _str_value(_decode(raw, "ascii", "STRING"))


def _raw_unicode(line: bytes) -> _Str:
    try:
        return _str_value(codecs.raw_unicode_escape_decode(line[:-1])[0])
    except UnicodeDecodeError as exc:
        raise _Broken(f"bad UNICODE argument: {exc.reason}") from None


# ---- the machine ---------------------------------------------------------------------------------------

class _Machine:
    def __init__(self, reader: _Reader, seen: dict[str, None]):
        self.r = reader
        self.seen = seen
        self.calls = 0
        self.ops = 0
        self.op_offset = 0
        self.first_protocol: int | None = None
        self.previous_memos: list[dict] = []
        self.stack: list = []
        self.marks: list[int] = []  # stack heights at each MARK (CPython keeps marks apart from objects)
        self.memo: dict[int, object] = {}
        self.memo_wild = False

    # stack primitives with CPython's fence: nothing below the last mark may be popped

    @property
    def fence(self) -> int:
        return self.marks[-1] if self.marks else 0

    def above_fence(self) -> int:
        return len(self.stack) - self.fence

    def need(self, n: int) -> None:
        if self.above_fence() < n:
            raise _Broken("unexpected MARK found" if self.marks else "unpickling stack underflow")

    def pop(self):
        self.need(1)
        return self.stack.pop()

    def push(self, value) -> None:
        self.stack.append(value)
        if len(self.stack) > _MAX_STACK:
            raise _OutOfBudget()

    def marker(self) -> int:
        if not self.marks:
            raise _Broken("could not find MARK")
        return self.marks.pop()

    def pop_to(self, start: int) -> list:
        """Pdata_poptuple/poplist: every item from `start` up (start may not lie below the fence)."""
        if start < self.fence:
            raise _Broken("unpickling stack underflow")
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def resolve(self, name: str) -> None:
        self.seen.setdefault(name, None)

    def call_on(self, target) -> None:
        """A call into an object an unpickler could only have obtained by importing something."""
        if target is ANY:
            self.calls += 1

    def memo_put(self, key: int | None, value) -> None:
        if key is None:  # an index guard could not read: from now on any memo slot may hold anything
            self.memo_wild = True
            return
        if key not in self.memo and len(self.memo) >= _MAX_MEMO:
            raise _OutOfBudget()
        self.memo[key] = value

    def memo_get(self, key: int | None):
        if key is None or self.memo_wild or any(key in older for older in self.previous_memos):
            return ANY  # (a loader that reuses one Unpickler keeps the memo of earlier loads)
        if key in self.memo:
            return self.memo[key]
        if self.previous_memos:
            return ANY
        raise _Broken(f"Memo value not found at index {key}")

    def run_stream(self) -> None:
        """One pickle, from its first opcode to STOP. Raises _EndOfData if there is no byte at all,
        _Broken where CPython raises, _OutOfBudget where the walk's limits end it."""
        self.stack, self.marks, self.memo, self.memo_wild = [], [], {}, False
        first = True
        while True:
            self.op_offset = self.r.pos
            code = self.r.read_opcode()
            if not code:
                raise _EndOfData() if first else _Broken("Ran out of input")
            op = pickletools.code2op.get(code.decode("latin-1"))
            if op is None:
                raise _Broken(f"invalid load key {code!r}")
            self.ops += 1
            if self.ops > _MAX_OPS:
                raise _OutOfBudget()
            if op.name == "STOP":
                self.pop()
                self.r.end_stream()
                return
            proto = self.step(op.name)
            if first and proto is not None and self.first_protocol is None and not self.previous_memos:
                self.first_protocol = proto
            first = False

    def step(self, name: str):  # noqa: C901 - one branch per opcode, in _pickle.c's order
        r = self.r
        if name in ("NONE", "NEWTRUE", "NEWFALSE", "EMPTY_TUPLE", "EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET"):
            self.push(DATA)
        elif name in ("BININT", "BININT1", "BININT2", "BINFLOAT"):
            r.read({"BININT": 4, "BININT1": 1, "BININT2": 2, "BINFLOAT": 8}[name])
            self.push(DATA)
        elif name == "INT":
            line = self._line(2)
            if line is not None and not _c_strtol_ok(line) and _py_long_ok(line, 0) is None:
                raise _Broken("could not convert string to int")
            self.push(DATA)
        elif name == "LONG":
            line = self._line(2)
            if line is not None:
                text = line[:-2] + b"\0" if line[-2:-1] == b"L" else line
                if _py_long_ok(text, 0) is None:
                    raise _Broken("invalid literal for LONG")
            self.push(DATA)
        elif name in ("LONG1", "LONG4"):
            width = 1 if name == "LONG1" else 4
            n = int.from_bytes(r.read(width), "little", signed=width == 4)
            if n < 0:
                raise _Broken("LONG pickle has negative byte count")
            r.skip(n, into=False)
            self.push(DATA)
        elif name == "FLOAT":
            line = self._line(2)
            if line is not None and not _float_ok(line):
                raise _Broken("could not convert string to float")
            self.push(DATA)
        elif name in ("SHORT_BINBYTES", "BINBYTES", "BINBYTES8", "BYTEARRAY8"):
            r.skip(self._size({"SHORT_BINBYTES": 1, "BINBYTES": 4, "BINBYTES8": 8, "BYTEARRAY8": 8}[name]), into=True)
            self.push(DATA)
        elif name in ("SHORT_BINSTRING", "BINSTRING"):
            self.push(self._counted_str(1 if name == "SHORT_BINSTRING" else 4, "ascii"))
        elif name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"):
            width = {"SHORT_BINUNICODE": 1, "BINUNICODE": 4, "BINUNICODE8": 8}[name]
            self.push(self._counted_str(width, "utf-8-surrogatepass"))
        elif name == "STRING":
            line = self._line(1)
            self.push(_Str(None) if line is None else _quoted_string(line))
        elif name == "UNICODE":
            line = self._line(1)
            self.push(_Str(None) if line is None else _raw_unicode(line))
        elif name == "NEXT_BUFFER":
            self.push(ANY)  # out-of-band buffers: a loader that passes them goes on
        elif name == "READONLY_BUFFER":
            self.need(1)
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            if len(self.stack) < n:
                raise _Broken("unpickling stack underflow")
            self.pop_to(len(self.stack) - n)
            self.push(DATA)
        elif name in ("TUPLE", "LIST", "FROZENSET"):
            self.pop_to(self.marker())
            self.push(DATA)
        elif name == "DICT":
            start = self.marker()
            if (len(self.stack) - start) % 2:
                raise _Broken("odd number of items for DICT")
            self.pop_to(start)
            self.push(DATA)
        elif name in ("APPEND", "SETITEM"):
            items = 1 if name == "APPEND" else 2
            self._add_to(len(self.stack) - items, pairs=name == "SETITEM")
        elif name in ("APPENDS", "SETITEMS", "ADDITEMS"):
            self._add_to(self.marker(), pairs=name == "SETITEMS")
        elif name == "BUILD":
            self.need(2)
            self.stack.pop()
            self.call_on(self.stack[-1])
        elif name == "DUP":
            self.need(1)
            self.push(self.stack[-1])
        elif name == "MARK":
            self.marks.append(len(self.stack))
        elif name == "POP":
            if self.marks and self.marks[-1] == len(self.stack):
                self.marks.pop()  # CPython keeps marks apart from objects: POP on a mark pops the mark
            else:
                self.pop()
        elif name == "POP_MARK":
            self.pop_to(self.marker())
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            self.push(self.memo_get(self._memo_index(name, get=True)))
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            key = self._memo_index(name, get=False)
            self.need(1)
            self.memo_put(key, self.stack[-1])
        elif name == "MEMOIZE":
            self.need(1)
            self.memo_put(len(self.memo), self.stack[-1])
        elif name == "GLOBAL":
            module = self._name_line("utf-8")
            attr = self._name_line("utf-8")
            self.resolve(self._global_name(module, attr))
            self.push(ANY)
        elif name == "STACK_GLOBAL":
            attr, module = self.pop(), self.pop()
            if isinstance(module, _Data) or isinstance(attr, _Data):
                raise _Broken("STACK_GLOBAL requires str")
            known = isinstance(module, _Str) and isinstance(attr, _Str) and module.text is not None and attr.text is not None
            self.resolve(f"{module.text}.{attr.text}" if known else DYNAMIC)
            self.push(ANY)
        elif name == "INST":
            start = self.marker()
            module = self._name_line("ascii")
            attr = self._name_line("ascii")
            self.resolve(self._global_name(module, attr))
            self.pop_to(start)
            self.calls += 1
            self.push(ANY)
        elif name == "OBJ":
            start = self.marker()
            if len(self.stack) - start < 1:
                raise _Broken("unpickling stack underflow")
            self.pop_to(start + 1)
            self.pop()
            self.calls += 1
            self.push(ANY)
        elif name in ("REDUCE", "NEWOBJ", "NEWOBJ_EX"):
            for _ in range({"REDUCE": 2, "NEWOBJ": 2, "NEWOBJ_EX": 3}[name]):
                self.pop()
            self.calls += 1
            self.push(ANY)
        elif name in ("EXT1", "EXT2", "EXT4"):
            width = {"EXT1": 1, "EXT2": 2, "EXT4": 4}[name]
            code = int.from_bytes(r.read(width), "little", signed=width == 4)
            if code <= 0:
                raise _Broken("EXT specifies code <= 0")
            self.resolve(f"<extension {code}>")  # copyreg's registry maps it to a global
            self.push(ANY)
        elif name == "PERSID":
            line = self._line(1)
            if line is not None:
                _decode(line[:-1], "ascii", "PERSID")
            self.push(ANY)  # a loader with persistent_load (torch) goes on with whatever it returns
        elif name == "BINPERSID":
            self.pop()
            self.push(ANY)
        elif name == "PROTO":
            (proto,) = r.read(1)
            if proto > HIGHEST_PROTOCOL:
                raise _Broken(f"unsupported pickle protocol: {proto}")
            return proto
        elif name == "FRAME":
            r.start_frame(self._size(8))
        else:  # pragma: no cover - every opcode of pickletools' table is handled above
            raise _Broken(f"opcode {name} not modelled")
        return None

    # argument helpers
    def _line(self, min_len: int) -> bytes | None:
        line = self.r.readline()
        if line is not None and len(line) < min_len:
            raise _Broken("pickle data was truncated (empty line argument)")
        return line

    def _name_line(self, encoding: str) -> str | None:
        line = self._line(2)
        return None if line is None else _decode(line[:-1], encoding, "global name")

    @staticmethod
    def _global_name(module: str | None, attr: str | None) -> str:
        if module is None or attr is None or len(module) + len(attr) > _MAX_KEPT_STRING:
            return DYNAMIC
        return f"{module}.{attr}"

    def _size(self, width: int) -> int:
        n = int.from_bytes(self.r.read(width), "little")
        if n > _SSIZE_MAX:
            raise _Broken("length exceeds the system's maximum size")
        return n

    def _counted_str(self, width: int, encoding: str) -> _Str:
        n = self._size(width)
        if n > _MAX_KEPT_STRING:
            self.r.skip(n, into=False)
            return _Str(None)
        return _Str(_decode(self.r.read(n), encoding, "string"))

    def _memo_index(self, name: str, *, get: bool) -> int | None:
        if name in ("BINGET", "BINPUT"):
            return self.r.read(1)[0]
        if name in ("LONG_BINGET", "LONG_BINPUT"):
            return int.from_bytes(self.r.read(4), "little")
        line = self._line(2)
        if line is None:
            return None  # overlong (whitespace-padded) index: which slot is unknown
        key = _py_long_ok(line, 10)
        if key is None or key > _SSIZE_MAX or key < -_SSIZE_MAX - 1:
            raise _Broken(f"bad {name} argument")
        if key < 0:
            raise _Broken(f"negative {name} argument" if not get else f"Memo value not found at index {key}")
        return key

    def _add_to(self, start: int, *, pairs: bool) -> None:
        """do_append / do_setitems / load_additems: items from `start` go into the object below it."""
        if start > len(self.stack) or start <= self.fence:
            raise _Broken("unpickling stack underflow")
        count = len(self.stack) - start
        if count == 0:
            return
        if pairs and count % 2:
            raise _Broken("odd number of items for SETITEMS")
        del self.stack[start:]
        self.call_on(self.stack[-1])  # append/extend/__setitem__/add of an imported object is its code


def scan_pickle(f, *, budget: int = 64 << 20, size: int | None = None) -> PickleScan:
    """Walk the pickle stream(s) readable from binary file object `f` (from its current position).

    Stacked pickles (the legacy torch format writes several back to back) are walked one after the
    other, each with a fresh stack; data after the last complete pickle that breaks the walk ends it.
    If a read crosses the end of a FRAME, the stream is walked a second time the way CPython reads it
    from a file without `peek`, and the two walks are reported together.
    `size`: the number of bytes readable from `f` (default: found by seeking, when `f` allows it).
    """
    if size is None:
        size = _remaining(f)
    reader = _Reader(f, budget=budget, size=size)
    scan = _walk(reader)
    if reader.crossed:
        if reader.rewind():
            other = _walk(_Reader(f, budget=budget, size=size, drop_frame_rest=True))
            scan = _union(scan, other)
        else:
            scan = dataclasses.replace(scan, is_pickle=True, truncated=True)  # cannot walk it both ways: fail closed
    return scan


def _walk(reader: _Reader) -> PickleScan:
    seen: dict[str, None] = {}
    machine = _Machine(reader, seen)
    streams = 0
    error = error_offset = None
    truncated = complete = False
    while True:
        calls_before, seen_before = machine.calls, len(seen)
        try:
            machine.run_stream()
        except _EndOfData:
            complete = streams > 0
            break
        except _Broken as exc:
            if streams == 0 or machine.calls > calls_before or len(seen) > seen_before:
                error, error_offset = str(exc), machine.op_offset  # trailing data that did nothing is ignored
            break
        except _OutOfBudget:
            truncated = True
            break
        finally:
            machine.previous_memos.append(machine.memo)
        streams += 1
    protocol = machine.first_protocol
    is_pickle = bool(seen) or machine.calls > 0 or complete or truncated
    return PickleScan(is_pickle=is_pickle, protocol=protocol, globals=tuple(seen), calls=machine.calls,
                      stopped_cleanly=streams > 0, error=error, error_offset=error_offset, truncated=truncated,
                      consumed=reader.pos, streams=streams, complete=complete)


def _union(a: PickleScan, b: PickleScan) -> PickleScan:
    """What either way of reading the stream would do."""
    return PickleScan(is_pickle=a.is_pickle or b.is_pickle, protocol=a.protocol, globals=tuple(dict.fromkeys(a.globals + b.globals)),
                      calls=max(a.calls, b.calls), stopped_cleanly=a.stopped_cleanly or b.stopped_cleanly,
                      error=a.error or b.error, error_offset=a.error_offset if a.error else b.error_offset,
                      truncated=a.truncated or b.truncated, consumed=max(a.consumed, b.consumed),
                      streams=max(a.streams, b.streams), complete=a.complete or b.complete)


def _remaining(f) -> int | None:
    try:
        if not f.seekable() or hasattr(f, "_decompressor"):
            return None
        here = f.tell()
        end = f.seek(0, io.SEEK_END)
        f.seek(here)
        return end - here
    except (AttributeError, OSError, ValueError):
        return None


def scan_pickle_bytes(data: bytes, *, budget: int = 64 << 20) -> PickleScan:
    return scan_pickle(io.BytesIO(data), budget=budget, size=len(data))


def describe(scan: PickleScan) -> str:
    """One human line: protocol, globals (unsafe ones first), and how the stream ended."""
    parts = [f"pickle stream (protocol {scan.protocol if scan.protocol is not None else '0/1'})"]
    unsafe = scan.unsafe_globals
    if unsafe:
        parts.append("imports non-allowlisted globals: " + ", ".join(unsafe[:10]))
    elif scan.globals:
        parts.append("imports only allowlisted globals: " + ", ".join(scan.globals[:10]))
    else:
        parts.append("imports no globals")
    if scan.error:
        parts.append(f"stream breaks at byte {scan.error_offset} ({scan.error})"
                     + (" after a call: the payload would already have run" if scan.calls else ""))
    if scan.truncated:
        parts.append("walk stopped at its budget while the stream was still valid")
    return "; ".join(parts)
