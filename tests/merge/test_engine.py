"""The streaming engine: output layout mirrors the base's shards, values equal the in-memory merge,
dtypes follow dtype/out_dtype, mismatched inputs are refused before anything is written."""

from __future__ import annotations

import json

import pytest
import torch

from guard.artifacts import open_model_dir
from guard.errors import InputError
from guard.merge import merge_state_dicts
from guard.merge.config import parse_merge_config
from guard.merge.engine import MergeJob, TensorHook, merged_tensors, run_merge


def _job(base, experts, *, method="ties", params=None, hooks=(), **top):
    raw = {"merge_method": method, "base_model": str(base),
           "models": [{"model": str(e), "parameters": params or {"weight": 0.5, "density": 0.4}} for e in experts], **top}
    config = parse_merge_config(raw, where="test.yml")
    return MergeJob.from_config(config, base=open_model_dir(base), models=[open_model_dir(e) for e in experts],
                                device="cpu", hooks=hooks)


def test_output_mirrors_the_base_shards_and_equals_the_in_memory_merge(merge_inputs, tmp_path):
    base, experts = merge_inputs
    progress = []
    summary = run_merge(_job(base, experts), tmp_path / "out", progress=lambda done, total, name: progress.append(done))
    out = open_model_dir(tmp_path / "out")
    src = open_model_dir(base)
    assert out.shards == src.shards and len(out.shards) > 1 and out.index == src.index
    for name, info in src.tensors.items():
        assert (out.tensors[name].shard, out.tensors[name].shape) == (info.shard, info.shape)
    assert json.loads((tmp_path / "out" / "config.json").read_text())["model_type"] == "llama"
    assert not (tmp_path / "out" / "model.sig").exists()
    expected = merge_state_dicts("ties", dict(src.iter_tensors()),
                                 [dict(open_model_dir(e).iter_tensors()) for e in experts], weight=0.5, density=0.4)
    got = dict(out.iter_tensors())
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    assert summary.tensors == len(src.tensors) and progress[-1] == summary.input_bytes


def test_merged_tensors_streams_what_run_merge_writes_without_writing(merge_inputs, tmp_path):
    # dare_ties draws random masks: the stream must make the same draws in the same order as run_merge.
    base, experts = merge_inputs
    run_merge(_job(base, experts, method="dare_ties"), tmp_path / "out")
    written = dict(open_model_dir(tmp_path / "out").iter_tensors())
    source = dict(open_model_dir(base).iter_tensors())
    streamed = {}
    for item in merged_tensors(_job(base, experts, method="dare_ties")):
        assert torch.equal(item.base, source[item.name])
        streamed[item.name] = item.merged
    assert list(streamed) == sorted(written)
    assert all(torch.equal(streamed[k].to(written[k].dtype), written[k]) for k in written)
    assert any(not torch.equal(written[k], source[k]) for k in written)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_dtype_and_out_dtype(merge_inputs, tmp_path):
    base, experts = merge_inputs
    run_merge(_job(base, experts, dtype="float32", out_dtype="float16"), tmp_path / "out")
    out = open_model_dir(tmp_path / "out")
    assert set(out.dtype_counts()) == {"F16"}
    assert json.loads((tmp_path / "out" / "config.json").read_text()).get("dtype", "float16") == "float16"


def test_hooks_see_every_group_and_may_change_the_result(merge_inputs, tmp_path):
    base, experts = merge_inputs

    class Zero(TensorHook):
        seen = []

        def prepare(self, group):
            self.seen.append((group.name, len(group.models)))

        def finish(self, name, merged, *, group):
            return torch.zeros_like(merged) if name.endswith("norm.weight") else merged

    hook = Zero()
    run_merge(_job(base, experts, hooks=[hook]), tmp_path / "out")
    out = dict(open_model_dir(tmp_path / "out").iter_tensors())
    assert len(hook.seen) == len(out) and all(n == 2 for _, n in hook.seen)
    assert all(not t.any() for k, t in out.items() if k.endswith("norm.weight"))


def test_filters_choose_per_tensor_values(merge_inputs, tmp_path):
    base, experts = merge_inputs
    params = {"weight": [{"filter": "lm_head", "value": 0.0}, {"value": 1.0}]}
    run_merge(_job(base, experts, method="task_arithmetic", params=params), tmp_path / "out")
    out = dict(open_model_dir(tmp_path / "out").iter_tensors())
    src = dict(open_model_dir(base).iter_tensors())
    assert torch.equal(out["lm_head.weight"], src["lm_head.weight"])
    assert not torch.equal(out["model.norm.weight"], src["model.norm.weight"])


def test_mismatched_inputs_are_refused_before_writing(merge_inputs, tmp_path, tiny_model_dir):
    base, experts = merge_inputs
    other = tiny_model_dir("qwen2")
    with pytest.raises(InputError) as info:
        run_merge(_job(base, [experts[0], other]), tmp_path / "out")
    assert info.value.rule in ("merge-tensor-mismatch", "merge-shape")
    assert not (tmp_path / "out").exists()


def test_cuda_without_a_gpu_is_bad_input(merge_inputs, tmp_path, monkeypatch):
    base, experts = merge_inputs
    job = _job(base, experts)
    job.device = "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a machine without one, GPU or not here
    with pytest.raises(InputError) as info:
        run_merge(job, tmp_path / "out")
    assert info.value.rule == "merge-device"
