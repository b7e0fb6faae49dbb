import json
import os

import pytest
import torch
from safetensors import safe_open

from guard.artifacts import ModelWriter, open_model_dir
from guard.errors import InputError
from guard.testing import factory


def _siblings(path):
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


def test_single_shard_has_no_index_and_loads_with_the_reference_loader(tmp_path):
    tensors = {"a": torch.randn(3, 4), "b": torch.arange(6, dtype=torch.int64).reshape(2, 3),
               "c": torch.tensor(2.5, dtype=torch.float16), "d": torch.zeros(0, 3)}
    with ModelWriter(tmp_path / "out", metadata={"guard": "test"}) as w:
        for k, v in tensors.items():
            w.add(k, v)
    assert sorted(os.listdir(tmp_path / "out")) == ["model.safetensors"]
    with safe_open(tmp_path / "out" / "model.safetensors", framework="pt") as f:
        assert f.metadata() == {"format": "pt", "guard": "test"}
        for k, v in tensors.items():
            assert torch.equal(f.get_tensor(k), v)
    assert _siblings(tmp_path / "out") == []


def test_shards_respect_the_byte_bound_and_the_index_is_consistent(tmp_path):
    sizes = [100, 100, 100, 600, 100, 50]  # float32 elements; max shard 1000 bytes; 600*4 > bound alone
    with ModelWriter(tmp_path / "out", max_shard_bytes=1000) as w:
        for i, n in enumerate(sizes):
            w.add(f"t{i}", torch.full((n,), float(i)))
    md = open_model_dir(tmp_path / "out")
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert md.shards == sorted(set(index["weight_map"].values())) and len(md.shards) == 4
    assert index["metadata"]["total_size"] == sum(sizes) * 4
    for shard in md.shards:
        held = [t for t in md.tensors.values() if t.shard == shard]
        assert sum(t.nbytes for t in held) <= 1000 or len(held) == 1
    for name, t in md.iter_tensors():
        assert torch.equal(t, torch.full((sizes[int(name[1:])],), float(name[1:])))


def test_transformers_loads_a_written_sharded_model(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    src = tiny_model_dir("llama")
    model = factory.build_model("llama")
    with ModelWriter(tmp_path / "out", max_shard_bytes=100_000) as w:
        for name, tensor in open_model_dir(src).iter_tensors():
            w.add(name, tensor)
        w.copy_file(src / "config.json", "config.json")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    inputs = factory.sample_inputs(model)
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).logits, model(**inputs).logits)
    assert len(open_model_dir(tmp_path / "out").shards) > 1


def test_refuses_to_overwrite_unless_asked(tmp_path):
    out = tmp_path / "out"
    with ModelWriter(out) as w:
        w.add("a", torch.ones(1))
    with pytest.raises(InputError) as exc:
        ModelWriter(out)
    assert exc.value.rule == "output-exists"
    with ModelWriter(out, overwrite=True) as w:
        w.add("b", torch.zeros(2))
    assert list(open_model_dir(out).tensors) == ["b"]
    assert _siblings(out) == []


def test_exception_leaves_no_output_and_no_temp_dir(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with ModelWriter(out, max_shard_bytes=8) as w:
            w.add("a", torch.ones(4))
            w.add("b", torch.ones(4))  # flushes shard 1 to the temp dir
            raise RuntimeError("boom")
    assert not out.exists() and _siblings(out) == []


def test_files_names_and_duplicates_are_checked(tmp_path):
    src = tmp_path / "tok.json"
    src.write_text('{"x": 1}')
    with ModelWriter(tmp_path / "out") as w:
        w.add("a", torch.ones(1))
        w.copy_file(src, "tokenizer/tok.json")
        w.write_json("config.json", {"model_type": "llama"})
        with pytest.raises(InputError):
            w.write_json("../escape.json", {})
        with pytest.raises(ValueError):
            w.add("a", torch.ones(1))
        with pytest.raises(ValueError):
            w.write_json("model.safetensors", {})
    md = open_model_dir(tmp_path / "out")
    assert [f.relpath for f in md.files] == ["config.json", "model.safetensors", "tokenizer/tok.json"]
    assert md.model_type == "llama"


# ---- SIGKILL at random points -------------------------------------------------------------------------


def _absent_or_complete(out) -> str:
    from tests.artifacts.writer_kill_harness import N_TENSORS, expected

    if not out.exists():
        return "absent"
    md = open_model_dir(out)
    assert sorted(md.tensors) == [f"t{i:02d}" for i in range(N_TENSORS)]
    assert len(md.shards) == N_TENSORS
    for name, t in md.iter_tensors():
        assert torch.equal(t, expected(int(name[1:])))
    assert md.model_type == "llama"
    return "complete"


def test_sigkill_at_20_random_points_leaves_output_absent_or_complete(tmp_path):
    import subprocess
    import sys

    from tests.helpers import REPO_ROOT

    proc = subprocess.run([sys.executable, "-m", "tests.artifacts.writer_kill_harness", str(tmp_path), "20", "20261123"],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert _absent_or_complete(tmp_path / "calibrate" / "out") == "complete"
    outcomes = [_absent_or_complete(tmp_path / f"trial{i}" / "out") for i in range(20)]
    print("write took", summary["duration"], "s; outcomes", outcomes)
    # Kill points are uniform over 1.2x a full write, so most land mid-write: the output must then be absent.
    assert sum(summary["killed"]) >= 10 and "absent" in outcomes, (summary, outcomes)


def test_copy_support_files_takes_config_and_tokenizer_but_not_weights_or_refused(tmp_path, minilm_dir):
    import shutil

    src = tmp_path / "src"
    shutil.copytree(minilm_dir, src)
    (src / "evil.bin").write_bytes(b"\x80\x02cbuiltins\nopen\n.")
    md = open_model_dir(src)
    with ModelWriter(tmp_path / "out") as w:
        for name, t in md.iter_tensors(names=["embeddings.word_embeddings.weight"]):
            w.add(name, t)
        copied = w.copy_support_files(md, skip=("README.md",))
    assert "config.json" in copied and "vocab.txt" in copied and "1_Pooling/config.json" in copied
    assert "evil.bin" not in copied and "model.safetensors" not in copied and "README.md" not in copied
    out = open_model_dir(tmp_path / "out")
    assert out.architecture == "BertModel" and out.refused() == []
    assert (tmp_path / "out" / "tokenizer.json").read_bytes() == (src / "tokenizer.json").read_bytes()
