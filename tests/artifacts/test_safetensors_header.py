import json
import struct

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file

from attacks.corpus.malformed_safetensors import st_bytes, tensor
from guard.artifacts.policy import ReadPolicy
from guard.artifacts.safetensors_header import read_header
from guard.errors import InputError


def _write(tmp_path, data: bytes, name="x.safetensors"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_reference_writer_output_parses_with_absolute_offsets(tmp_path):
    tensors = {"a": torch.randn(3, 4), "b": torch.zeros(0), "c": torch.tensor(1.5, dtype=torch.bfloat16),
               "d": torch.arange(5, dtype=torch.int64)}
    p = tmp_path / "ref.safetensors"
    save_file(tensors, p, metadata={"format": "pt"})
    h = read_header(p)
    assert h.metadata == {"format": "pt"}
    assert {t.name: (t.dtype, t.shape) for t in h.tensors} == {
        "a": ("F32", (3, 4)), "b": ("F32", (0,)), "c": ("BF16", ()), "d": ("I64", (5,))}
    data = p.read_bytes()
    for t in h.tensors:
        assert t.begin >= h.data_start and t.end <= len(data)
    a = next(t for t in h.tensors if t.name == "a")
    assert data[a.begin:a.end] == tensors["a"].numpy().tobytes()
    assert h.tensors[-1].end == len(data)


def test_corpus_cases_raise_their_rule_in_process(malformed_corpus):
    from guard.artifacts.sniff import sniff_file

    root, cases = malformed_corpus
    checked = 0
    for case in cases:
        if not case.rule.startswith("st-"):
            continue
        with pytest.raises(InputError) as exc:
            sniff_file(root / case.name, case.blamed, policy=ReadPolicy())
        assert exc.value.rule == case.rule, case.name
        assert exc.value.path.endswith(f"{case.name}/{case.blamed}")
        checked += 1
    assert checked >= 30


def test_unaligned_header_is_a_warning_not_an_error(tmp_path):
    raw = json.dumps({"w": tensor()}).encode()
    raw += b" " * ((-len(raw) % 8) + 3)
    h = read_header(_write(tmp_path, st_bytes(None, b"\0" * 8, raw_header=raw)))
    assert [rule for rule, _ in h.warnings] == ["st-header-unaligned"]


def test_zero_rank_and_empty_tensors_are_valid(tmp_path):
    header = {"s": tensor(shape=[], offsets=[0, 4]), "e": tensor(shape=[0, 7], offsets=[4, 4]),
              "e2": tensor(shape=[3, 0], offsets=[4, 4])}
    h = read_header(_write(tmp_path, st_bytes(header, b"\0" * 4)))
    assert {t.name: t.numel for t in h.tensors} == {"s": 1, "e": 0, "e2": 0}


def test_header_cap_and_dtype_allow_list_are_configurable(tmp_path):
    p = _write(tmp_path, st_bytes({"w": tensor("F4", [4], [0, 2])}, b"\0\0"))
    with pytest.raises(InputError) as exc:
        read_header(p)
    assert exc.value.rule == "st-dtype-not-allowed"
    assert read_header(p, policy=ReadPolicy(allowed_dtypes={"F4"})).tensors[0].nbytes == 2
    with pytest.raises(InputError) as exc:
        read_header(p, policy=ReadPolicy(max_header_bytes=16))
    assert exc.value.rule == "st-header-too-large"


def test_f4_odd_element_count_is_misaligned(tmp_path):
    p = _write(tmp_path, st_bytes({"w": tensor("F4", [3], [0, 2])}, b"\0\0"))
    with pytest.raises(InputError) as exc:
        read_header(p, policy=ReadPolicy(allowed_dtypes={"F4"}))
    assert exc.value.rule == "st-misaligned-bits"


def _valid_file() -> bytes:
    return st_bytes({"__metadata__": {"format": "pt"}, "a": tensor(shape=[2], offsets=[0, 8]),
                     "b": tensor("I64", [1], [8, 16])}, b"\1" * 16)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_random_mutations_raise_only_input_errors(tmp_path_factory, data):
    """Flip, truncate or extend a valid file anywhere: the parser either accepts it or raises InputError,
    and whatever it accepts the official loader accepts too (guard is never the laxer of the two)."""
    raw = bytearray(_valid_file())
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "truncate", "append", "len"]))
        if op == "flip" and raw:
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] = data.draw(st.integers(0, 255))
        elif op == "truncate":
            del raw[data.draw(st.integers(0, len(raw))):]
        elif op == "append":
            raw += data.draw(st.binary(max_size=16))
        elif op == "len" and len(raw) >= 8:
            raw[:8] = struct.pack("<Q", data.draw(st.integers(0, 2**64 - 1)))
    p = tmp_path_factory.mktemp("fuzz") / "f.safetensors"
    p.write_bytes(bytes(raw))
    try:
        h = read_header(p)
    except InputError as exc:
        assert exc.rule and exc.rule.startswith("st-")
        return
    assert h.data_start + sum(t.nbytes for t in h.tensors) == len(raw)
    with safe_open(p, framework="numpy") as f:
        assert sorted(f.keys()) == sorted(t.name for t in h.tensors)


@pytest.mark.parametrize("case", ["duplicate-tensor-key", "leading-whitespace", "unknown-tensor-key"])
def test_stricter_than_the_official_loader(malformed_corpus, case):
    """The reference note's differentials: safetensors 0.8 opens these files; guard refuses them."""
    root, _ = malformed_corpus
    path = root / case / "model.safetensors"
    with safe_open(path, framework="numpy") as f:
        assert list(f.keys()) == ["w"]
    with pytest.raises(InputError):
        read_header(path)
