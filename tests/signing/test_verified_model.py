"""Verify what you load: tensors only ever come from the bytes that were hashed and matched."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from guard.errors import VerificationError
from guard.signing import load_signer, load_verifier, open_verified_model, sign_model
from tests.signing.conftest import PASSPHRASE


@pytest.fixture
def signed(model_copy, keypair):
    sign_model(model_copy, signer=load_signer(key=keypair[1], key_passphrase=PASSPHRASE))
    return model_copy


def _evil_weights(path):
    tensors = load_file(str(path))
    tensors = {name: np.full_like(value, 666.0) for name, value in tensors.items()}
    evil = path.with_name("evil.safetensors")
    save_file(tensors, str(evil), metadata={"format": "pt"})
    return evil


def test_file_swapped_after_verification_never_reaches_a_tensor(signed, keypair):
    original = load_file(str(signed / "model.safetensors"))
    evil = _evil_weights(signed / "model.safetensors")
    shutil.move(evil, signed.parent / "evil.safetensors")
    with open_verified_model(signed, verifier=load_verifier(public_key=keypair[2])) as model:
        # The attacker swaps the file (rename over it) and also rewrites it in place, after verification.
        os.replace(signed.parent / "evil.safetensors", signed / "model.safetensors")
        swapped = load_file(str(signed / "model.safetensors"))
        assert float(swapped["embed.weight"][0, 0]) == 666.0  # the original directory really changed
        tensor = model.get_tensor("embed.weight")
        np.testing.assert_array_equal(tensor.numpy(), original["embed.weight"])
        assert model.root != signed and model.verification.root_digest
        staged = model.root
        assert (staged / "model.safetensors").stat().st_mode & 0o777 == 0o400
        assert not (staged / "model.sig").exists()  # only covered (hashed) files are staged
    assert not staged.exists()  # the private copy is gone afterwards


def test_tampered_before_loading_is_refused_and_nothing_is_left(signed, keypair, tmp_path):
    evil = _evil_weights(signed / "model.safetensors")
    os.replace(evil, signed / "model.safetensors")
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(VerificationError, match="digest mismatch model.safetensors"):
        with open_verified_model(signed, verifier=load_verifier(public_key=keypair[2]), staging_dir=staging):
            raise AssertionError("a tampered model must not be opened")
    assert list(staging.iterdir()) == []


def test_single_file_model_is_staged_as_a_directory_holding_it(tmp_path, keypair):
    weights = tmp_path / "weights.safetensors"
    save_file({"w": np.arange(12, dtype=np.float32).reshape(3, 4)}, str(weights), metadata={"format": "pt"})
    signature = sign_model(weights, signer=load_signer(key=keypair[1], key_passphrase=PASSPHRASE))
    with open_verified_model(weights, signature=signature, verifier=load_verifier(public_key=keypair[2])) as model:
        assert [f.relpath for f in model.files] == ["weights.safetensors"]
        np.testing.assert_array_equal(model.get_tensor("w").numpy(), np.arange(12, dtype=np.float32).reshape(3, 4))
        assert model.verification.files == (".",)
