from __future__ import annotations

import datetime

import pytest
from cryptography.hazmat.primitives import serialization

from guard.errors import InputError, VerificationError
from guard.signing import keys, load_signer, load_verifier, sign_model, verify_model
from guard.signing.method_certificate import CertificateSigner
from tests.signing.conftest import PASSPHRASE, make_cert


def _sign_with_leaf(model, pki, leaf, leaf_key):
    signer = CertificateSigner(private_key=leaf_key, certificate=leaf,
                               chain=[_load(pki["paths"]["intermediate"])])
    return sign_model(model, signer=signer)


def _load(path):
    from cryptography import x509

    return x509.load_pem_x509_certificate(path.read_bytes())


def test_certificate_round_trip(model_copy, pki):
    paths = pki["paths"]
    sign_model(model_copy, signer=load_signer(key=paths["leaf_key"], key_passphrase=PASSPHRASE,
                                              certificate=paths["leaf"], certificate_chain=[paths["intermediate"]]))
    result = verify_model(model_copy, verifier=load_verifier(certificate_chain=[paths["root"]]))
    assert "CN=guard-test-signer" in result.signer


def test_wrong_trust_anchor(model_copy, pki):
    paths = pki["paths"]
    sign_model(model_copy, signer=load_signer(key=paths["leaf_key"], key_passphrase=PASSPHRASE,
                                              certificate=paths["leaf"], certificate_chain=[paths["intermediate"]]))
    with pytest.raises(VerificationError, match="wrong trust anchor"):
        verify_model(model_copy, verifier=load_verifier(certificate_chain=[paths["other_root"]]))
    # The intermediate alone is not a trust anchor (no partial chains, as OpenSSL's default).
    with pytest.raises(VerificationError, match="wrong trust anchor"):
        verify_model(model_copy, verifier=load_verifier(certificate_chain=[paths["intermediate"]]))


def test_expired_leaf_fails_now_and_passes_with_the_oms_time_policy(model_copy, pki):
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=30)
    leaf_key = keys.generate_private_key("p256")
    leaf = make_cert(leaf_key, "expired-signer", pki["keys"]["intermediate"], "guard-test-intermediate", ca=False,
                     not_before=past, days=1)
    _sign_with_leaf(model_copy, pki, leaf, leaf_key)
    with pytest.raises(VerificationError, match="is not valid at"):
        verify_model(model_copy, verifier=load_verifier(certificate_chain=[pki["paths"]["root"]]))
    result = verify_model(model_copy, verifier=load_verifier(certificate_chain=[pki["paths"]["root"]],
                                                             certificate_time="signing"))
    assert "expired-signer" in result.signer


def test_leaf_without_signing_usage_is_refused(model_copy, pki):
    leaf_key = keys.generate_private_key("p256")
    leaf = make_cert(leaf_key, "no-usage", pki["keys"]["intermediate"], "guard-test-intermediate", ca=False,
                     usage=False)
    _sign_with_leaf(model_copy, pki, leaf, leaf_key)
    with pytest.raises(VerificationError, match="states no key usage"):
        verify_model(model_copy, verifier=load_verifier(certificate_chain=[pki["paths"]["root"]]))


def test_leaf_issued_by_a_non_ca_is_refused(model_copy, pki):
    # The signing leaf (CA:FALSE) tries to act as an issuer for another leaf.
    leaf_key = keys.generate_private_key("p256")
    leaf = make_cert(leaf_key, "sub-leaf", pki["keys"]["leaf"], "guard-test-signer", ca=False)
    signer = CertificateSigner(private_key=leaf_key, certificate=leaf,
                               chain=[_load(pki["paths"]["leaf"]), _load(pki["paths"]["intermediate"])])
    sign_model(model_copy, signer=signer)
    with pytest.raises(VerificationError, match="wrong trust anchor"):
        verify_model(model_copy, verifier=load_verifier(certificate_chain=[pki["paths"]["root"]]))


def test_certificate_must_match_the_key(pki, keypair):
    with pytest.raises(InputError, match="does not belong to the private key"):
        CertificateSigner(private_key=keypair[0], certificate=_load(pki["paths"]["leaf"]))


def test_key_bundle_given_to_certificate_verifier(model_copy, keypair, pki):
    sign_model(model_copy, signer=load_signer(key=keypair[1], key_passphrase=PASSPHRASE))
    with pytest.raises(VerificationError, match="made with the key method"):
        verify_model(model_copy, verifier=load_verifier(certificate_chain=[pki["paths"]["root"]]))


def test_p384_key_round_trip(model_copy, other_keypair):
    _, key, pub = other_keypair
    sign_model(model_copy, signer=load_signer(key=key, key_passphrase=PASSPHRASE))
    assert serialization.load_pem_public_key(pub.read_bytes()).curve.name == "secp384r1"
    assert verify_model(model_copy, verifier=load_verifier(public_key=pub)).method == "key"
