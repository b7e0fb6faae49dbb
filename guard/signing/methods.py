"""The signer/verifier pair every signing method implements, and the registry of methods.

A Signer turns a DSSE payload (the in-toto statement) into a bundle file's text; its paired Verifier
checks a bundle and returns the payload it vouches for. Everything about files and digests lives
outside the methods (sign.py, verify.py), so a method is only about keys and trust.
"""

from __future__ import annotations

import abc
import dataclasses

from guard.signing.bundle import Bundle

METHODS = {
    "key": "guard.signing.method_key",
    "certificate": "guard.signing.method_certificate",
    "sigstore": "guard.signing.method_sigstore",
}


@dataclasses.dataclass(frozen=True)
class SignedContent:
    payload: bytes  # the DSSE payload whose signature checked out
    signer: str  # who signed, in words (key hint, certificate subject, OIDC identity)
    legacy_encoding: bool = False  # signed over model_signing 0.2's buggy PAE (only with Verifier.allow_legacy)


class Signer(abc.ABC):
    method: str

    @abc.abstractmethod
    def sign(self, payload: bytes) -> str:
        """Sign `payload` (an in-toto statement) and return the Sigstore bundle JSON text."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Who signs, in words."""


class Verifier(abc.ABC):
    method: str
    # model_signing 0.2's forms (its mis-encoded PAE, SHA-256 with any curve, the v0.2 predicate) are
    # accepted only when this is set (`--allow-legacy`).
    allow_legacy: bool = False

    @abc.abstractmethod
    def verify(self, bundle: Bundle) -> SignedContent:
        """Check the bundle's signature and trust; raise VerificationError with the reason otherwise."""
