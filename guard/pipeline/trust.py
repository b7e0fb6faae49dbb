"""Trusted signers: the policy's list plus the command line's verifier options, as verifiers.

Each trusted signer becomes a `TrustedVerifier`: a label, how to build its guard.signing Verifier, and
the public material that identifies it (public key PEM, trust-anchor PEMs, or Sigstore identity and
issuer). Provenance records that material per input, so `guard verify --provenance` can re-verify the
inputs' signatures later with exactly the signer that was trusted.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Sequence
from typing import Any

from guard.errors import InputError


@dataclasses.dataclass(frozen=True)
class TrustedVerifier:
    name: str
    method: str  # key | certificate | sigstore
    material: dict[str, Any]  # public, JSON-ready: what provenance records

    @functools.cached_property
    def verifier(self):
        return verifier_from_material(self.material)


def verifier_from_material(material: dict[str, Any]):
    """A guard.signing Verifier from recorded public material (and the verification settings it records)."""
    method = material.get("method")
    allow_legacy = bool(material.get("allow_legacy", False))
    if method == "key":
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        from guard.signing.method_key import KeyVerifier

        try:
            return KeyVerifier(public_key=load_pem_public_key(material["public_key_pem"].encode("ascii")),
                               allow_legacy=allow_legacy)
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"unusable public key material: {exc}", rule="trust-material") from None
    if method == "certificate":
        from cryptography import x509

        from guard.signing.method_certificate import CertificateVerifier

        try:
            anchors = [x509.load_pem_x509_certificate(p.encode("ascii")) for p in material["anchors_pem"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"unusable certificate material: {exc}", rule="trust-material") from None
        return CertificateVerifier(anchors=anchors, check_time=material.get("certificate_time", "now"),
                                   allow_legacy=allow_legacy)
    if method == "sigstore":
        from guard.signing.method_sigstore import SigstoreVerifier

        return SigstoreVerifier(identity=material["identity"], issuer=material["issuer"],
                                trust_config=material.get("trust_config"), staging=bool(material.get("staging")),
                                allow_legacy=allow_legacy)
    raise InputError(f"unknown verification method {method!r} in recorded material", rule="trust-material")


def _read_text(path: pathlib.Path, what: str) -> str:
    try:
        return path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise InputError(f"no such {what} file", path=path, rule="path-not-found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {what}: {exc}", path=path, rule="path-unreadable") from None


def trusted_verifier(*, name: str, public_key: pathlib.Path | None = None,
                     certificate_chain: Sequence[pathlib.Path] = (), certificate_time: str = "now",
                     identity: str | None = None, issuer: str | None = None, trust_config: pathlib.Path | None = None,
                     staging: bool = False, allow_legacy: bool = False) -> TrustedVerifier:
    """One trusted signer from guard verify's options (guard.signing.load_verifier's names)."""
    if public_key is not None:
        material = {"method": "key", "public_key_pem": _read_text(public_key, "public key")}
    elif certificate_chain:
        material = {"method": "certificate", "anchors_pem": [_read_text(p, "certificate") for p in certificate_chain],
                    "certificate_time": certificate_time}
    elif identity and issuer:
        material = {"method": "sigstore", "identity": identity, "issuer": issuer}
        if trust_config is not None:
            material["trust_config"] = str(trust_config)
        if staging:
            material["staging"] = True
    else:
        raise InputError("a trusted signer needs a key, a certificate chain, or an identity with an issuer",
                         rule="verify-method")
    if allow_legacy:
        material["allow_legacy"] = True
    verifier = TrustedVerifier(name=name, method=material["method"], material=material)
    verifier.verifier  # noqa: B018 - load now: a bad key is bad input before any model is read
    return verifier


def trusted_verifiers(policy, **options) -> list[TrustedVerifier]:
    """The policy's trusted signers (paths relative to the policy file), then the command line's: `options` are
    guard verify's verifier options (public_key, certificate_chain, certificate_time, identity, issuer,
    trust_config, staging, allow_legacy), all optional here."""
    result = []
    for i, signer in enumerate(policy.policy.signatures.trusted_signers):
        result.append(trusted_verifier(
            name=signer.name or f"policy signer {i + 1}",
            public_key=None if signer.key is None else policy.resolve(signer.key),
            certificate_chain=[policy.resolve(p) for p in signer.certificate_chain or ()],
            identity=signer.identity, issuer=signer.issuer,
            trust_config=None if signer.trust_config is None else policy.resolve(signer.trust_config)))
    if options.get("public_key") is not None or options.get("certificate_chain") or options.get("identity") \
            or options.get("issuer"):
        from guard.signing.verify import check_verifier_options

        check_verifier_options(**{k: options.get(k) for k in ("public_key", "certificate_chain", "identity",
                                                                "issuer", "trust_config", "staging")})
        result.append(trusted_verifier(name="command line", **options))
    return result
