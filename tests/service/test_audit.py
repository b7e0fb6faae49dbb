"""StageAuditor runs the safe-merge per-input sequence (guard.pipeline.checks.check_input) plus the repo binding:
what that sequence decides, on tiny models, without the Hub (test_audit_e2e.py runs it behind the webhook)."""

from __future__ import annotations

import pathlib
import shutil

import pytest

from guard.service.audit import AuditRequest, StageAuditor
from guard.service.trust import TrustPolicy


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
