"""The reference for the pickle walk: CPython's own `pickle.Unpickler`, made harmless.

Run as a worker process (`python -m tests.artifacts.pickle_oracle`): it reads length-prefixed byte
strings on stdin and answers one JSON line each. `find_class` records the global and returns `Stub`,
a class that accepts every call and method the unpickler may invoke and does nothing, so nothing is
ever imported or executed and CPython goes on to the next global. `persistent_load` and out-of-band
buffers are provided too, so CPython walks as far as the most permissive real loader would (torch
defines persistent_load). Stacked pickles are loaded one after another, each with a fresh Unpickler
(as torch's legacy loader does). The worker limits its own address space, so a stream that asks
CPython for a gigantic memo or buffer fails there instead of exhausting the machine.
"""

from __future__ import annotations

import io
import json
import pickle
import resource
import struct
import sys


class Stub:
    calls = 0

    def __new__(cls, *args, **kwargs):
        Stub.calls += 1
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        Stub.calls += 1
        return object.__new__(Stub)

    def __setstate__(self, state):
        Stub.calls += 1

    def __setitem__(self, key, value):
        Stub.calls += 1

    def append(self, item):
        Stub.calls += 1

    def extend(self, items):
        Stub.calls += 1

    def add(self, item):
        Stub.calls += 1


class RecordingUnpickler(pickle.Unpickler):
    def __init__(self, f, found: list):
        super().__init__(f, buffers=iter([b"buffer"] * 64))
        self.found = found

    def find_class(self, module, name):
        self.found.append(f"{module}.{name}")
        return Stub

    def persistent_load(self, pid):
        return object.__new__(Stub)  # torch's persistent_load returns storages: data, not a call


def load_all(f, size: int) -> dict:
    """Load pickle after pickle from `f`, each with a fresh Unpickler, until the data ends or CPython raises."""
    found: list[str] = []
    Stub.calls = 0
    loaded, complete, error = 0, False, None
    while True:
        if f.tell() >= size:
            complete = loaded > 0
            break
        try:
            RecordingUnpickler(f, found).load()
        except BaseException as exc:  # noqa: BLE001 - every way CPython refuses a stream ends the walk
            error = f"{type(exc).__name__}: {exc}"[:200]
            break
        loaded += 1
    return {"globals": found, "loaded": loaded, "complete": complete, "calls": Stub.calls, "error": error}


def oracle(data: bytes) -> dict:
    """Both ways CPython reads: a file with peek (as `open(path, "rb")`; the same as `pickle.loads` for
    streams this small) and one without (an io.BytesIO, which drops the rest of a FRAME that a read
    crosses). Reported together: globals of either, the most pickles either loaded."""
    with_peek = load_all(io.BufferedReader(io.BytesIO(data)), len(data))
    without_peek = load_all(io.BytesIO(data), len(data))
    return {"globals": list(dict.fromkeys(with_peek["globals"] + without_peek["globals"])),
            "loaded": max(with_peek["loaded"], without_peek["loaded"]),
            "complete": with_peek["complete"] or without_peek["complete"],
            "calls": max(with_peek["calls"], without_peek["calls"]),
            "error": with_peek["error"], "modes": [with_peek, without_peek]}


def main() -> None:
    limit = 1 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    stdin, stdout = sys.stdin.buffer, sys.stdout
    while True:
        head = stdin.read(4)
        if len(head) < 4:
            return
        (n,) = struct.unpack("<I", head)
        stdout.write(json.dumps(oracle(stdin.read(n))) + "\n")
        stdout.flush()


if __name__ == "__main__":
    main()
