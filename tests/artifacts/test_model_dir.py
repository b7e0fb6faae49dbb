import os
import shutil
import tracemalloc

import pytest
import torch

from attacks.corpus import pickle_payloads as pp
from guard.artifacts import ModelWriter, ReadPolicy, open_model_dir
from guard.errors import InputError
from guard.testing import factory


@pytest.mark.parametrize("family", factory.FAMILIES)
def test_architecture_and_parameter_count_match_transformers(tiny_model_dir, family):
    model = factory.build_model(family)
    md = open_model_dir(tiny_model_dir(family))
    assert md.architecture == type(model).__name__
    assert md.model_type == model.config.model_type
    assert md.parameter_count() == model.num_parameters()
    assert md.refused() == []


def test_sharded_directory_is_one_tensor_table(tiny_model_dir):
    single = open_model_dir(tiny_model_dir("llama"))
    sharded = open_model_dir(tiny_model_dir("llama", shards=3))
    assert sharded.index == "model.safetensors.index.json" and len(sharded.shards) >= 3
    assert {n: (t.dtype, t.shape) for n, t in sharded.tensors.items()} == {
        n: (t.dtype, t.shape) for n, t in single.tensors.items()}
    assert sharded.parameter_count() == single.parameter_count()


def test_minilm_counts_parameters_without_integer_buffers(minilm_dir):
    from transformers import AutoModel

    md = open_model_dir(minilm_dir)
    model = AutoModel.from_pretrained(minilm_dir)
    assert md.architecture == "BertModel" and md.model_type == "bert"
    assert md.parameter_count() == model.num_parameters() == 22_713_216
    # The file also stores embeddings.position_ids (I64 [1, 512]), a buffer, not a parameter.
    assert md.element_count() - md.parameter_count() == 512
    assert md.tensors["embeddings.position_ids"].dtype == "I64"


def test_iter_tensors_matches_the_model_state_dict(tiny_model_dir):
    model = factory.build_model("qwen2")
    state = model.state_dict()
    md = open_model_dir(tiny_model_dir("qwen2", shards=2))
    seen = []
    for name, tensor in md.iter_tensors():
        assert torch.equal(tensor, state[name]), name
        seen.append(name)
    assert sorted(seen) == sorted(md.tensors)
    assert [md.tensors[n].shard for n in seen] == sorted(md.tensors[n].shard for n in seen)  # shard by shard


def test_get_tensor_names_filter_and_device(tiny_model_dir):
    md = open_model_dir(tiny_model_dir("llama"))
    name = "model.embed_tokens.weight"
    assert md.get_tensor(name).shape == md.tensors[name].shape
    assert [n for n, _ in md.iter_tensors(names=[name])] == [name]
    assert md.get_tensor(name, device="meta").device.type == "meta"
    with pytest.raises(KeyError):
        md.get_tensor("nope")


def _validated_copy(tmp_path, tiny_model_dir):
    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir("llama"), d)
    return d, open_model_dir(d), d / "model.safetensors"


def _one_byte_flipped(path) -> bytes:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # a tensor byte: the header, and so the validated layout, stay the same
    return bytes(data)


def _assert_refused_as_changed(md) -> None:
    with pytest.raises(InputError) as exc:
        for _ in md.iter_tensors():
            pass
    assert exc.value.rule == "file-changed"


# Issue 10, hole 4: size and mtime do not identify a file. Every change below keeps both.
def test_same_size_file_with_mtime_set_back_renamed_over_the_original_is_refused(tmp_path, tiny_model_dir):
    d, md, shard = _validated_copy(tmp_path, tiny_model_dir)
    before = shard.stat()
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(_one_byte_flipped(shard))
    os.utime(evil, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(evil, shard)
    assert (shard.stat().st_size, shard.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    _assert_refused_as_changed(md)


def test_in_place_rewrite_with_mtime_set_back_is_refused(tmp_path, tiny_model_dir):
    d, md, shard = _validated_copy(tmp_path, tiny_model_dir)
    before = shard.stat()
    flipped = _one_byte_flipped(shard)
    with open(shard, "r+b") as f:
        f.write(flipped)
    os.utime(shard, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (shard.stat().st_ino, shard.stat().st_size, shard.stat().st_mtime_ns) == (
        before.st_ino, before.st_size, before.st_mtime_ns)
    _assert_refused_as_changed(md)


def test_shard_replaced_by_a_symlink_to_an_identical_copy_is_refused(tmp_path, tiny_model_dir):
    d, md, shard = _validated_copy(tmp_path, tiny_model_dir)
    elsewhere = tmp_path / "elsewhere.safetensors"
    shutil.copy2(shard, elsewhere)
    shard.unlink()
    shard.symlink_to(elsewhere)
    _assert_refused_as_changed(md)


def test_write_while_tensors_are_read_is_refused(tmp_path, tiny_model_dir):
    """A change made after one tensor was read is caught before the next is handed out."""
    d, md, shard = _validated_copy(tmp_path, tiny_model_dir)
    tensors = md.iter_tensors()
    next(tensors)
    before = shard.stat()
    with open(shard, "r+b") as f:
        f.write(_one_byte_flipped(shard))
    os.utime(shard, ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(InputError) as exc:
        for _ in tensors:
            pass
    assert exc.value.rule == "file-changed"


def test_streaming_peak_memory_is_bounded_by_the_largest_tensor(tmp_path):
    sizes_mib = [1, 4, 2, 3, 1]
    with ModelWriter(tmp_path / "m", max_shard_bytes=5 << 20) as w:
        for i, mib in enumerate(sizes_mib):
            w.add(f"t{i}", torch.full(((mib << 20) // 4,), float(i)))
    md = open_model_dir(tmp_path / "m")
    assert len(md.shards) >= 3
    tracemalloc.start()
    try:
        total = 0
        for _, t in md.iter_tensors():
            total += t.numel()
            del t
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == sum(sizes_mib) << 18
    largest = max(sizes_mib) << 20
    assert largest <= peak < largest + (1 << 20), peak


def test_refusable_files_are_findings_and_ignore_paths_skip_them(tmp_path, tiny_model_dir):
    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir("gpt2"), d)
    (d / "extra.bin").write_bytes(pp.direct_global(str(tmp_path / "never")))
    (d / "modeling_evil.py").write_text("print('hi')\n")
    md = open_model_dir(d)
    assert [(f.rule, f.path) for f in md.refused()] == [("pickle-unsafe-global", "extra.bin")]
    assert ("warn", "remote-code-file") in {(f.severity, f.rule) for f in md.findings}
    assert md.file("extra.bin").kind == "pickle" and md.file("modeling_evil.py").kind == "python"
    assert open_model_dir(d, policy=ReadPolicy(ignore_paths=("extra.bin",))).refused() == []


def test_auto_map_in_config_is_refused(tmp_path, tiny_model_dir):
    import json

    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir("llama"), d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_x.MyModel"}
    (d / "config.json").write_text(json.dumps(cfg))
    md = open_model_dir(d)
    assert [f.rule for f in md.refused()] == ["remote-code-auto-map"]
    assert md.architecture == "LlamaForCausalLM"


def test_value_scan_finds_nan_inf_and_bad_bool_bytes(tmp_path):
    with ModelWriter(tmp_path / "m") as w:
        w.add("ok", torch.ones(4))
        w.add("nan", torch.tensor([1.0, float("nan"), float("inf")], dtype=torch.bfloat16))
        w.add("flag", torch.tensor([True, False]))
    path = tmp_path / "m" / "model.safetensors"
    data = bytearray(path.read_bytes())
    md = open_model_dir(tmp_path / "m")
    info = md.tensors["flag"]
    data[info.begin] = 2  # a BOOL byte that is neither 0 nor 1
    path.write_bytes(bytes(data))
    assert open_model_dir(tmp_path / "m").refused() == []  # values are not read by default
    scanned = open_model_dir(tmp_path / "m", policy=ReadPolicy(scan_nan_inf=True))
    assert sorted((f.rule, f.message) for f in scanned.refused()) == [
        ("tensor-bool-value", "tensor 'flag': 1 BOOL bytes other than 0/1"),
        ("tensor-nan-inf", "tensor 'nan': 2 NaN/Inf values"),
    ]


def test_symlinked_shard_allowed_only_by_policy(tmp_path, tiny_model_dir):
    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir("llama"), d)
    (d / "blobs").mkdir()
    os.rename(d / "model.safetensors", d / "blobs" / "abc123")  # the Hugging Face cache layout
    os.symlink("blobs/abc123", d / "model.safetensors")
    with pytest.raises(InputError) as exc:
        open_model_dir(d)
    assert exc.value.rule == "path-symlink"
    md = open_model_dir(d, policy=ReadPolicy(allow_symlinks=True))
    assert md.shards == ["model.safetensors"]
    assert md.parameter_count() == factory.build_model("llama").num_parameters()
