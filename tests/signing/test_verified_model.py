"""Verify what you load: tensors only ever come from the bytes that were hashed and matched."""

from __future__ import annotations

import os
import shutil
import stat

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from guard.errors import InputError, VerificationError
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


def _others_can_write(model):
    """What another user's write access looks like to guard: a group-writable model directory."""
    model.chmod(model.stat().st_mode | stat.S_IWGRP)


def test_file_swapped_after_verification_never_reaches_a_tensor(signed, keypair):
    """Someone else can write the directory: guard reads a private copy, so a swap changes nothing."""
    _others_can_write(signed)
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
        assert model.verification.read.startswith("private copy") and "writable by group" in model.verification.read
        staged = model.root
        assert (staged / "model.safetensors").stat().st_mode & 0o777 == 0o400
        assert not (staged / "model.sig").exists()  # only covered (hashed) files are staged
    assert not staged.exists()  # the private copy is gone afterwards


def test_nobody_else_can_write_so_the_model_is_read_in_place_and_a_swap_is_refused(signed, keypair, tmp_path):
    staging = tmp_path / "staging"
    staging.mkdir()
    original = load_file(str(signed / "model.safetensors"))
    evil = shutil.move(_evil_weights(signed / "model.safetensors"), tmp_path / "evil.safetensors")
    with open_verified_model(signed, verifier=load_verifier(public_key=keypair[2]), staging_dir=staging) as model:
        assert model.root == signed.resolve() and model.verification.read == "in place"
        assert list(staging.iterdir()) == []  # nothing copied
        assert sorted(f.relpath for f in model.files) == sorted(model.verification.files)  # not model.sig
        np.testing.assert_array_equal(model.get_tensor("embed.weight").numpy(), original["embed.weight"])
        os.replace(evil, signed / "model.safetensors")  # only this user could; still never read
        with pytest.raises(InputError, match="file-changed"):
            model.get_tensor("embed.weight")


def test_a_file_written_through_a_shared_mapping_is_read_from_the_copy(signed, keypair):
    """A write through a shared writable mapping need not change mtime or ctime (a dirty page takes no
    fault), so identity cannot show it: a file another user can write is always copied first."""
    import mmap

    shard = signed / "model.safetensors"
    shard.chmod(0o664)  # the group may write it
    original = load_file(str(shard))["embed.weight"]
    with open(shard, "r+b") as f, mmap.mmap(f.fileno(), 0) as mapped:
        with open_verified_model(signed, verifier=load_verifier(public_key=keypair[2])) as model:
            assert "model.safetensors is writable by group" in model.verification.read
            header = 8 + int.from_bytes(mapped[:8], "little")
            mapped[header:header + 64] = b"\x7f" * 64  # the writer changes tensor bytes after verification
            np.testing.assert_array_equal(model.get_tensor("embed.weight").numpy(), original)
        assert bytes(mapped[header:header + 64]) == b"\x7f" * 64


def test_a_file_changed_between_hashing_and_opening_is_refused(signed, keypair, monkeypatch):
    import guard.signing.verified_model as verified_model

    real_hash = verified_model.hash_model

    def hash_then_touch(root, relpaths, **kwargs):
        hashed = real_hash(root, relpaths, **kwargs)
        os.utime(signed / "config.json")  # same bytes, but the file is not provably the one hashed
        return hashed

    monkeypatch.setattr(verified_model, "hash_model", hash_then_touch)
    with pytest.raises(VerificationError, match="config.json changed while or after it was hashed") as info:
        with open_verified_model(signed, verifier=load_verifier(public_key=keypair[2])):
            raise AssertionError("a model changed after hashing must not be opened")
    assert info.value.rule == "verify-changed"


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


def _big_signed(tmp_path, keypair):
    model = tmp_path / "big"
    model.mkdir()
    save_file({"w": np.arange(64 * 1024, dtype=np.float32)}, str(model / "model.safetensors"), metadata={"format": "pt"})
    sign_model(model, signer=load_signer(key=keypair[1], key_passphrase=PASSPHRASE))
    return model


@pytest.mark.parametrize("others_can_write", [True, False], ids=["copy", "in-place"])
@pytest.mark.parametrize("how", ["renamed-over", "rewritten-in-place"])
def test_file_swapped_during_verification_never_reaches_a_tensor(tmp_path, keypair, monkeypatch, how,
                                                                 others_can_write):
    """The swap lands between two reads of the file being hashed (the tests before swapped only after the
    copy had finished). From a copy: renamed over, the open file is the original, so the original is what
    verifies and loads. In place: the file is no longer provably the one hashed, so nothing loads.
    Rewritten in place: what was read no longer matches the signature, so nothing loads either way."""
    import guard.signing.hashing as hashing

    model = _big_signed(tmp_path, keypair)
    if others_can_write:
        _others_can_write(model)
    shard = model / "model.safetensors"
    original = load_file(str(shard))["w"]
    evil = tmp_path / "evil.safetensors"
    save_file({"w": np.full(64 * 1024, 666.0, dtype=np.float32)}, str(evil), metadata={"format": "pt"})
    monkeypatch.setattr(hashing, "READ_CHUNK", 4096)
    shard_inode = shard.stat().st_ino
    real_preadv = os.preadv
    swapped = []

    def preadv_then_swap(fd, buffers, offset):
        n = real_preadv(fd, buffers, offset)
        if not swapped and os.fstat(fd).st_ino == shard_inode and offset > 0:
            swapped.append(offset)
            if how == "renamed-over":
                os.replace(evil, shard)
            else:
                with open(shard, "r+b") as f:
                    f.write(evil.read_bytes())
        return n

    monkeypatch.setattr(os, "preadv", preadv_then_swap)
    verifier = load_verifier(public_key=keypair[2])
    if how == "renamed-over" and others_can_write:
        with open_verified_model(model, verifier=verifier) as verified:
            np.testing.assert_array_equal(verified.get_tensor("w").numpy(), original)
    else:
        refusal = "digest mismatch model.safetensors" if how == "rewritten-in-place" else "changed while or after"
        with pytest.raises(VerificationError, match=refusal):
            with open_verified_model(model, verifier=verifier):
                raise AssertionError("a model changed while it was hashed must not be opened")
    assert swapped and float(load_file(str(shard))["w"][0]) == 666.0  # the original directory really changed
