"""The streaming weight pass: memory bounded by a block, peers measured like the candidate, clear errors."""

from __future__ import annotations

import pytest

from guard.artifacts import open_model_dir
from guard.errors import InputError
from guard.probes.inputs import ScanInputs
from guard.probes.settings import ProbeSettings
from guard.probes.weights import weight_pass


def test_one_block_in_memory_at_a_time(llama_set):
    candidate = open_model_dir(llama_set["ft3"])
    inputs = ScanInputs(candidate=candidate, base=open_model_dir(llama_set["base"]),
                        peers=[open_model_dir(llama_set[f"ft{i}"]) for i in range(3)])
    wp = weight_pass(inputs, ProbeSettings())
    total = candidate.tensor_bytes()
    groups = [[n for n in candidate.tensors if n.startswith(f"model.layers.{i}.{kind}.")]
              for i in range(2) for kind in ("self_attn", "mlp")]
    largest_group = max(max(sum(candidate.tensors[n].nbytes for n in g) for g in groups),
                        max(t.nbytes for t in candidate.tensors.values()))
    assert wp.peak_bytes <= largest_group < total / 2
    assert set(wp.candidate.stats) == set(wp.compared) and len(wp.peers) == 3
    assert all(set(p.stats) == set(wp.compared) for p in wp.peers)
    assert "model.embed_tokens.weight" in wp.row_tensors


def test_a_base_of_another_shape_is_refused(llama_set, tiny_model_dir):
    inputs = ScanInputs(candidate=open_model_dir(llama_set["ft0"]), base=open_model_dir(tiny_model_dir("gpt2")))
    with pytest.raises(InputError, match="shares no floating-point tensor"):
        weight_pass(inputs, ProbeSettings())


def test_synthetic_peers_do_not_flag_each_other(llama_set):
    from guard.probes.scan import scan

    inputs = ScanInputs(candidate=open_model_dir(llama_set["ft3"]), base=open_model_dir(llama_set["base"]),
                        peers=[open_model_dir(llama_set[f"ft{i}"]) for i in range(3)])
    report = scan(inputs, probes=["canonical", "geometry", "embedding"])
    assert not report.decision.flagged, report.decision.reasons
