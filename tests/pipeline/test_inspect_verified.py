"""Issue 10, hole 5: `guard inspect --verify-*` checks the signature and reads weights only from the bytes it
hashed, so a model swapped after (or during) verification never reaches a tensor the report is based on."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from safetensors.numpy import load_file, save_file

from guard.artifacts import ReadPolicy
from guard.signing import load_signer, load_verifier, sign_model
from tests.helpers import run_guard
from tests.signing.conftest import PASSPHRASE, keypair  # noqa: F401 - the signing tests' key fixture


@pytest.fixture
def signed_llama(tiny_model_dir, tmp_path, keypair):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir("llama"), model)
    sign_model(model, signer=load_signer(key=keypair[1], key_passphrase=PASSPHRASE))
    return model


def test_verified_inspect_reports_the_signer(signed_llama, keypair):
    result = run_guard("inspect", signed_llama, "--json", "--verify-key", keypair[2])
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["verification"]["verified"] and report["verification"]["signer"].startswith("key ")
    assert report["root"] == str(signed_llama) and report["verdict"] == "clean"


def test_verified_inspect_refuses_a_tampered_model(signed_llama, keypair):
    from attacks.tamper import flip_byte

    flip_byte(signed_llama / "model.safetensors")
    result = run_guard("inspect", signed_llama, "--verify-key", keypair[2])
    assert result.returncode == 1 and "digest mismatch model.safetensors" in result.stderr


@pytest.mark.parametrize("others_can_write", [True, False], ids=["copy", "in-place"])
def test_weights_swapped_after_verification_never_reach_the_value_scan(signed_llama, keypair, monkeypatch,
                                                                      others_can_write):
    """The value scan runs after verification; the attacker swaps in NaN weights just before it reads. From
    the private copy (another user could write the directory) the scan sees the verified bytes; in place
    (only this user could have swapped) the swapped file is refused, never scanned."""
    import guard.artifacts.tensors as tensors
    from guard.errors import InputError
    from guard.pipeline.inspect import inspect_model

    if others_can_write:
        signed_llama.chmod(0o775)
    shard = signed_llama / "model.safetensors"
    poisoned = {name: value * float("nan") for name, value in load_file(str(shard)).items()}
    evil = signed_llama.parent / "evil.safetensors"
    save_file(poisoned, str(evil), metadata={"format": "pt"})
    real_scan = tensors.scan_values
    scanned = []

    def swap_then_scan(model):
        os.replace(evil, shard)
        scanned.append(model.root)
        return real_scan(model)

    monkeypatch.setattr(tensors, "scan_values", swap_then_scan)

    def inspect():
        return inspect_model(signed_llama, policy=ReadPolicy(scan_nan_inf=True),
                             verifier=load_verifier(public_key=keypair[2]))

    if others_can_write:
        report = inspect()
        assert [f for f in report["findings"] if f["rule"] == "tensor-nan-inf"] == []
        assert report["verification"]["root_digest"].startswith("sha256:")
        assert report["verification"]["read"].startswith("private copy")
    else:
        with pytest.raises(InputError, match="file-changed"):
            inspect()
        assert scanned == [signed_llama.resolve()]
    assert not evil.exists() and load_file(str(shard))  # the swap really happened
