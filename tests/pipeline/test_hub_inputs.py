"""Hub inputs (hf:org/name@sha) through guard's Hub client and the loopback fake Hub: fetched once into
guard's cache, checked like local inputs, no network when cached."""

from __future__ import annotations

import shutil

import pytest
import yaml

from guard.pipeline.safe_merge import safe_merge


@pytest.fixture
def online(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("GUARD_CACHE", str(tmp_path / "guard-cache"))


def _config(ws, ref, name):
    raw = {"merge_method": "task_arithmetic", "base_model": str(ws.base),
           "models": [{"model": str(ws.experts[0]), "parameters": {"weight": 0.5}},
                      {"model": ref, "parameters": {"weight": 0.5}}]}
    path = ws.root / name
    path.write_text(yaml.safe_dump(raw))
    return path


def _merge(ws, config, out):
    return safe_merge(config, ws.root / out, verifier_options={"public_key": ws.public_key}, signer=ws.signer())


def test_hub_input_is_fetched_once_checked_and_recorded(workspace, online, monkeypatch):
    from guard.pipeline.provenance import verify_provenance
    from guard.signing import load_verifier
    from guard.testing.fake_hub import FakeHub

    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        sha = hub.push("acme/expert-b", workspace.experts[1])
        ref = f"hf:acme/expert-b@{sha}"
        config = _config(workspace, ref, "hub.yml")
        record = _merge(workspace, config, "out")
        assert record.verdict == "merged", [c.one_line() for c in record.refusals()]
        assert [i["label"] for i in record.inputs][-1] == ref
        assert any(c.check == "signature" and c.input == ref and c.verdict == "pass" for c in record.checks)
        # a byte flipped on the Hub: a new commit, whose signature no longer matches its bytes
        tampered = workspace.root / "tampered"
        shutil.copytree(workspace.experts[1], tampered)
        data = bytearray((tampered / "model.safetensors").read_bytes())
        data[-2] ^= 4
        (tampered / "model.safetensors").write_bytes(bytes(data))
        bad_sha = hub.push("acme/expert-b", tampered)
        refused = _merge(workspace, _config(workspace, f"hf:acme/expert-b@{bad_sha}", "bad.yml"), "out-bad")
        assert refused.verdict == "refused" and refused.refusals()[0].check == "signature"
    # the fake Hub is gone: the cached revision still merges, with no network
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    again = _merge(workspace, config, "out-again")
    assert again.verdict == "merged", [c.one_line() for c in again.refusals()]
    report = verify_provenance(workspace.root / "out", verifier=load_verifier(public_key=workspace.public_key))
    hub_input = next(i for i in report["inputs"] if i["name"] == ref)
    assert hub_input["reverified"], hub_input


def test_a_malformed_hub_reference_is_bad_input(workspace, online):
    from guard.errors import InputError

    with pytest.raises(InputError) as info:
        _merge(workspace, _config(workspace, "hf:acme/expert-b@main", "branch.yml"), "out")
    assert info.value.rule == "hub-revision"
