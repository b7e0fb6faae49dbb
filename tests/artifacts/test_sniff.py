import io
import json
import struct

import numpy as np
import pytest

from attacks.corpus import pickle_payloads as pp
from attacks.corpus.malformed_safetensors import st_bytes, tensor
from guard.artifacts.policy import ReadPolicy
from guard.artifacts.sniff import KINDS, sniff_file


def sniff(tmp_path, name, data):
    (tmp_path / name).write_bytes(data)
    return sniff_file(tmp_path, name, policy=ReadPolicy(), keep_json=True)


def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def _pb(field: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (lengths here stay below 128: one varint byte)."""
    return bytes([field << 3 | 2, len(payload)]) + payload


# A minimal sentencepiece ModelProto: two pieces (piece string, float score) and a trainer spec.
SENTENCEPIECE = (_pb(1, _pb(1, "\u2581a".encode()) + b"\x15" + struct.pack("<f", -1.0))
                 + _pb(1, _pb(1, b"b") + b"\x15" + struct.pack("<f", -2.0)) + _pb(2, b"\x08\x01"))
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 24

CASES = [
    ("tokenizer.model", SENTENCEPIECE, "sentencepiece", None),
    ("tokenizer-truncated.model", SENTENCEPIECE[:-1], "unknown", "refuse"),
    ("logo.png", PNG, "image", None),
    ("weights.bin", st_bytes({"w": tensor()}, b"\0" * 8), "safetensors", None),  # by content, despite the name
    ("a.json", b'{"x": 1}', "json", None),
    ("notes", b'{"x": 1}', "json", None),
    ("vocab.txt", b"[PAD]\n[UNK]\nhello\n", "text", None),
    ("README.md", "# Model\n\u00e9t\u00e9\n".encode(), "text", None),
    ("modeling_x.py", b"import os\n", "python", "warn"),
    ("empty.txt", b"", "empty", None),
    ("model.gguf", b"GGUF\x03\x00\x00\x00" + b"\0" * 16, "gguf", "warn"),
    ("a.npy", _npy(np.zeros(3, dtype=np.float32)), "numpy", "warn"),
    ("objects.npy", _npy(np.array([None, 1], dtype=object)), "numpy", "refuse"),
    ("x.7z", b"7z\xbc\xaf\x27\x1c" + b"\0" * 26, "7z", "refuse"),
    ("x.gz", b"\x1f\x8b\x08\x00" + b"\0" * 16, "archive", "refuse"),
    ("random.bin", bytes(range(256)) * 2, "unknown", "refuse"),
    ("latin1.txt", "caf\u00e9".encode("latin-1") + b"\x00\x01", "unknown", "refuse"),
    ("payload.txt", pp.protocol0_text("/nonexistent/m"), "pickle", "refuse"),
    ("zip.safetensors", pp.torch_zip(pp.direct_global("/nonexistent/m")), "zip", "refuse"),
    # Issue 10, hole 1: pickles the old walk filed as text, and weights names holding anything but safetensors.
    ("pytorch_model.bin", b"(0cos\nsystem\n(S'echo pwned'\ntR.", "pickle", "refuse"),
    ("strtol.txt", pp.strtol_int_text("/nonexistent/m"), "pickle", "refuse"),
    ("frame.md", pp.frame_dropped_line("/nonexistent/m"), "pickle", "refuse"),
    ("notes.bin", b"hello\n", "text", "refuse"),
    ("optimizer.pt", b'{"state": {}}', "json", "refuse"),
    ("flax_model.msgpack", bytes(range(256)) * 2, "unknown", "refuse"),
    ("trailing.npy", _npy(np.zeros(3, dtype=np.float32)) + b"more", "numpy", "refuse"),
]


@pytest.mark.parametrize("name,data,kind,severity", CASES, ids=[c[0] for c in CASES])
def test_kind_is_decided_by_content(tmp_path, name, data, kind, severity):
    s = sniff(tmp_path, name, data)
    assert s.kind == kind
    assert [f.severity for f in s.findings] == ([severity] if severity else [])
    assert all(f.path == name for f in s.findings)


def test_auto_map_in_any_json_is_refused_as_remote_code(tmp_path):
    s = sniff(tmp_path, "tokenizer_config.json", json.dumps({"auto_map": {"AutoTokenizer": "tok.MyTok"}}).encode())
    assert s.kind == "json"
    assert [(f.severity, f.rule) for f in s.findings] == [("refuse", "remote-code-auto-map")]
    assert "tok.MyTok" in s.findings[0].message


# Issue 10, hole 3: JSON that dodged the remote-code check.
def test_duplicate_key_json_is_refused_and_still_checked_for_remote_code(tmp_path):
    s = sniff(tmp_path, "tokenizer_config.json", b'{"auto_map": {"AutoTokenizer": "evil.Tok"}, "x": 1, "x": 2}')
    assert s.kind == "json"
    assert sorted((f.severity, f.rule) for f in s.findings) == [("refuse", "json-duplicate-key"),
                                                                 ("refuse", "remote-code-auto-map")]


def test_json_over_the_cap_is_refused_not_skipped(tmp_path):
    (tmp_path / "config.json").write_bytes(b'{"auto_map": {"AutoModel": "evil.M"}, "pad": "' + b"x" * 4096 + b'"}')
    s = sniff_file(tmp_path, "config.json", policy=ReadPolicy(max_json_bytes=1024))
    assert [(f.severity, f.rule) for f in s.findings] == [("refuse", "json-too-large")]


def test_nested_auto_map_and_custom_pipelines_are_remote_code(tmp_path):
    nested = sniff(tmp_path, "processor_config.json", json.dumps({"image": {"auto_map": {"A": "x.Y"}}}).encode())
    pipes = sniff(tmp_path, "config.json", json.dumps({"custom_pipelines": {"t": {"impl": "p.P"}}}).encode())
    assert [f.rule for f in nested.findings] == ["remote-code-auto-map"]
    assert [f.rule for f in pipes.findings] == ["remote-code-custom-pipeline"]


def test_malformed_json_file_is_text_with_a_warning(tmp_path):
    s = sniff(tmp_path, "special_tokens_map.json", b'{"a": 1,}')
    assert s.kind == "text" and [f.rule for f in s.findings] == ["json-malformed"]


def test_benign_zip_is_still_refused(tmp_path):
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("readme.txt", "hi")
    s = sniff(tmp_path, "bundle.zip", buf.getvalue())
    assert s.kind == "zip" and [f.rule for f in s.findings] == ["zip-file"]


def test_header_length_that_reads_as_pickle_proto_is_not_a_false_positive(tmp_path):
    # N = 0x0580: the first two bytes read as PROTO 5 to an unpickler, but the next one (0x00) is no
    # opcode, so the file is not a pickle polyglot; it is plain safetensors with no findings.
    n = 0x0580
    raw = b'{"__metadata__":{"p":"x"}}'.ljust(n, b" ")
    s = sniff(tmp_path, "x.safetensors", struct.pack("<Q", n) + raw)
    assert s.kind == "safetensors" and s.findings == ()


def test_random_content_under_any_name_is_sniffed_or_an_input_error(tmp_path_factory):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from guard.errors import InputError

    prefixes = [b"", b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY\x01\x00", b"\x93NUMPY\x02\x00", b"GGUF", b"7z\xbc\xaf\x27\x1c",
                b"\x80\x04", b"\x0a", b"{", b"\x10\x00\x00\x00\x00\x00\x00\x00{"]
    names = ["model.safetensors", "config.json", "x.bin", "vocab.txt", "a.npy", "m.py", "tokenizer.model"]
    root = tmp_path_factory.mktemp("sniff-fuzz")

    @settings(max_examples=600, deadline=None)
    @given(st.sampled_from(prefixes), st.binary(max_size=300), st.sampled_from(names))
    def check(prefix, body, name):
        (root / name).write_bytes(prefix + body)
        try:
            s = sniff_file(root, name, policy=ReadPolicy())
        except InputError as exc:
            assert exc.rule
            return
        assert s.kind in KINDS

    check()
