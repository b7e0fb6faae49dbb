import collections
import io
import pickle
import zipfile

import pytest
import torch

from attacks.corpus import pickle_payloads as pp
from guard.artifacts.pickle_scan import SAFE_GLOBALS, describe, scan_pickle_bytes

MARKER = "/nonexistent-dir/marker"


@pytest.mark.parametrize("proto", range(0, 6))
@pytest.mark.parametrize("obj", [None, [1, "a", b"b", 2.5], {"k": (1, 2)}, collections.OrderedDict(a=1), {1, 2}, "y" * 5000])
def test_plain_data_pickles_are_pickles_with_only_safe_globals(obj, proto):
    scan = scan_pickle_bytes(pickle.dumps(obj, protocol=proto))
    assert scan.is_pickle and scan.stopped_cleanly and scan.error is None
    assert scan.unsafe_globals == ()


def test_torch_state_dict_pickle_uses_only_allowlisted_globals():
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(3), "b": torch.ones(2, dtype=torch.bfloat16)}, buf)
    with zipfile.ZipFile(buf) as zf:
        data = zf.read(next(n for n in zf.namelist() if n.endswith("data.pkl")))
    scan = scan_pickle_bytes(data)
    assert scan.is_pickle and scan.unsafe_globals == ()
    assert "torch._utils._rebuild_tensor_v2" in scan.globals


EXPECTED = {
    "direct-global": {"builtins.open"},
    "stack-global-memo": {"builtins.open"},
    "protocol0-text": {"builtins.open"},
    "inst-opcode": {"builtins.open"},
    "pkgutil-resolve-name": {"pkgutil.resolve_name"},
    "importlib-methodcaller": {"operator.methodcaller", "importlib.import_module"},
    "pydoc-locate": {"pydoc.locate"},
    "methodcaller-touch": {"operator.methodcaller", "pathlib.Path"},
    "nested-loads": {"pickle.loads"},
    "broken-after-payload": {"builtins.open"},
    "stacked-legacy": {"builtins.open"},
    "pop-mark-text": {"builtins.open"},
    "strtol-int-text": {"builtins.open"},
    "frame-dropped-line": {"builtins.open", "Xbuiltins.open"},  # the file reading and the bytes reading
}


@pytest.mark.parametrize("name", sorted(pp.RAW_PAYLOADS))
def test_every_payload_class_is_found(name):
    scan = scan_pickle_bytes(pp.RAW_PAYLOADS[name][1](MARKER))
    assert scan.is_pickle
    assert set(scan.unsafe_globals) == EXPECTED[name]
    assert scan.calls >= 1


def test_broken_stream_reports_that_the_payload_ran_first():
    scan = scan_pickle_bytes(pp.broken_after_payload(MARKER))
    assert not scan.stopped_cleanly and scan.error and scan.calls == 1
    assert "payload would already have run" in describe(scan)


def test_dynamic_stack_global_name_is_unsafe():
    # STACK_GLOBAL whose module name is the result of a call, not a literal string.
    data = (pp.proto(4) + pp.global_("builtins", "str") + pp.ustr("os") + pp.TUPLE1 + pp.REDUCE
            + pp.ustr("getcwd") + pp.STACK_GLOBAL + b")" + pp.REDUCE + pp.STOP)
    scan = scan_pickle_bytes(data)
    assert "<dynamic>" in scan.unsafe_globals


@pytest.mark.parametrize("text", [b"hello world\n", b"dog\ncat\nfish\n", b"[PAD]\n[UNK]\n", b"N.\nmore text\n", b"# README\n"])
def test_ordinary_text_is_not_a_pickle(text):
    assert not scan_pickle_bytes(text).is_pickle


def test_text_that_cpython_would_import_from_is_a_pickle():
    # 'c' is GLOBAL: pickle.loads(b"cat\ndog\n...") calls find_class("at", "dog"), i.e. imports a module.
    scan = scan_pickle_bytes(b"cat\ndog\nfish\n")
    assert scan.is_pickle and scan.globals == ("at.dog",)


# Issue 10, hole 1: protocol-0 pickles the old walk filed as text, each CPython runs (see the differential test).
HOLE_1 = {
    "pop-of-mark": (b"(0cos\nsystem\n(S'echo pwned'\ntR.", "os.system"),
    "strtol-hex-int": (b"I0x1\n0cos\nsystem\n(S'echo pwned'\ntR.", "os.system"),
    "strtol-octal-int": (b"I010\n0cos\nsystem\n(S'echo pwned'\ntR.", "os.system"),
    "int-with-nul": (b"I1\x00zz\n0cos\nsystem\n(S'echo pwned'\ntR.", "os.system"),
    "long-underscores": (b"L1_0L\n0cos\nsystem\n(S'echo pwned'\ntR.", "os.system"),
    "padded-memo-index": (b"Np 7 \n0g7\n0cos\nsystem\n(S'echo pwned'\ntR.", "os.system"),
}


@pytest.mark.parametrize("name", sorted(HOLE_1))
def test_hole_1_protocol0_payloads_are_pickles(name):
    data, global_name = HOLE_1[name]
    scan = scan_pickle_bytes(data)
    assert scan.is_pickle and global_name in scan.unsafe_globals and scan.calls == 1


def test_huge_declared_length_fails_like_cpython_without_reading_it():
    huge_claim = pp.proto(4) + b"\x8e" + (2**62).to_bytes(8, "little") + b"x" * 10  # BINBYTES8 claiming 4 EiB
    scan = scan_pickle_bytes(huge_claim, budget=1 << 20)
    assert not scan.truncated and "truncated" in scan.error and scan.consumed < 64
    assert not scan.is_pickle  # it breaks before doing anything (as a file it is an unknown binary: refused)


def test_a_valid_stream_longer_than_the_budget_is_a_pickle():
    data = b"N" + b"0N" * 100_000 + b"."  # 200 KB of valid pushes and pops before STOP
    scan = scan_pickle_bytes(data, budget=4096)
    assert scan.truncated and scan.is_pickle and scan.consumed <= 4096


def test_safe_globals_exclude_every_resolver():
    for name in ("builtins.eval", "builtins.getattr", "pkgutil.resolve_name", "pickle.loads", "operator.attrgetter"):
        assert name not in SAFE_GLOBALS


def _opcode_soup():
    from hypothesis import strategies as st

    # Bytes biased towards real opcodes and small lengths, so the walk gets deep into argument parsing.
    codes = [op.code.encode("latin-1") for op in __import__("pickletools").opcodes]
    lengths = [b"\x00", b"\x02", b"\x02\x00\x00\x00", b"\x02\x00\x00\x00\x00\x00\x00\x00", b"\xff\xff\xff\xff"]
    fixed = [b"\n", b"os\n", b"'a'\n", b"\x80\x05", b"\xff\xfe", b"-1\n", b"1e999\n"] + lengths
    piece = st.one_of(st.sampled_from(codes), st.binary(max_size=6), st.sampled_from(fixed))
    return st.lists(piece, max_size=40).map(b"".join)


@pytest.mark.parametrize("data", [
    b"X\x02\x00\x00\x00\xff\xfe.", b"\x8c\x02\xff\xfe.", b"V\xff\n.", b"c\xff\n\xfe\n.", b"S'\xff'\n.",
    b"I99999999999999999999999\n.", b"F1e999\n.", b"g-1\n.", b"J\x00", b"\x8e\xff\xff\xff\xff\xff\xff\xff\xff",
])
def test_malformed_arguments_end_the_walk_without_an_exception(data):
    scan = scan_pickle_bytes(data)
    assert scan.stopped_cleanly or scan.error or scan.truncated


def test_random_opcode_streams_never_crash_the_walk():
    from hypothesis import given, settings

    @settings(max_examples=1500, deadline=None)
    @given(_opcode_soup())
    def check(data):
        scan = scan_pickle_bytes(data)
        assert scan.consumed <= len(data)
        describe(scan)

    check()
