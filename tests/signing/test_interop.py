"""Interop matrix with OMS: guard <-> model_signing 1.1.1 (in-process API) and the real v1.1.0 signatures."""

from __future__ import annotations

import pathlib

import model_signing as ms  # test dependency (pinned in pyproject, needs pyopenssl beside it)
import pytest
from cryptography.hazmat.primitives import serialization

from guard.errors import VerificationError
from guard.signing import load_signer, load_verifier, sign_model, verify_model
from tests.signing.conftest import PASSPHRASE

FIXTURE_IDENTITY = "stefanb@us.ibm.com"
FIXTURE_ISSUER = "https://sigstore.verify.ibm.com/oauth2"


def _plain_key(key, path: pathlib.Path) -> pathlib.Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def _ms_key_verifier(pub: pathlib.Path):
    return ms.verifying.Config().use_elliptic_key_verifier(public_key=pub)


@pytest.mark.parametrize("hash_algorithm, serialization_method", [("sha256", "files"), ("blake3", "files"),
                                                                  ("sha256", "shards")])
def test_guard_key_signature_verifies_with_model_signing(model_copy, keypair, hash_algorithm, serialization_method):
    _, key, pub = keypair
    sig = sign_model(model_copy, signer=load_signer(key=key, key_passphrase=PASSPHRASE), hash_algorithm=hash_algorithm,
                     serialization=serialization_method, shard_size=64 * 1024 if serialization_method == "shards" else None)
    assert sig == model_copy / "model.sig"
    _ms_key_verifier(pub).verify(model_copy, sig)  # raises ValueError on failure
    (model_copy / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="config.json"):
        _ms_key_verifier(pub).verify(model_copy, sig)


def test_guard_certificate_signature_verifies_with_model_signing(model_copy, pki):
    paths = pki["paths"]
    signer = load_signer(key=paths["leaf_key"], key_passphrase=PASSPHRASE, certificate=paths["leaf"],
                         certificate_chain=[paths["intermediate"]])
    sig = sign_model(model_copy, signer=signer)
    ms.verifying.Config().use_certificate_verifier(certificate_chain=[paths["root"]]).verify(model_copy, sig)
    from OpenSSL.crypto import X509StoreContextError

    with pytest.raises(X509StoreContextError, match="unable to get local issuer certificate"):
        ms.verifying.Config().use_certificate_verifier(certificate_chain=[paths["other_root"]]).verify(model_copy, sig)


def test_model_signing_key_signature_verifies_with_guard(model_copy, keypair, tmp_path):
    key, _, pub = keypair
    sig = tmp_path / "ms.sig"
    ms.signing.Config().use_elliptic_key_signer(private_key=_plain_key(key, tmp_path / "plain.key")).sign(model_copy, sig)
    result = verify_model(model_copy, signature=sig, verifier=load_verifier(public_key=pub))
    assert result.files == ("config.json", "model.safetensors", "tokenizer/vocab.txt")


def test_model_signing_certificate_signature_verifies_with_guard(model_copy, pki, tmp_path):
    paths = pki["paths"]
    sig = tmp_path / "ms.sig"
    ms.signing.Config().use_certificate_signer(
        private_key=_plain_key(pki["keys"]["leaf"], tmp_path / "leaf-plain.key"), signing_certificate=paths["leaf"],
        certificate_chain=[paths["intermediate"]]).sign(model_copy, sig)
    result = verify_model(model_copy, signature=sig, verifier=load_verifier(certificate_chain=[paths["root"]]))
    assert result.method == "certificate" and "guard-test-signer" in result.signer


@pytest.mark.parametrize("configure", ["shards", "blake3"])
def test_model_signing_api_shards_and_blake3_verify_with_guard(model_copy, keypair, tmp_path, configure):
    key, _, pub = keypair
    sig = tmp_path / "ms.sig"
    hashing = ms.hashing.Config()
    if configure == "shards":
        hashing = hashing.use_shard_serialization(shard_size=64 * 1024)  # written as a float by protobuf
    else:
        hashing = hashing.use_file_serialization(hashing_algorithm="blake3")
    (ms.signing.Config().use_elliptic_key_signer(private_key=_plain_key(key, tmp_path / "plain.key"))
     .set_hashing_config(hashing).sign(model_copy, sig))
    result = verify_model(model_copy, signature=sig, verifier=load_verifier(public_key=pub))
    assert result.serialization == ("shards" if configure == "shards" else "files")
    assert result.hash_type == ("blake3" if configure == "blake3" else "sha256")


def test_oms_fixture_elliptic_key_verifies_offline(oms_fixtures):
    result = verify_model(oms_fixtures / "elliptic-key", signature=oms_fixtures / "elliptic-key" / "model.sig",
                          verifier=load_verifier(public_key=oms_fixtures / "keys" / "signing-key-pub.pem"))
    assert result.files == ("signme-1", "signme-2")  # ignore-me is ignored because the signature says so


def test_oms_fixture_certificate_verifies_offline(oms_fixtures):
    result = verify_model(oms_fixtures / "certificate", signature=oms_fixtures / "certificate" / "model.sig",
                          verifier=load_verifier(certificate_chain=[oms_fixtures / "keys" / "ca-cert.pem"]))
    assert result.method == "certificate" and result.files == ("signme-1", "signme-2")


def test_oms_fixture_sigstore_verifies_offline(oms_fixtures):
    verifier = load_verifier(identity=FIXTURE_IDENTITY, issuer=FIXTURE_ISSUER,
                             trust_config=oms_fixtures / "sigstore-trust-config.json")
    result = verify_model(oms_fixtures / "sigstore", signature=oms_fixtures / "sigstore" / "model.sig",
                          verifier=verifier)
    assert result.signer == f"sigstore identity {FIXTURE_IDENTITY} (issuer {FIXTURE_ISSUER})"


@pytest.mark.parametrize("identity, issuer, reason", [
    ("mallory@example.com", FIXTURE_ISSUER, "SANs do not match"),
    (FIXTURE_IDENTITY, "https://accounts.google.com", "issuer"),
])
def test_oms_fixture_sigstore_wrong_identity_or_issuer(oms_fixtures, identity, issuer, reason):
    verifier = load_verifier(identity=identity, issuer=issuer, trust_config=oms_fixtures / "sigstore-trust-config.json")
    with pytest.raises(VerificationError, match=reason):
        verify_model(oms_fixtures / "sigstore", signature=oms_fixtures / "sigstore" / "model.sig", verifier=verifier)


def test_oms_fixture_wrong_key_and_wrong_anchor(oms_fixtures, keypair):
    with pytest.raises(VerificationError, match="wrong key"):
        verify_model(oms_fixtures / "elliptic-key", signature=oms_fixtures / "elliptic-key" / "model.sig",
                     verifier=load_verifier(public_key=keypair[2]))
    with pytest.raises(VerificationError, match="wrong trust anchor"):
        verify_model(oms_fixtures / "certificate", signature=oms_fixtures / "certificate" / "model.sig",
                     verifier=load_verifier(certificate_chain=[oms_fixtures / "keys" / "int-ca-cert.pem"]))


def test_guard_default_signature_verifies_with_the_model_signing_cli(model_copy, keypair):
    import subprocess
    import sys

    sig = sign_model(model_copy, signer=load_signer(key=keypair[1], key_passphrase=PASSPHRASE))
    cli = [sys.executable, "-m", "model_signing", "verify", "key", str(model_copy), "--signature", str(sig),
           "--public_key", str(keypair[2])]
    proc = subprocess.run(cli, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (model_copy / "config.json").write_text("{}")
    assert subprocess.run(cli, capture_output=True, text=True).returncode != 0


# Issue 10, hole 7: OMS signs single files too (the model path is a file; the manifest names it ".").
@pytest.fixture
def single_file(tmp_path):
    path = tmp_path / "weights.safetensors"
    path.write_bytes(b"single-file model " * 1000)
    return path


@pytest.mark.parametrize("configure", ["files", "shards"])
def test_model_signing_single_file_signature_verifies_with_guard(single_file, keypair, tmp_path, configure):
    import subprocess
    import sys

    key, _, pub = keypair
    sig = tmp_path / "ms.sig"
    config = ms.signing.Config().use_elliptic_key_signer(private_key=_plain_key(key, tmp_path / "plain.key"))
    if configure == "shards":
        config = config.set_hashing_config(ms.hashing.Config().use_shard_serialization(shard_size=64 * 1024))
    config.sign(single_file, sig)
    result = verify_model(single_file, signature=sig, verifier=load_verifier(public_key=pub))
    assert result.files == (".",) and result.total_bytes == single_file.stat().st_size
    cli = [sys.executable, "-m", "guard", "verify", str(single_file), "--signature", str(sig), "--key", str(pub)]
    proc = subprocess.run(cli, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    single_file.write_bytes(single_file.read_bytes()[:-1] + b"!")
    with pytest.raises(VerificationError, match="digest mismatch"):
        verify_model(single_file, signature=sig, verifier=load_verifier(public_key=pub))
    assert subprocess.run(cli, capture_output=True, text=True).returncode == 1


def test_guard_single_file_signature_verifies_with_model_signing(single_file, keypair, tmp_path):
    import subprocess
    import sys

    _, key, pub = keypair
    sig = sign_model(single_file, signer=load_signer(key=key, key_passphrase=PASSPHRASE))
    assert sig == single_file.with_name(single_file.name + ".sig")
    _ms_key_verifier(pub).verify(single_file, sig)
    cli = [sys.executable, "-m", "model_signing", "verify", "key", str(single_file), "--signature", str(sig),
           "--public_key", str(pub)]
    proc = subprocess.run(cli, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert verify_model(single_file, verifier=load_verifier(public_key=pub)).files == (".",)


def test_a_directory_signature_does_not_verify_a_file_and_back(single_file, model_copy, keypair):
    _, key, pub = keypair
    signer = load_signer(key=key, key_passphrase=PASSPHRASE)
    dir_sig = sign_model(model_copy, signer=signer)
    file_sig = sign_model(single_file, signer=signer)
    with pytest.raises(VerificationError):
        verify_model(single_file, signature=dir_sig, verifier=load_verifier(public_key=pub))
    with pytest.raises(VerificationError):
        verify_model(model_copy, signature=file_sig, verifier=load_verifier(public_key=pub))
