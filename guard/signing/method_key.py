"""Key method: ECDSA over the DSSE PAE with a local EC key; the bundle carries only the key hint."""

from __future__ import annotations

import os

from guard.errors import VerificationError
from guard.signing import keys
from guard.signing.bundle import Bundle, bundle_text
from guard.signing.dsse import Envelope, pae, pae_legacy
from guard.signing.methods import SignedContent, Signer, Verifier
from guard.signing.statement import PAYLOAD_TYPE


def ecdsa_sign(private_key, payload: bytes) -> Envelope:
    signature = private_key.sign(pae(payload), keys.ecdsa_algorithm(private_key.public_key()))
    return Envelope(payload=payload, payload_type=PAYLOAD_TYPE, signatures=(signature,))


def ecdsa_check(public_key, envelope: Envelope, *, what: str, allow_legacy: bool = False) -> bool:
    """True if the signature is over the standard PAE with the curve's hash. With `allow_legacy`, False if
    it is over model_signing 0.2's legacy PAE (with the curve's hash, or SHA-256 whatever the curve, as
    0.2's certificate signer used). Otherwise VerificationError, naming --allow-legacy when that is why."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    if envelope.payload_type != PAYLOAD_TYPE:
        raise VerificationError(f"verification failed: DSSE payload type {envelope.payload_type!r} is not "
                                f"{PAYLOAD_TYPE}", rule="verify-signature")
    signature = envelope.signatures[0]
    try:
        public_key.verify(signature, pae(envelope.payload), keys.ecdsa_algorithm(public_key))
        return True
    except InvalidSignature:
        pass
    curve_hash, sha256 = keys.ecdsa_algorithm(public_key), ec.ECDSA(hashes.SHA256())
    legacy_forms = [(pae_legacy(envelope.payload), curve_hash, "model_signing 0.2's legacy DSSE encoding")]
    if not isinstance(curve_hash.algorithm, hashes.SHA256):  # 0.2's certificate signer hashed with SHA-256 always
        legacy_forms.append((pae_legacy(envelope.payload), sha256,
                             f"model_signing 0.2's legacy DSSE encoding and SHA-256 with a {public_key.curve.name} key"))
    for encoded, algorithm, form in legacy_forms:
        try:
            public_key.verify(signature, encoded, algorithm)
        except InvalidSignature:
            continue
        if not allow_legacy:
            raise VerificationError(f"verification failed: signed with {form}, a legacy form guard accepts only "
                                    "with --allow-legacy (API: allow_legacy=True)", rule="verify-legacy")
        return False
    raise VerificationError(f"verification failed: the DSSE signature does not verify with {what}",
                            rule="verify-signature")


class KeySigner(Signer):
    method = "key"

    def __init__(self, *, private_key) -> None:
        self._key = private_key

    @classmethod
    def from_file(cls, path: str | os.PathLike, *, passphrase: bytes | None) -> KeySigner:
        return cls(private_key=keys.load_private_key(path, passphrase))

    def sign(self, payload: bytes) -> str:
        material = {"publicKey": {"hint": keys.key_hint(self._key.public_key())}, "tlogEntries": []}
        return bundle_text(ecdsa_sign(self._key, payload), material)

    def describe(self) -> str:
        return f"key {keys.key_hint(self._key.public_key())}"


class KeyVerifier(Verifier):
    method = "key"

    def __init__(self, *, public_key, allow_legacy: bool = False) -> None:
        self._key = public_key
        self._hint = keys.key_hint(public_key)
        self.allow_legacy = allow_legacy

    @classmethod
    def from_file(cls, path: str | os.PathLike, *, allow_legacy: bool = False) -> KeyVerifier:
        return cls(public_key=keys.load_public_key(path), allow_legacy=allow_legacy)

    def verify(self, bundle: Bundle) -> SignedContent:
        if bundle.kind != "key":
            raise VerificationError(f"verification failed: the signature was made with the {bundle.kind} method, "
                                    "not with a key (pass the matching verification option)", rule="verify-method")
        if bundle.public_key_hint is not None and bundle.public_key_hint != self._hint:
            raise VerificationError(f"verification failed: wrong key: the signature names key {bundle.public_key_hint}, "
                                    f"the given public key is {self._hint}", rule="verify-key")
        standard = ecdsa_check(self._key, bundle.envelope, what=f"public key {self._hint}",
                               allow_legacy=self.allow_legacy)
        return SignedContent(payload=bundle.envelope.payload, signer=f"key {self._hint}",
                             legacy_encoding=not standard)
