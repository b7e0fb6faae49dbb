"""StageAuditor runs the safe-merge per-input sequence (guard.pipeline.checks.check_input) plus the repo binding:
what that sequence decides, on tiny models, without the Hub (test_audit_e2e.py runs it behind the webhook)."""

from __future__ import annotations

import pathlib
import shutil

import pytest

from guard.service.audit import AuditRequest, StageAuditor
from guard.service.trust import TrustPolicy
from tests.probes.conftest import lm_zoo  # noqa: F401  (the fixture)


@pytest.fixture
def world(tmp_path, tiny_model_dir):
    from guard.signing import keys, sign_model
    from guard.signing.method_key import KeySigner

    private = keys.generate_private_key()
    public = tmp_path / "acme.pub"
    public.write_bytes(keys.public_key_pem(private.public_key()))
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir("llama", seed=1), model)
    trust = TrustPolicy.model_validate({"repos": [{"match": "acme/*", "require_signature": True,
                                                   "signers": [{"key": str(public)}]}]})
    return {"model": model, "trust": trust, "sign": lambda: sign_model(model, signer=KeySigner(private_key=private))}


def audit(world, *, base: pathlib.Path | None = None, repo: str = "acme/model") -> tuple[dict, dict]:
    result = StageAuditor().audit(AuditRequest(repo=repo, ref="refs/heads/main", sha="a" * 40,
                                               model_dir=world["model"], trust=world["trust"].for_repo(repo),
                                               base_dir=base, base_ref=None if base is None else "hf:acme/base@b"))
    return result, {c["id"]: c for c in result["checks"]}


def test_a_signed_model_passes_and_every_later_check_reads_the_verified_bytes(world, tiny_model_dir):
    world["sign"]()
    result, checks = audit(world, base=tiny_model_dir("llama", seed=0))
    assert result["verdict"] == "pass" and result["base"]["ref"] == "hf:acme/base@b"
    verification = checks["signature"]["details"]["verification"]
    assert verification["model_name"] == "model" and "model.safetensors" in verification["files"]
    assert verification["read"] == "in place" or verification["read"].startswith("private copy (")
    assert checks["mergelock"]["status"] == "pass" and checks["mergelock"]["plots"]
    assert checks["weights"]["status"] == "pass"


def test_the_sequence_stops_at_the_first_refusal(world, tiny_model_dir):
    """Unsigned where the trust entry requires a signature: nothing after it reads the unverified weights."""
    result, checks = audit(world, base=tiny_model_dir("llama", seed=0))
    assert result["verdict"] == "fail"
    assert checks["signature"]["status"] == "fail" and "unsigned" in checks["signature"]["message"]
    assert checks["mergelock"]["status"] == "skip" and checks["weights"]["status"] == "skip"
    assert result["base"]["ref"] is None and "not used" in result["base"]["note"]


def test_a_tampered_file_fails_the_signature(world):
    world["sign"]()
    config = world["model"] / "config.json"
    config.write_text(config.read_text() + " ")
    result, checks = audit(world)
    assert result["verdict"] == "fail" and "digest mismatch config.json" in checks["signature"]["message"]


def test_a_base_of_another_architecture_is_named_not_used(world, tiny_model_dir):
    """The base must be comparable; detection says it could not run (a warning) and the report says why."""
    world["sign"]()
    result, checks = audit(world, base=tiny_model_dir("bert", seed=0))
    assert result["verdict"] == "pass" and result["base"]["ref"] is None
    assert checks["mergelock"]["status"] == "warn"
    assert "the base is a bert model with 0 tensor names in common" in result["base"]["note"]


# ---- the probes check -----------------------------------------------------------------------------------------
def _probes(checks: dict) -> dict:
    return checks["probes"]


def test_without_a_base_the_probes_say_skip_with_the_reason(world):
    world["sign"]()
    result, checks = audit(world)
    probes = _probes(checks)
    assert result["verdict"] == "pass" and probes["status"] == "skip"
    assert "compares with the base model, and there is none to use" in probes["message"]


def test_a_base_of_another_architecture_skips_the_probes_naming_it(world, tiny_model_dir):
    world["sign"]()
    _, checks = audit(world, base=tiny_model_dir("bert", seed=0))
    assert _probes(checks)["status"] == "skip" and "bert" in _probes(checks)["message"]


def test_probes_run_against_the_base_with_scores_thresholds_and_plots(world, tiny_model_dir):
    world["sign"]()
    result, checks = audit(world, base=tiny_model_dir("llama", seed=0))
    probes = _probes(checks)
    rows = {r["probe"]: r for r in probes["details"]["probes"]}
    assert rows["canonical"]["status"] == "ran" and rows["canonical"]["threshold"] == 1.0
    assert isinstance(rows["canonical"]["score"], float) and rows["insertion"]["status"] == "skipped"
    assert rows["embedding"]["status"] == "skipped"  # off without peers (docs/service.md), and the message says so
    assert "embedding off: it needs peers" in probes["message"]
    assert any(p["title"].startswith("canonical: ") and p["labels"] for p in probes["plots"])
    assert probes["status"] in ("pass", "warn") and result["verdict"] == "pass"  # a flag warns by default


def _raising_probe(monkeypatch, name: str, run) -> None:
    import dataclasses

    from guard.probes.framework import all_probes

    probes = all_probes()
    monkeypatch.setitem(probes, name, dataclasses.replace(probes[name], run=run))


def test_a_probe_that_errors_fails_the_check_naming_it_and_the_audit_goes_on(world, tiny_model_dir, monkeypatch):
    def boom(inputs, settings):
        raise RuntimeError("a bug in the probe")

    _raising_probe(monkeypatch, "geometry", boom)
    world["sign"]()
    result, checks = audit(world, base=tiny_model_dir("llama", seed=0))
    assert result["verdict"] == "fail" and _probes(checks)["status"] == "fail"
    assert "probe 'geometry' failed: RuntimeError: a bug in the probe" in _probes(checks)["message"]
    assert checks["signature"]["status"] == "pass" and checks["weights"]["status"] == "pass"


def test_the_probe_budget_stops_a_slow_probe(world, tiny_model_dir, monkeypatch):
    import time

    def slow(inputs, settings):
        time.sleep(60)

    _raising_probe(monkeypatch, "canonical", slow)
    world["sign"]()
    started = time.monotonic()
    result = StageAuditor().audit(AuditRequest(repo="acme/model", ref="refs/heads/main", sha="a" * 40,
                                               model_dir=world["model"], trust=world["trust"].for_repo("acme/model"),
                                               base_dir=tiny_model_dir("llama", seed=0), base_ref="hf:acme/base@b",
                                               probe_seconds=0.5))
    assert time.monotonic() - started < 30
    probes = next(c for c in result["checks"] if c["id"] == "probes")
    assert result["verdict"] == "fail" and probes["status"] == "fail"
    assert "probe 'canonical' still running when the probe budget of 0.5 s ran out" in probes["message"]


def test_the_trust_entry_can_turn_the_probes_off(world, tiny_model_dir):
    world["trust"] = TrustPolicy.model_validate({"default": {"probes": {"action": "off"}}})
    _, checks = audit(world, base=tiny_model_dir("llama", seed=0), repo="other/model")
    assert _probes(checks)["status"] == "skip" and "off for this repo" in _probes(checks)["message"]


def test_probe_settings_in_the_trust_file_are_checked_and_paths_rebased(tmp_path):
    from guard.errors import InputError
    from guard.service.trust import load_trust

    path = tmp_path / "trust.yaml"
    path.write_text("repos:\n  - match: 'a/*'\n    probes: {calibration: c.safetensors, peers: [a/x],\n"
                    "             settings: {embedding: {threshold: 4}}}\n")
    entry = load_trust(path).for_repo("a/b")
    assert entry.probes.calibration == str(tmp_path / "c.safetensors") and entry.probes.peers == ("a/x",)
    for bad, why in (("{nonsense: {threshold: 1}}", "unknown probe 'nonsense'"),
                     ("{embedding: {threshold: -1}}", "probes.settings.embedding.threshold")):
        path.write_text(f"default: {{probes: {{settings: {bad}}}}}\n")
        with pytest.raises(InputError, match=why.replace("(", r"\(")):
            load_trust(path)


@pytest.fixture(scope="module")
def lm_zoo_trust(lm_zoo):
    family = lm_zoo["family"]
    peers = tuple((f"zoo/{t}", pathlib.Path(p), None) for t, p in family.experts.items())
    return family, peers


@pytest.mark.parametrize("action", ["warn", "fail"])
def test_the_zoo_badnets_expert_is_flagged_with_its_number_and_threshold(lm_zoo, lm_zoo_trust, action):
    family, peers = lm_zoo_trust
    trust = TrustPolicy.model_validate({"default": {"probes": {"action": action}}}).default
    result = StageAuditor().audit(AuditRequest(repo="zoo/badnets", ref="refs/heads/main", sha="b" * 40,
                                               model_dir=pathlib.Path(lm_zoo["badnets"]), trust=trust, peers=peers,
                                               base_dir=pathlib.Path(family.base), base_ref="hf:zoo/base@0"))
    probes = next(c for c in result["checks"] if c["id"] == "probes")
    assert probes["status"] == action and result["verdict"] == ("fail" if action == "fail" else "pass")
    embedding = next(r for r in probes["details"]["probes"] if r["probe"] == "embedding")
    assert embedding["flagged"] and embedding["score"] >= embedding["threshold"] == 8.0
    assert "embedding: row 7 ('#')" in probes["message"] and "threshold 8)" in probes["message"]
    assert len(probes["details"]["peers"]) == 4


def test_a_clean_zoo_expert_passes_the_probes(lm_zoo_trust):
    family, peers = lm_zoo_trust
    trust = TrustPolicy().default
    result = StageAuditor().audit(AuditRequest(repo="zoo/sort", ref="refs/heads/main", sha="c" * 40,
                                               model_dir=pathlib.Path(family.experts["sort"]), trust=trust,
                                               peers=tuple(p for p in peers if p[0] != "zoo/sort"),
                                               base_dir=pathlib.Path(family.base), base_ref="hf:zoo/base@0"))
    probes = next(c for c in result["checks"] if c["id"] == "probes")
    assert probes["status"] == "pass", probes["message"]
    assert "ran against hf:zoo/base@0 and 3 peers, none flagged" in probes["message"]
