"""The probe stage in `guard safe-merge`: every model input is probed against the base and the other inputs
(the small LM zoo, seed 0, signed like a publisher would), a flagged input refuses the merge naming the
probe, the input, the score and the threshold, and a clean merge records each probe's pass."""

from __future__ import annotations

import pathlib
import shutil

import pytest
import yaml

from guard.pipeline.safe_merge import safe_merge
from tests.pipeline.conftest import PASSPHRASE, write_key_pair
from tests.probes.conftest import lm_zoo  # noqa: F401  (the fixture)


@pytest.fixture(scope="module")
def signed_zoo(lm_zoo, tmp_path_factory):
    """The zoo's base, its four clean experts and the BadNets expert, copied and signed."""
    from guard.signing import load_signer, sign_model

    root = tmp_path_factory.mktemp("probe-stage")
    write_key_pair(root / "publisher.key", root / "publisher.pub")
    signer = load_signer(key=root / "publisher.key", key_passphrase=PASSPHRASE)
    family = lm_zoo["family"]
    sources = {"base": family.base, "badnets": lm_zoo["badnets"], **family.experts}
    for name, src in sources.items():
        shutil.copytree(src, root / name)
        sign_model(root / name, signer=signer)
    return root


def _merge(root: pathlib.Path, experts: list[str], tmp_path, guard: dict | None = None):
    config = tmp_path / "merge.yml"
    raw = {"merge_method": "task_arithmetic", "base_model": str(root / "base"),
           "models": [{"model": str(root / e), "parameters": {"weight": 0.3}} for e in experts]}
    if guard is not None:
        raw["guard"] = guard
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    record = safe_merge(config, out, verifier_options={"public_key": root / "publisher.pub"}, signer=None)
    return record, out


def test_a_backdoored_input_refuses_the_merge(signed_zoo, tmp_path):
    record, out = _merge(signed_zoo, ["reverse", "modadd", "rotate", "badnets"], tmp_path, guard={"probes": {}})
    assert record.verdict == "refused" and not out.exists()
    first = record.refusals()[0]
    assert (first.check, first.rule, first.input) == ("probe:embedding", "probe-embedding", str(signed_zoo / "badnets"))
    assert first.value >= first.threshold and "'#'" in first.message  # the trigger token's row
    clean = {c.input for c in record.checks if c.check == "probe:embedding" and c.verdict == "pass"}
    assert clean == {str(signed_zoo / t) for t in ("reverse", "modadd", "rotate")}


def test_clean_inputs_merge_with_every_probe_recorded(signed_zoo, tmp_path):
    record, out = _merge(signed_zoo, ["sort", "reverse", "modadd", "rotate"], tmp_path, guard={"probes": {}})
    assert record.verdict == "merged", [c.one_line() for c in record.refusals()]
    probes = [c for c in record.checks if c.check.startswith("probe:")]
    ran = {(c.input, c.check) for c in probes if c.verdict == "pass"}
    for expert in ("sort", "reverse", "modadd", "rotate"):
        assert {(str(signed_zoo / expert), f"probe:{p}") for p in ("canonical", "geometry", "embedding")} <= ran
    skipped = {c.check for c in probes if c.verdict == "skip"}
    assert "probe:insertion" in skipped  # no calibration inputs: reported, not silently dropped


def test_a_policy_with_probe_thresholds_runs_them_and_they_apply(signed_zoo, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({"version": 1, "name": "lenient-embedding", "signatures": {"required": True},
                                      "probes": {"embedding": {"threshold": 1000.0}}}))
    config = tmp_path / "merge.yml"
    config.write_text(yaml.safe_dump({
        "merge_method": "task_arithmetic", "base_model": str(signed_zoo / "base"),
        "models": [{"model": str(signed_zoo / e), "parameters": {"weight": 0.3}} for e in ("reverse", "badnets")],
        "guard": {"policy": str(policy)}}))  # no probes section: the policy's thresholds enable the stage
    record = safe_merge(config, tmp_path / "out", verifier_options={"public_key": signed_zoo / "publisher.pub"})
    embedding = next(c for c in record.checks if c.check == "probe:embedding" and c.input.endswith("badnets"))
    assert embedding.threshold == 1000.0 and embedding.verdict == "pass"
