"""Rejections: every tamper in attacks/tamper.py fails verification (exit 1) and says why."""

from __future__ import annotations

import shutil

import pytest

from attacks.tamper import add_file, flip_byte, model_tampers, signature_tampers
from guard.errors import InputError, VerificationError
from guard.signing import load_signer, load_verifier, sign_model, verify_model
from tests.signing.conftest import PASSPHRASE, write_small_model

MODEL_TAMPERS = model_tampers()


@pytest.fixture(scope="module")
def key_signed(tmp_path_factory, keypair):
    """A small model signed with the key method (serialization files), kept pristine."""
    _, key, _ = keypair
    model = write_small_model(tmp_path_factory.mktemp("key-signed") / "model")
    sign_model(model, signer=load_signer(key=key, key_passphrase=PASSPHRASE))
    return model


@pytest.fixture
def signed_copy(key_signed, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(key_signed, target, symlinks=True)
    return target


def test_untouched_model_verifies(signed_copy, keypair):
    result = verify_model(signed_copy, verifier=load_verifier(public_key=keypair[2]))
    assert result.files == ("config.json", "model.safetensors", "tokenizer/vocab.txt")


@pytest.mark.parametrize("tamper", MODEL_TAMPERS, ids=[t.name for t in MODEL_TAMPERS])
def test_model_tamper_is_rejected_with_reason(signed_copy, keypair, tamper):
    tamper.apply(signed_copy, signed_copy / "model.sig")
    with pytest.raises(VerificationError, match=tamper.reason.replace(".", r"\.")) as info:
        verify_model(signed_copy, verifier=load_verifier(public_key=keypair[2]))
    assert info.value.exit_code == 1


@pytest.mark.parametrize("serialization", ["files", "shards"])
def test_message_lists_each_file_with_hex_digests(signed_copy, keypair, serialization):
    sign_model(signed_copy, signer=load_signer(key=keypair[1], key_passphrase=PASSPHRASE),
               serialization=serialization, shard_size=64 * 1024)
    flip_byte(signed_copy / "model.safetensors", 100)
    add_file(signed_copy, "extra.json", b"{}")
    (signed_copy / "tokenizer" / "vocab.txt").unlink()
    with pytest.raises(VerificationError) as info:
        verify_model(signed_copy, verifier=load_verifier(public_key=keypair[2]))
    message = info.value.message
    assert "3 difference(s)" in message
    assert "digest mismatch model.safetensors" in message and "extra file extra.json" in message
    assert "(found sha256:" in message and "(signed sha256:" in message
    assert "missing file tokenizer/vocab.txt" in message
    assert "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a" in message  # sha256("{}")


def test_multi_shard_byte_flip_names_the_shard(signed_copy, keypair):
    sign_model(signed_copy, signer=load_signer(key=keypair[1], key_passphrase=PASSPHRASE), serialization="shards",
               shard_size=64 * 1024)
    size = (signed_copy / "model.safetensors").stat().st_size
    flip_byte(signed_copy / "model.safetensors", size - 1)
    with pytest.raises(VerificationError, match=r"digest mismatch model\.safetensors:\d+:%d " % size):
        verify_model(signed_copy, verifier=load_verifier(public_key=keypair[2]))


@pytest.mark.parametrize("tamper", signature_tampers(), ids=[t.name for t in signature_tampers()])
def test_signature_tamper_is_rejected_with_reason(signed_copy, keypair, tamper):
    tamper.apply(signed_copy, signed_copy / "model.sig")
    with pytest.raises(VerificationError, match=tamper.reason):
        verify_model(signed_copy, verifier=load_verifier(public_key=keypair[2]))


def test_resigned_bad_statements_are_rejected(signed_copy, keypair):
    for tamper in signature_tampers(keypair[0])[-3:]:
        shutil.copy(signed_copy / "model.sig", signed_copy / "pristine.sig.bak")
        tamper.apply(signed_copy, signed_copy / "model.sig")
        with pytest.raises(VerificationError, match=tamper.reason):
            verify_model(signed_copy, verifier=load_verifier(public_key=keypair[2]), ignore_paths=["pristine.sig.bak"])
        shutil.move(signed_copy / "pristine.sig.bak", signed_copy / "model.sig")


def test_signature_of_another_model_is_rejected(signed_copy, keypair, tmp_path):
    other = write_small_model(tmp_path / "other", seed=1)
    sig = sign_model(other, signer=load_signer(key=keypair[1], key_passphrase=PASSPHRASE),
                     signature_path=tmp_path / "other.sig")
    with pytest.raises(VerificationError, match="digest mismatch model.safetensors"):
        verify_model(signed_copy, signature=sig, verifier=load_verifier(public_key=keypair[2]))


def test_wrong_key_is_rejected(signed_copy, other_keypair):
    with pytest.raises(VerificationError, match="wrong key"):
        verify_model(signed_copy, verifier=load_verifier(public_key=other_keypair[2]))


def test_wrong_key_without_hint_still_fails_on_the_signature(signed_copy, other_keypair):
    import json

    doc = json.loads((signed_copy / "model.sig").read_text())
    del doc["verificationMaterial"]["publicKey"]["hint"]
    (signed_copy / "model.sig").write_text(json.dumps(doc))
    with pytest.raises(VerificationError, match="does not verify"):
        verify_model(signed_copy, verifier=load_verifier(public_key=other_keypair[2]))


def test_signing_an_empty_model_is_refused(tmp_path, keypair):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".gitattributes").write_text("*.bin lfs")
    with pytest.raises(InputError, match="no files to sign"):
        sign_model(tmp_path / "empty", signer=load_signer(key=keypair[1], key_passphrase=PASSPHRASE))


def test_ignore_paths_are_recorded_and_applied_by_the_verifier(signed_copy, keypair):
    add_file(signed_copy, "notes/README.md", b"unsigned notes")
    sign_model(signed_copy, signer=load_signer(key=keypair[1], key_passphrase=PASSPHRASE), ignore_paths=["notes"])
    (signed_copy / "notes" / "README.md").write_text("changed")
    result = verify_model(signed_copy, verifier=load_verifier(public_key=keypair[2]))
    assert "notes/README.md" not in result.files
    add_file(signed_copy, "notes*", b"a glob-looking name is literal, not a pattern")
    with pytest.raises(VerificationError, match=r"extra file notes\*"):
        verify_model(signed_copy, verifier=load_verifier(public_key=keypair[2]))


@pytest.mark.parametrize("fixture_dir", ["elliptic-key", "certificate", "sigstore"])
@pytest.mark.parametrize("change", ["flip", "add", "remove"])
def test_oms_fixture_tampering_is_rejected(oms_fixtures, tmp_path, fixture_dir, change):
    model = tmp_path / fixture_dir
    shutil.copytree(oms_fixtures / fixture_dir, model)
    for path in model.iterdir():
        path.chmod(0o644)
    if change == "flip":
        flip_byte(model / "signme-2", 0)
    elif change == "add":
        add_file(model, "added.bin", b"x")
    else:
        (model / "signme-1").unlink()
    verifier = {
        "elliptic-key": lambda: load_verifier(public_key=oms_fixtures / "keys" / "signing-key-pub.pem"),
        "certificate": lambda: load_verifier(certificate_chain=[oms_fixtures / "keys" / "ca-cert.pem"]),
        "sigstore": lambda: load_verifier(identity="stefanb@us.ibm.com", issuer="https://sigstore.verify.ibm.com/oauth2",
                                          trust_config=oms_fixtures / "sigstore-trust-config.json"),
    }[fixture_dir]()
    with pytest.raises(VerificationError, match={"flip": "digest mismatch signme-2", "add": "extra file added.bin",
                                                 "remove": "missing file signme-1"}[change]):
        verify_model(model, signature=model / "model.sig", verifier=verifier)


def _write_legacy_bundle(model, private, *, legacy_encoding: bool, hash_name: str | None = None) -> list[str]:
    """A model_signing 0.2-style signature: v0.2 predicate (one subject per file), optionally its PAE."""
    import hashlib
    import json

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from guard.signing import keys
    from guard.signing.bundle import bundle_text
    from guard.signing.dsse import Envelope, pae, pae_legacy
    from guard.signing.statement import LEGACY_PREDICATE_TYPE, PAYLOAD_TYPE

    names = ["config.json", "model.safetensors", "tokenizer/vocab.txt"]
    statement = {"_type": "https://in-toto.io/Statement/v1", "predicateType": LEGACY_PREDICATE_TYPE,
                 "subject": [{"name": n, "digest": {"sha256": hashlib.sha256((model / n).read_bytes()).hexdigest()}}
                             for n in names], "predicate": {}}
    payload = json.dumps(statement).encode()
    encoded = (pae_legacy if legacy_encoding else pae)(payload)
    algorithm = ec.ECDSA(hashes.SHA256()) if hash_name == "sha256" else keys.ecdsa_algorithm(private.public_key())
    sig = private.sign(encoded, algorithm)
    material = {"publicKey": {"hint": keys.key_hint(private.public_key())}, "tlogEntries": []}
    (model / "model.sig").write_text(bundle_text(Envelope(payload, PAYLOAD_TYPE, (sig,)), material))
    return names


# Issue 10, hole 6: model_signing 0.2's legacy forms were accepted by default.
@pytest.mark.parametrize("legacy_encoding", [False, True])
def test_legacy_v02_signature_verifies_only_with_allow_legacy(signed_copy, keypair, legacy_encoding):
    names = _write_legacy_bundle(signed_copy, keypair[0], legacy_encoding=legacy_encoding)
    with pytest.raises(VerificationError, match="--allow-legacy"):
        verify_model(signed_copy, verifier=load_verifier(public_key=keypair[2]))
    result = verify_model(signed_copy, verifier=load_verifier(public_key=keypair[2], allow_legacy=True))
    assert result.legacy_predicate and result.files == tuple(names)


def test_sha256_with_a_p384_key_verifies_only_with_allow_legacy(signed_copy, other_keypair):
    _write_legacy_bundle(signed_copy, other_keypair[0], legacy_encoding=True, hash_name="sha256")
    with pytest.raises(VerificationError, match="--allow-legacy"):
        verify_model(signed_copy, verifier=load_verifier(public_key=other_keypair[2]))
    assert verify_model(signed_copy, verifier=load_verifier(public_key=other_keypair[2], allow_legacy=True))


def test_allow_legacy_on_the_command_line(signed_copy, keypair):
    from tests.helpers import run_guard

    _write_legacy_bundle(signed_copy, keypair[0], legacy_encoding=True)
    refused = run_guard("verify", signed_copy, "--key", keypair[2])
    assert refused.returncode == 1 and "--allow-legacy" in refused.stderr
    accepted = run_guard("verify", signed_copy, "--key", keypair[2], "--allow-legacy")
    assert accepted.returncode == 0, accepted.stderr


def test_legacy_encoding_cannot_carry_a_current_statement(signed_copy, keypair):
    import base64
    import json

    from guard.signing import keys
    from guard.signing.dsse import pae_legacy

    doc = json.loads((signed_copy / "model.sig").read_text())
    payload = base64.b64decode(doc["dsseEnvelope"]["payload"])
    sig = keypair[0].sign(pae_legacy(payload), keys.ecdsa_algorithm(keypair[0].public_key()))
    doc["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(sig).decode()
    (signed_copy / "model.sig").write_text(json.dumps(doc))
    with pytest.raises(VerificationError, match="legacy DSSE encoding"):
        verify_model(signed_copy, verifier=load_verifier(public_key=keypair[2], allow_legacy=True))
