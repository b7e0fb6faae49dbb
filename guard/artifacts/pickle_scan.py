"""Pickle opcode walk: find the globals a pickle stream would import, without ever unpickling it.

A small symbolic pickle machine reads opcodes and their arguments from bytes (pickletools' opcode
table, our own bounded argument reads), tracks the stack, marks and memo just enough to resolve
STACK_GLOBAL names from earlier string pushes (also through the memo), and records every global and
every call (REDUCE/INST/OBJ/NEWOBJ/NEWOBJ_EX/BUILD). Large byte arguments are skipped, never
buffered, and the walk stops at a byte budget, so memory stays small whatever the stream claims.

The walk also classifies: a stream is a pickle if it starts with PROTO, reaches STOP at the end of the
data, or executes a call on an imported global before breaking (a payload followed by a broken stream
still runs in a real unpickler: the parser differential of GHSA-9gvj-pp9x-gcfr).
"""

from __future__ import annotations

import dataclasses
import io
import pickletools

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

_CALL_OPS = frozenset({"REDUCE", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "BUILD"})
_STRING_ARGS = frozenset({"unicodestring1", "unicodestring4", "unicodestring8", "string1", "string4"})
_MAX_KEPT_STRING = 4096  # longer strings are skipped: no real module or attribute name is that long
_MAX_LINE = 65536
_MAX_MEMO = 1 << 20
_MAX_STACK = 1 << 20
_MAX_OPS = 1_000_000  # about a second of walking; real checkpoints' pickles are far shorter
_HIGHEST_PROTOCOL = 5


@dataclasses.dataclass(frozen=True)
class PickleScan:
    is_pickle: bool
    protocol: int | None
    globals: tuple[str, ...]  # "module.name" in first-seen order; "<dynamic>" when a name was not a literal
    calls: int
    stopped_cleanly: bool  # reached STOP
    error: str | None  # why the walk stopped early, if it did
    error_offset: int | None
    truncated: bool  # the byte budget ran out before the end
    consumed: int = 0  # bytes read from the stream

    @property
    def unsafe_globals(self) -> tuple[str, ...]:
        return tuple(g for g in self.globals if g not in SAFE_GLOBALS)


class _Mark:
    pass


_MARK = _Mark()


@dataclasses.dataclass(frozen=True)
class _Str:
    value: str


@dataclasses.dataclass(frozen=True)
class _Global:
    name: str


class _Other:
    pass


_OTHER = _Other()


class _Broken(Exception):
    calls = 0
    offset = 0
    protocol = None


class _Truncated(Exception):
    calls = 0
    offset = 0
    protocol = None


class _Reader:
    """Bounded reads over a binary stream; never asks the stream for more than the budget allows."""

    def __init__(self, f, budget: int):
        self.f = f
        self.pos = 0
        self.budget = budget
        self.pending = b""
        self.ops = 0

    def _take(self, n: int) -> None:
        if self.pos + n > self.budget:
            raise _Truncated()

    def read(self, n: int) -> bytes:
        self._take(n)
        data = self.f.read(n)
        self.pos += len(data)
        if len(data) != n:
            raise _Broken(f"stream ends inside an argument (wanted {n} bytes)")
        return data

    def skip(self, n: int) -> None:
        self._take(n)
        while n:
            chunk = self.f.read(min(n, 1 << 20))
            if not chunk:
                raise _Broken("stream ends inside an argument")
            self.pos += len(chunk)
            n -= len(chunk)

    def readline(self) -> bytes:
        line = self.f.readline(min(_MAX_LINE, max(self.budget - self.pos, 0) + 1))
        self.pos += len(line)
        if self.pos > self.budget:
            raise _Truncated()
        if not line.endswith(b"\n"):
            raise _Broken("unterminated or overlong text argument")
        return line

    def read_opcode(self) -> bytes:
        if self.pending:
            code, self.pending = self.pending, b""
        else:
            self._take(1)
            code = self.f.read(1)
        self.pos += len(code)
        return code

    def at_end(self) -> bool:
        """True at end of data; otherwise the peeked byte is kept for the next read_opcode()."""
        if not self.pending:
            self._take(1)
            self.pending = self.f.read(1)
        return self.pending == b""


def scan_pickle(f, *, budget: int = 64 << 20) -> PickleScan:
    """Walk the pickle stream(s) readable from binary file object `f` (from its current position).

    Stacked pickles (the legacy torch format writes several back to back) are walked one after the other;
    data after the last stream that does not parse as pickle is ignored unless it imported or called.
    """
    r = _Reader(f, budget)
    seen: dict[str, None] = {}
    protocol = None
    calls = 0
    error = error_offset = None
    stopped = truncated = False
    is_pickle = False
    stream = 0
    try:
        while True:
            stream_calls, stream_globals = calls, len(seen)
            try:
                stop = _walk_one(r, seen)
            except _Broken as exc:
                calls += exc.calls
                if stream == 0:
                    protocol = exc.protocol
                if stream == 0 or calls > stream_calls or len(seen) > stream_globals:
                    error, error_offset = str(exc), exc.offset
                break
            calls += stop.calls
            if stream == 0:
                protocol, stopped = stop.protocol, True
            stream += 1
            if r.at_end():
                is_pickle = True
                break
    except _Truncated as exc:
        truncated = True
        calls += exc.calls
        if stream == 0:
            protocol = exc.protocol
    is_pickle = is_pickle or protocol is not None or calls > 0 or (truncated and bool(seen))
    return PickleScan(is_pickle=is_pickle, protocol=protocol, globals=tuple(seen), calls=calls, stopped_cleanly=stopped,
                      error=error, error_offset=error_offset, truncated=truncated, consumed=r.pos + len(r.pending))


@dataclasses.dataclass
class _Stop:
    protocol: int | None
    calls: int


def _walk_one(r: "_Reader", seen: dict[str, None]) -> _Stop:
    stack: list = []
    memo: dict[int, object] = {}
    protocol = None
    calls = 0
    start = r.pos
    offset = start
    try:
        while True:
            offset = r.pos
            code = r.read_opcode()
            if not code:
                raise _Broken("stream ends without STOP")
            op = pickletools.code2op.get(code.decode("latin-1"))
            if op is None:
                raise _Broken(f"invalid opcode {code!r}")
            arg = _read_arg(op, r)
            if op.name == "PROTO":
                if arg > _HIGHEST_PROTOCOL:
                    raise _Broken(f"unsupported PROTO {arg}")
                if offset == start:
                    protocol = arg
                continue
            if op.name == "STOP":
                _pop(stack, 1)
                return _Stop(protocol, calls)
            calls += _step(op, arg, stack, memo, seen)
            r.ops += 1
            if r.ops > _MAX_OPS or len(stack) > _MAX_STACK:
                raise _Truncated()
    except (_Broken, _Truncated) as exc:
        exc.calls, exc.offset, exc.protocol = calls, offset, protocol
        raise


def scan_pickle_bytes(data: bytes, *, budget: int = 64 << 20) -> PickleScan:
    return scan_pickle(io.BytesIO(data), budget=budget)


def _read_arg(op: pickletools.OpcodeInfo, r: _Reader):
    a = op.arg
    if a is None:
        return None
    if a.n >= 0:
        return a.reader(io.BytesIO(r.read(a.n)))
    if a.n == pickletools.UP_TO_NEWLINE:
        line = r.readline()
        if a.name == "stringnl_noescape_pair":
            line += r.readline()
        try:
            return a.reader(io.BytesIO(line))
        except ValueError as exc:
            raise _Broken(f"bad {op.name} argument: {exc}") from None
    width = {pickletools.TAKEN_FROM_ARGUMENT1: 1, pickletools.TAKEN_FROM_ARGUMENT4: 4,
             pickletools.TAKEN_FROM_ARGUMENT4U: 4, pickletools.TAKEN_FROM_ARGUMENT8U: 8}[a.n]
    raw_len = r.read(width)
    n = int.from_bytes(raw_len, "little", signed=(a.n == pickletools.TAKEN_FROM_ARGUMENT4))
    if n < 0:
        raise _Broken(f"negative length in {op.name}")
    if a.name in ("long1", "long4"):
        r.skip(n)
        return None
    if a.name in _STRING_ARGS and n <= _MAX_KEPT_STRING:
        data = r.read(n)
        if not a.name.startswith("unicode"):
            return data.decode("latin-1")
        try:
            return data.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            raise _Broken(f"bad UTF-8 in {op.name}") from None
    r.skip(n)
    return None


def _pop(stack: list, n: int) -> list:
    if n == 0:
        return []
    if n > len(stack):
        raise _Broken("stack underflow")
    out = stack[-n:]
    for x in out:
        if x is _MARK:
            raise _Broken("stack underflow (MARK in the way)")
    del stack[-n:]
    return out


def _pop_mark(stack: list) -> list:
    for i in range(len(stack) - 1, -1, -1):
        if stack[i] is _MARK:
            out = stack[i + 1:]
            del stack[i:]
            return out
    raise _Broken("no MARK on the stack")


def _step(op: pickletools.OpcodeInfo, arg, stack: list, memo: dict, seen: dict) -> int:
    """Apply one opcode to the symbolic machine; returns 1 for a call on an imported global, else 0."""
    name = op.name
    if name in ("GLOBAL", "INST"):
        module, _, attr = arg.partition(" ")
        seen.setdefault(f"{module}.{attr}", None)
        if name == "GLOBAL":
            stack.append(_Global(f"{module}.{attr}"))
            return 0
        _pop_mark(stack)
        stack.append(_OTHER)
        return 1
    if name == "STACK_GLOBAL":
        module, attr = _pop(stack, 2)
        full = f"{module.value}.{attr.value}" if isinstance(module, _Str) and isinstance(attr, _Str) else "<dynamic>"
        seen.setdefault(full, None)
        stack.append(_Global(full))
        return 0
    if name in ("EXT1", "EXT2", "EXT4"):
        seen.setdefault(f"<extension-registry {arg}>", None)
        stack.append(_Global(f"<extension {arg}>"))
        return 0
    if name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
        if not stack or stack[-1] is _MARK:
            raise _Broken(f"{name} with an empty stack")
        key = len(memo) if name == "MEMOIZE" else arg
        if len(memo) >= _MAX_MEMO and key not in memo:
            raise _Broken("memo too large")
        memo[key] = stack[-1]
        return 0
    if name in ("GET", "BINGET", "LONG_BINGET"):
        if arg not in memo:
            raise _Broken(f"{name} of missing memo slot {arg}")
        stack.append(memo[arg])
        return 0
    if name == "DUP":
        (x,) = _pop(stack, 1)
        stack.extend((x, x))
        return 0
    if name == "MARK":
        stack.append(_MARK)
        return 0
    if name in _CALL_OPS:
        if name == "OBJ":
            items = _pop_mark(stack)
            if not items:
                raise _Broken("OBJ without a class")
        else:
            _pop(stack, {"REDUCE": 2, "BUILD": 2, "NEWOBJ": 2, "NEWOBJ_EX": 3}[name])
        stack.append(_OTHER)
        return 1
    # Generic stack effect from pickletools' table (containers, scalars, POP, POP_MARK, persistent ids...).
    before = op.stack_before
    if pickletools.markobject in before:
        _pop_mark(stack)
        _pop(stack, before.index(pickletools.markobject))
    else:
        _pop(stack, len(before))
    if name in ("STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"):
        stack.append(_Str(arg) if isinstance(arg, str) else _OTHER)
        return 0
    stack.extend(_OTHER for _ in op.stack_after)
    return 0


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
        parts.append("scan stopped at the byte budget")
    return "; ".join(parts)

