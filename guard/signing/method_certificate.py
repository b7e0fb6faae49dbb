"""Certificate method: ECDSA with a key whose X.509 certificate chains to a trust anchor you name.

The bundle carries the leaf and the signer's intermediates (`x509CertificateChain`, leaf first). The
path is built and checked by `cryptography`'s X.509 verification (`PolicyBuilder`, RFC 5280 / Web PKI
rules for the CAs: signatures, basicConstraints and path lengths, keyCertSign, name constraints,
unknown critical extensions refused), with a code-signing policy for the leaf: an extended key usage
with codeSigning is required, a key usage (if any) must allow digitalSignature, any other critical
extension is refused. Its path builder has a signature-check budget, so look-alike intermediates
cannot make it search for long; guard also refuses bundles with more than MAX_INTERMEDIATES. Trust
anchors are the self-signed certificates of the files you name; other certificates in those files are
usable as intermediates (OpenSSL's and so OMS's rule), never as anchors.

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
MAX_DEPTH = 8  # certificates between the leaf and the anchor, as cryptography's default
MAX_INTERMEDIATES = 16  # real signing chains carry one to three
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

    def __init__(self, *, anchors: Sequence, check_time: str = "now", allow_legacy: bool = False) -> None:
        if not anchors:
            raise InputError("no trust anchors: pass --certificate-chain with the root CA", rule="certificate-anchor")
        if check_time not in CHECK_TIMES:
            raise InputError(f"unknown certificate time policy {check_time!r}", rule="certificate-time")
        self._roots = [cert for cert in anchors if _self_signed(cert)]
        self._known_intermediates = [cert for cert in anchors if not _self_signed(cert)]
        self._check_time = check_time
        self.allow_legacy = allow_legacy

    @classmethod
    def from_files(cls, paths: Iterable[str | os.PathLike], *, check_time: str = "now",
                   allow_legacy: bool = False) -> CertificateVerifier:
        return cls(anchors=load_certificates(paths), check_time=check_time, allow_legacy=allow_legacy)

    def verify(self, bundle: Bundle) -> SignedContent:
        from cryptography.x509 import InvalidVersion

        try:
            return self._verify(bundle)
        except (ValueError, TypeError, InvalidVersion) as exc:  # malformed certificates surface lazily from cryptography
            raise _fail(f"malformed certificate in the bundle ({type(exc).__name__}: {exc})") from None

    def _verify(self, bundle: Bundle) -> SignedContent:
        from cryptography import x509

        if bundle.kind != "certificate":
            raise VerificationError(f"verification failed: the signature was made with the {bundle.kind} method, "
                                    "not with a certificate", rule="verify-method")
        if len(bundle.certificate_chain) - 1 > MAX_INTERMEDIATES:
            raise _fail(f"the bundle carries {len(bundle.certificate_chain) - 1} intermediate certificates, over "
                        f"the limit of {MAX_INTERMEDIATES}")
        try:
            chain = [x509.load_der_x509_certificate(der) for der in bundle.certificate_chain]
        except (ValueError, x509.InvalidVersion):
            raise _fail("a certificate in the bundle is not valid DER") from None
        leaf = chain[0]
        at = datetime.datetime.now(datetime.timezone.utc) if self._check_time == "now" else leaf.not_valid_before_utc
        _explain_leaf(leaf, at, self._check_time)
        self._verify_path(leaf, chain[1:], at)
        try:
            keys.check_ec_key(leaf.public_key())
        except InputError as exc:
            raise _fail(f"leaf key: {exc.message}") from None
        standard = ecdsa_check(leaf.public_key(), bundle.envelope, what=describe_certificate(leaf),
                               allow_legacy=self.allow_legacy)
        return SignedContent(payload=bundle.envelope.payload, signer=describe_certificate(leaf),
                             legacy_encoding=not standard)

    def _verify_path(self, leaf, intermediates: list, at: datetime.datetime) -> None:
        from cryptography.x509 import verification

        if not self._roots:
            raise VerificationError("verification failed: wrong trust anchor: none of the given certificates is a "
                                    "self-signed root", rule=RULE)
        builder = (verification.PolicyBuilder().store(verification.Store(self._roots)).time(at)
                   .max_chain_depth(MAX_DEPTH)
                   .extension_policies(ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
                                       ee_policy=_code_signing_policy()))
        try:
            builder.build_client_verifier().verify(leaf, [*intermediates, *self._known_intermediates])
        except verification.VerificationError as exc:
            reason = " ".join(str(exc).split()).removeprefix("validation failed: ")
            raise VerificationError(f"verification failed: wrong trust anchor or invalid certificate path: "
                                    f"{describe_certificate(leaf)} does not chain to a given anchor under the "
                                    f"code-signing policy ({reason[:300]})", rule=RULE) from None


def _code_signing_policy():
    """The leaf's extension policy: codeSigning EKU required, digitalSignature if a key usage is stated,
    anything else permitted unless it is an extension cryptography does not understand and marked critical."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID
    from cryptography.x509.verification import Criticality, ExtensionPolicy

    def code_signing(policy, cert, usage) -> None:
        if ExtendedKeyUsageOID.CODE_SIGNING not in usage:
            raise ValueError("extended key usage does not allow codeSigning")

    def digital_signature(policy, cert, usage) -> None:
        if usage is not None and not usage.digital_signature:
            raise ValueError("key usage does not allow digitalSignature")

    return (ExtensionPolicy.permit_all()
            .require_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, code_signing)
            .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, digital_signature))


def _explain_leaf(leaf, at: datetime.datetime, check_time: str) -> None:
    """The leaf's own problems in plain words (the path check would refuse them too, less readably)."""
    from cryptography import x509

    if not leaf.not_valid_before_utc <= at <= leaf.not_valid_after_utc:
        raise _fail(f"{describe_certificate(leaf)} is not valid at {at.isoformat()} (valid "
                    f"{leaf.not_valid_before_utc.isoformat()} to {leaf.not_valid_after_utc.isoformat()}, "
                    f"time policy {check_time!r})")
    try:
        leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        raise _fail(f"{describe_certificate(leaf)} states no extended key usage; guard requires codeSigning") from None


def _self_signed(cert) -> bool:
    from cryptography.exceptions import InvalidSignature

    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _fail(message: str) -> VerificationError:
    return VerificationError(f"verification failed: {message}", rule=RULE)
