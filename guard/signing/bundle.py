"""Sigstore bundle v0.3 (the OMS signature file): strict reading and atomic writing.

A signature file that cannot be read at all (missing, permissions) is unreadable input (exit 2). A file
that reads but does not parse as a well-formed bundle is a failed verification (exit 1): it is the
signature that is wrong, and the message says what is wrong with it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import pathlib

from guard.artifacts.json_text import parse_json
from guard.errors import InputError, VerificationError
from guard.signing.dsse import Envelope

MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
KEYLESS_MEDIA_TYPES = (MEDIA_TYPE, "application/vnd.dev.sigstore.bundle+json;version=0.3")
RULE = "verify-bundle"
MAX_BUNDLE_BYTES = 64 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Bundle:
    media_type: str
    envelope: Envelope
    public_key_hint: str | None  # key method: hex sha256 of the signer's PEM SubjectPublicKeyInfo
    certificate_chain: tuple[bytes, ...]  # certificate method: DER, leaf first
    certificate: bytes | None  # keyless: the Fulcio leaf (DER)
    tlog_entries: int
    text: str  # the file as read, for sigstore-python

    @property
    def kind(self) -> str:
        if self.certificate is not None:
            return "sigstore"
        if self.certificate_chain:
            return "certificate"
        return "key"


def read_bundle(path: str | os.PathLike) -> Bundle:
    path = pathlib.Path(path)
    try:
        if path.stat().st_size > MAX_BUNDLE_BYTES:
            raise VerificationError(f"verification failed: signature bundle unreadable: larger than "
                                    f"{MAX_BUNDLE_BYTES} bytes", path=path, rule=RULE)
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError("no such signature file", path=path, rule="path-not-found") from None
    except IsADirectoryError:
        raise InputError("signature path is a directory", path=path, rule="path-not-file") from None
    except OSError as exc:
        raise InputError(f"cannot read signature: {exc.strerror}", path=path, rule="path-unreadable") from None
    try:
        return parse_bundle(raw)
    except VerificationError as exc:
        raise VerificationError(exc.message, path=path, rule=exc.rule) from None


def parse_bundle(raw: bytes) -> Bundle:
    """Parse strictly: every member guard does not check is refused rather than ignored (an unknown or
    renamed key, a DSSE keyid, transparency-log entries or timestamps beside a key or certificate, a
    duplicate key, base64 that is not canonical), so a bundle verifies only as exactly what was signed.
    Keyless bundles' log entries and timestamps are for sigstore-python, which checks them."""
    try:
        text = raw.decode("utf-8")
        doc, duplicates = parse_json(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _fail(f"not JSON ({type(exc).__name__}: {exc})") from None
    _require(not duplicates, f"duplicate key {duplicates[0][:100]!r}" if duplicates else "")
    _require(isinstance(doc, dict), "not a JSON object")
    media_type = doc.get("mediaType")
    _require(media_type in KEYLESS_MEDIA_TYPES, f"media type {media_type!r} is not a Sigstore bundle v0.3")
    material = doc.get("verificationMaterial")
    _require(isinstance(material, dict), "no verificationMaterial")
    kinds = [k for k in ("publicKey", "x509CertificateChain", "certificate") if k in material]
    _require(len(kinds) == 1, f"verificationMaterial must hold exactly one of publicKey, x509CertificateChain, "
                              f"certificate (found {kinds or 'none'})")
    keyless = kinds[0] == "certificate"
    _members(material, "verificationMaterial", required={kinds[0]},
             optional={"tlogEntries", "timestampVerificationData"} if keyless else {"tlogEntries"})
    tlog = material.get("tlogEntries", [])
    _require(isinstance(tlog, list), "tlogEntries is not a list")
    _require(keyless or not tlog, "tlogEntries beside a key or certificate (guard does not check them)")
    hint, chain, certificate = None, (), None
    if kinds[0] == "publicKey":
        key = material["publicKey"]
        _require(isinstance(key, dict), "publicKey is not an object")
        _members(key, "publicKey", optional={"hint"})
        hint = key.get("hint")
        _require(hint is None or isinstance(hint, str), "publicKey hint is not a string")
    elif kinds[0] == "x509CertificateChain":
        certs = material["x509CertificateChain"]
        _require(isinstance(certs, dict) and isinstance(certs.get("certificates"), list) and certs["certificates"],
                 "x509CertificateChain has no certificates")
        _members(certs, "x509CertificateChain", required={"certificates"})
        chain = tuple(_raw_bytes(c, "certificate") for c in certs["certificates"])
    else:
        certificate = _raw_bytes(material["certificate"], "certificate")
    envelope = _parse_envelope(doc.get("dsseEnvelope"))
    _members(doc, "the bundle", optional={"mediaType", "verificationMaterial", "dsseEnvelope"})
    return Bundle(media_type=media_type, envelope=envelope, public_key_hint=hint, certificate_chain=chain,
                  certificate=certificate, tlog_entries=len(tlog), text=text)


def _parse_envelope(env: object) -> Envelope:
    _require(isinstance(env, dict), "no dsseEnvelope (guard only reads DSSE bundles)")
    _members(env, "dsseEnvelope", required={"payload", "payloadType", "signatures"})
    payload_type = env["payloadType"]
    _require(isinstance(payload_type, str), "dsseEnvelope payloadType is not a string")
    payload = _b64(env["payload"], "payload")
    sigs = env["signatures"]
    _require(isinstance(sigs, list) and len(sigs) == 1, "dsseEnvelope must carry exactly one signature")
    _require(isinstance(sigs[0], dict), "the DSSE signature is not an object")
    _members(sigs[0], "the DSSE signature", required={"sig"}, optional={"keyid"})
    # DSSE's keyid is an unauthenticated hint; OMS and Sigstore leave it empty, and so must a bundle here.
    _require(sigs[0].get("keyid", "") == "", "the DSSE signature names a keyid (OMS and Sigstore leave it empty)")
    sig = _b64(sigs[0]["sig"], "signature")
    return Envelope(payload=payload, payload_type=payload_type, signatures=(sig,))


def _members(obj: dict, what: str, *, required: set[str] = frozenset(), optional: set[str] = frozenset()) -> None:
    missing = sorted(required - obj.keys())
    _require(not missing, f"{what} lacks {', '.join(missing)}")
    unknown = sorted(obj.keys() - required - optional)
    _require(not unknown, f"{what} has members guard does not check: {', '.join(k[:50] for k in unknown[:5])}")


def _raw_bytes(obj: object, what: str) -> bytes:
    _require(isinstance(obj, dict), f"{what} is not an object")
    _members(obj, what, required={"rawBytes"})
    return _b64(obj["rawBytes"], what)


def bundle_text(envelope: Envelope, verification_material: dict) -> str:
    doc = {"mediaType": MEDIA_TYPE, "verificationMaterial": verification_material,
           "dsseEnvelope": envelope.to_json()}
    return json.dumps(doc, indent=2) + "\n"


def _b64(value: object, what: str) -> bytes:
    _require(isinstance(value, str) and value, f"{what} is missing")
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _fail(f"{what} is not valid base64") from None
    # A padded encoding has bits the decoder ignores: only the one canonical spelling is accepted.
    _require(base64.b64encode(decoded).decode("ascii") == value, f"{what} is not canonical base64")
    return decoded


def _require(condition: object, message: str) -> None:
    if not condition:
        raise _fail(message)


def _fail(message: str) -> VerificationError:
    return VerificationError(f"verification failed: signature bundle unreadable: {message}", rule=RULE)
