"""Certificate method: ECDSA with a key whose X.509 certificate chains to a trust anchor you name.

The bundle carries the leaf and the signer's intermediates (`x509CertificateChain`, leaf first). guard
builds the path itself with `cryptography` (no pyOpenSSL): every link's signature and CA constraints
are checked, the path must end at a self-signed certificate from the given anchors, and the leaf
must allow signing (digitalSignature key usage / codeSigning extended key usage, each if present,
at least one present).

Time policy (docs/signing.md): this method has no trusted timestamp, so by default every certificate
in the path must be valid *now*. `check_time="signing"` reproduces OMS: the path is checked at the
leaf's notBefore, which accepts expired leaves.
"""

from __future__ import annotations

import base64
import datetime
import os
import pathlib
from collections.abc import Iterable, Sequence

from guard.errors import InputError, VerificationError
from guard.signing import keys
from guard.signing.bundle import Bundle, bundle_text
from guard.signing.method_key import ecdsa_check, ecdsa_sign
from guard.signing.methods import SignedContent, Signer, Verifier

CHECK_TIMES = ("now", "signing")
_MAX_DEPTH = 8
RULE = "verify-certificate"


def load_certificates(paths: Iterable[str | os.PathLike]) -> list:
    from cryptography import x509

    certs = []
    for path in paths:
        try:
            data = pathlib.Path(path).read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read certificate file: {exc.strerror}", path=path, rule="path-unreadable") from None
        try:
            certs.extend(x509.load_pem_x509_certificates(data))
        except ValueError:
            raise InputError("not a PEM certificate file", path=path, rule="certificate-unreadable") from None
    return certs


def describe_certificate(cert) -> str:
    from cryptography.hazmat.primitives import hashes

    return f"certificate {cert.subject.rfc4514_string() or '(empty subject)'} sha256:{cert.fingerprint(hashes.SHA256()).hex()}"


class CertificateSigner(Signer):
    method = "certificate"

    def __init__(self, *, private_key, certificate, chain: Sequence = ()) -> None:
        if certificate.public_key() != private_key.public_key():
            raise InputError("the signing certificate does not belong to the private key", rule="certificate-key")
        self._key, self._cert, self._chain = private_key, certificate, list(chain)

    @classmethod
    def from_files(cls, *, key: str | os.PathLike, passphrase: bytes | None, certificate: str | os.PathLike,
                   chain: Iterable[str | os.PathLike] = ()) -> CertificateSigner:
        leaf = load_certificates([certificate])
        if len(leaf) != 1:
            raise InputError(f"expected one signing certificate, found {len(leaf)}", path=certificate,
                             rule="certificate-unreadable")
        return cls(private_key=keys.load_private_key(key, passphrase), certificate=leaf[0],
                   chain=load_certificates(chain))

    def sign(self, payload: bytes) -> str:
        from cryptography.hazmat.primitives import serialization

        der = [c.public_bytes(serialization.Encoding.DER) for c in [self._cert, *self._chain]]
        material = {"x509CertificateChain": {"certificates": [{"rawBytes": base64.b64encode(d).decode()} for d in der]},
                    "tlogEntries": []}
        return bundle_text(ecdsa_sign(self._key, payload), material)

    def describe(self) -> str:
        return describe_certificate(self._cert)


class CertificateVerifier(Verifier):
    method = "certificate"

    def __init__(self, *, anchors: Sequence, check_time: str = "now") -> None:
        if not anchors:
            raise InputError("no trust anchors: pass --certificate-chain with the root CA", rule="certificate-anchor")
        if check_time not in CHECK_TIMES:
            raise InputError(f"unknown certificate time policy {check_time!r}", rule="certificate-time")
        self._anchors = list(anchors)
        self._check_time = check_time

    @classmethod
    def from_files(cls, paths: Iterable[str | os.PathLike], *, check_time: str = "now") -> CertificateVerifier:
        return cls(anchors=load_certificates(paths), check_time=check_time)

    def verify(self, bundle: Bundle) -> SignedContent:
        try:
            return self._verify(bundle)
        except (ValueError, TypeError) as exc:  # malformed extensions etc. surface lazily from cryptography
            raise _fail(f"malformed certificate in the bundle ({type(exc).__name__}: {exc})") from None

    def _verify(self, bundle: Bundle) -> SignedContent:
        from cryptography import x509

        if bundle.kind != "certificate":
            raise VerificationError(f"verification failed: the signature was made with the {bundle.kind} method, "
                                    "not with a certificate", rule="verify-method")
        try:
            chain = [x509.load_der_x509_certificate(der) for der in bundle.certificate_chain]
        except ValueError:
            raise _fail("a certificate in the bundle is not valid DER") from None
        leaf = chain[0]
        at = datetime.datetime.now(datetime.timezone.utc) if self._check_time == "now" else leaf.not_valid_before_utc
        path = self._build_path(leaf, chain[1:])
        for cert in path:
            if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
                raise _fail(f"{describe_certificate(cert)} is not valid at {at.isoformat()} (valid "
                            f"{cert.not_valid_before_utc.isoformat()} to {cert.not_valid_after_utc.isoformat()}, "
                            f"time policy {self._check_time!r})")
        _check_leaf_usage(leaf)
        try:
            keys.check_ec_key(leaf.public_key())
        except InputError as exc:
            raise _fail(f"leaf key: {exc.message}") from None
        standard = ecdsa_check(leaf.public_key(), bundle.envelope, what=describe_certificate(leaf))
        return SignedContent(payload=bundle.envelope.payload, signer=describe_certificate(leaf),
                             legacy_encoding=not standard)

    def _build_path(self, leaf, intermediates: list) -> list:
        def extend(path: list) -> list | None:
            cert = path[-1]
            if len(path) > _MAX_DEPTH:
                return None
            for anchor in self._anchors:
                if _issued_by(cert, anchor, len(path) - 1) and _self_signed(anchor):
                    return [*path, anchor]
            for cand in intermediates:
                if all(cand is not p for p in path) and _issued_by(cert, cand, len(path) - 1):
                    found = extend([*path, cand])
                    if found:
                        return found
            return None

        path = extend([leaf])
        if path is None:
            raise VerificationError(f"verification failed: wrong trust anchor: {describe_certificate(leaf)} does not "
                                    "chain to any given anchor", rule=RULE)
        return path


def _issued_by(cert, issuer, intermediates_below: int) -> bool:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    if cert.issuer != issuer.subject:
        return False
    try:
        constraints = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    if not constraints.ca or (constraints.path_length is not None and intermediates_below > constraints.path_length):
        return False
    try:
        usage = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.key_cert_sign:
            return False
    except x509.ExtensionNotFound:
        pass
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _self_signed(cert) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _check_leaf_usage(leaf) -> None:
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    found = False
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        found = True
        if not usage.digital_signature:
            raise _fail(f"{describe_certificate(leaf)} key usage does not allow digitalSignature")
    except x509.ExtensionNotFound:
        pass
    try:
        extended = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        found = True
        if ExtendedKeyUsageOID.CODE_SIGNING not in extended:
            raise _fail(f"{describe_certificate(leaf)} extended key usage does not allow codeSigning")
    except x509.ExtensionNotFound:
        pass
    if not found:
        raise _fail(f"{describe_certificate(leaf)} states no key usage; guard requires digitalSignature or codeSigning")


def _fail(message: str) -> VerificationError:
    return VerificationError(f"verification failed: {message}", rule=RULE)
