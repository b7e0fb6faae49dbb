"""The gate: merges what passes, refuses (writing nothing, naming the reason) what does not."""

from __future__ import annotations

import pathlib

import pytest
import torch

from guard.artifacts import open_model_dir
from guard.errors import InputError
from guard.pipeline.decision import Check
from guard.pipeline.safe_merge import safe_merge
from guard.pipeline.stages import STAGES, Stage


def _run(ws, config=None, **kwargs):
    kwargs.setdefault("verifier_options", {"public_key": ws.public_key})
    kwargs.setdefault("signer", ws.signer())
    out = ws.root / "out"
    record = safe_merge(config or ws.config(), out, **kwargs)
    return record, out


def _refused(record, out: pathlib.Path, check: str, rule: str | None = None) -> Check:
    assert record.verdict == "refused", [c.one_line() for c in record.checks]
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".out.")], "staging left behind"
    first = record.refusals()[0]
    assert first.check == check, first.one_line()
    if rule is not None:
        assert first.rule == rule, first.one_line()
    return first


def test_a_signed_merge_passes_every_check_and_equals_the_engine_merge(workspace):
    from guard.merge import merge_state_dicts

    record, out = _run(workspace)
    assert record.verdict == "merged", [c.one_line() for c in record.refusals()]
    assert {c.check for c in record.checks} >= {"policy:method", "artifacts", "signature", "mergelock", "merge",
                                                "unchanged-after-verification"}
    assert all(c.verdict in ("pass", "skip") for c in record.checks), [c.one_line() for c in record.checks]
    assert (out / "model.sig").is_file() and (out / "guard_provenance.json").is_file()
    assert [i["role"] for i in record.inputs] == ["base", "model", "model"]
    assert all(i["root_digest"].startswith("sha256:") for i in record.inputs)
    merged = dict(open_model_dir(out).iter_tensors())
    expected = merge_state_dicts("ties", dict(open_model_dir(workspace.base).iter_tensors()),
                                 [dict(open_model_dir(e).iter_tensors()) for e in workspace.experts],
                                 weight=0.5, density=0.5)
    assert merged.keys() == expected.keys() and all(torch.equal(merged[k], expected[k]) for k in merged)
    assert open_model_dir(out).shards == open_model_dir(workspace.base).shards  # the base's sharding


def test_unsigned_input_is_refused(workspace):
    (workspace.experts[1] / "model.sig").unlink()
    record, out = _run(workspace)
    first = _refused(record, out, "signature", "signature-missing")
    assert first.input == str(workspace.experts[1]) and "unsigned" in first.message


def test_untrusted_signer_is_refused(workspace):
    from guard.signing import sign_model

    sign_model(workspace.experts[0], signer=workspace.signer(other=True))
    record, out = _run(workspace)
    first = _refused(record, out, "signature", "signature-untrusted")
    assert "not by a trusted signer" in first.message and first.input == str(workspace.experts[0])


@pytest.mark.parametrize("which", ["base", "expert"])
def test_a_flipped_byte_in_any_input_is_refused(workspace, which):
    target = workspace.base if which == "base" else workspace.experts[1]
    shard = sorted(target.glob("*.safetensors"))[-1]
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0x10
    shard.write_bytes(bytes(data))
    record, out = _run(workspace)
    first = _refused(record, out, "signature")
    assert shard.name in first.message


def test_an_input_swapped_after_verification_is_refused(workspace):
    victim = workspace.experts[0] / "model.safetensors"

    class Swapper(Stage):
        name = "probes"

        def check_input(self, subject, context):
            if subject.source == workspace.experts[0]:
                # After verification: replace the file with other (validly shaped) bytes.
                replacement = victim.with_suffix(".new")
                replacement.write_bytes(victim.read_bytes())
                replacement.replace(victim)
            return [Check("probe:swap", "pass", "stub probe")]

    record, out = _run(workspace, stages=[(Swapper(), {})])
    first = _refused(record, out, "unchanged-after-verification", "input-changed")
    assert first.input == str(workspace.experts[0]) and first.file == "model.safetensors"


def test_a_configured_stage_that_does_not_exist_is_bad_input(workspace, monkeypatch):
    monkeypatch.delitem(STAGES, "dam")  # a build without the DAM stage
    with pytest.raises(InputError) as info:
        _run(workspace, config=workspace.config(guard={"dam": {"strength": 1}}))
    assert info.value.rule == "stage-unavailable"


def test_a_disallowed_method_is_refused_before_reading_any_input(workspace):
    policy = workspace.root / "ta-only.yaml"
    policy.write_text("version: 1\nname: ta-only\nmerge:\n  allowed_methods: [task_arithmetic]\n")
    (workspace.base / "model.sig").unlink()  # would refuse too, but the method check comes first
    record, out = _run(workspace, policy=policy)
    first = _refused(record, out, "policy:method", "method-not-allowed")
    assert first.value == "ties" and first.threshold == ["task_arithmetic"]
    assert not record.inputs


def test_mergelock_protected_input_is_refused_without_its_key_and_merged_with_it(workspace):
    from guard.lock.keys import generate_lock_key, write_lock_key
    from guard.lock.protect import protect_model

    key = generate_lock_key()
    write_lock_key(key, workspace.root / "a.lockkey")
    protected = workspace.root / "expert-a-protected"
    protect_model(workspace.experts[0], protected, key=key, signer=workspace.signer())
    experts = [protected, workspace.experts[1]]
    record, out = _run(workspace, config=workspace.config(experts=experts))
    first = _refused(record, out, "mergelock")
    assert "MergeLock-protected" in first.message and first.value >= first.threshold

    config = workspace.config(experts=experts, name="unlock.yml", guard={"lock_keys": {str(protected): "a.lockkey"}})
    record, out = _run(workspace, config=config)
    assert record.verdict == "merged", [c.one_line() for c in record.refusals()]
    lock_check = next(c for c in record.checks if c.check == "mergelock" and c.input == str(protected))
    assert f"unlocked with lock key {key.key_id}" in lock_check.message


def test_research_policy_warns_and_merges_unsigned_inputs(workspace):
    for d in (workspace.base, *workspace.experts):
        (d / "model.sig").unlink()
    (workspace.experts[0] / "modeling_x.py").write_text("print('custom code')\n")
    record, out = _run(workspace, policy="research", verifier_options={}, signer=None)
    assert record.verdict == "merged" and out.is_dir()
    warned = {(c.check, c.rule) for c in record.checks if c.verdict == "warn"}
    assert ("signature", "signature-missing") in warned and ("artifacts", "remote-code-file") in warned
    assert not (out / "model.sig").exists() and not (out / "modeling_x.py").exists()


def test_strict_policy_refuses_remote_code(workspace):
    (workspace.experts[0] / "modeling_x.py").write_text("print('custom code')\n")
    from guard.signing import sign_model

    sign_model(workspace.experts[0], signer=workspace.signer())
    record, out = _run(workspace)
    first = _refused(record, out, "artifacts", "remote-code-file")
    assert first.file == "modeling_x.py"
