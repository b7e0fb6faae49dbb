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
    with pytest.raises(VerificationError, match="states no extended key usage"):
        verify_model(model_copy, verifier=load_verifier(certificate_chain=[pki["paths"]["root"]]))


@pytest.mark.parametrize("usage", ["server-auth-only", "key-usage-without-digital-signature"])
def test_leaf_usage_outside_code_signing_is_refused(model_copy, pki, usage):
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    leaf_key = keys.generate_private_key("p256")
    if usage == "server-auth-only":
        extra = [(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)]
    else:
        extra = [(x509.KeyUsage(digital_signature=False, content_commitment=True, key_encipherment=False,
                                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                                encipher_only=False, decipher_only=False), True)]
    leaf = _leaf_with(pki, leaf_key, *extra, code_signing=usage != "server-auth-only")
    _sign_with_leaf(model_copy, pki, leaf, leaf_key)
    with pytest.raises(VerificationError, match="codeSigning|digitalSignature"):
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


# Issue 10, hole 2: the hand-written path builder explored every ordering of look-alike intermediates
# (k = 8 took 7.4 s, growing factorially) and ignored unknown critical extensions and name constraints.
def _bundle_with_chain(model, leaf, leaf_key, chain):
    return sign_model(model, signer=CertificateSigner(private_key=leaf_key, certificate=leaf, chain=chain))


@pytest.mark.timeout(60)
def test_fifty_hostile_self_issued_intermediates_are_refused_in_well_under_a_second(model_copy, pki):
    import time

    hostile_key, leaf_key = keys.generate_private_key("p256"), keys.generate_private_key("p256")
    intermediates = [make_cert(hostile_key, "hostile-ca", hostile_key, "hostile-ca", ca=True) for _ in range(50)]
    leaf = make_cert(leaf_key, "hostile-signer", hostile_key, "hostile-ca", ca=False)
    _bundle_with_chain(model_copy, leaf, leaf_key, intermediates)
    verifier = load_verifier(certificate_chain=[pki["paths"]["root"]])
    started = time.perf_counter()
    with pytest.raises(VerificationError):
        verify_model(model_copy, verifier=verifier)
    assert time.perf_counter() - started < 1.0


def _leaf_with(pki, leaf_key, *extensions, code_signing: bool = True):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "odd-signer")]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "guard-test-intermediate")]))
               .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    if code_signing:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(pki["keys"]["intermediate"], hashes.SHA256())


def test_leaf_with_an_unknown_critical_extension_is_refused(model_copy, pki):
    from cryptography import x509

    leaf_key = keys.generate_private_key("p256")
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")
    _sign_with_leaf(model_copy, pki, _leaf_with(pki, leaf_key, (unknown, True)), leaf_key)
    with pytest.raises(VerificationError, match="critical"):
        verify_model(model_copy, verifier=load_verifier(certificate_chain=[pki["paths"]["root"]]))


def test_name_constraints_of_an_intermediate_are_enforced(model_copy, pki):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    constrained_key, leaf_key = keys.generate_private_key("p256"), keys.generate_private_key("p256")
    constrained = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "example-only-ca")]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "guard-test-root")]))
                   .public_key(constrained_key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
                   .add_extension(x509.NameConstraints(permitted_subtrees=[x509.RFC822Name("example.com")],
                                                       excluded_subtrees=None), critical=True)
                   .sign(pki["keys"]["root"], hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "outsider")]))
            .issuer_name(constrained.subject)
            .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name("signer@evil.org")]), critical=False)
            .sign(constrained_key, hashes.SHA256()))
    _bundle_with_chain(model_copy, leaf, leaf_key, [constrained])
    with pytest.raises(VerificationError):
        verify_model(model_copy, verifier=load_verifier(certificate_chain=[pki["paths"]["root"]]))


def test_real_oms_certificate_fixture_still_verifies(oms_fixtures):
    result = verify_model(oms_fixtures / "certificate", verifier=load_verifier(
        certificate_chain=[oms_fixtures / "keys" / "ca-cert.pem"]), ignore_paths=["ignore-me"])
    assert result.method == "certificate"
