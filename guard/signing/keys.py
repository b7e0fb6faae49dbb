"""EC keys for the key and certificate methods: generation, PEM loading, the OMS key hint."""

from __future__ import annotations

import hashlib
import os
import pathlib

from guard.errors import InputError

SIGN_CURVES = ("p256", "p384")  # what `guard keygen` makes
_VERIFY_CURVES = {"secp256r1": "sha256", "secp384r1": "sha384", "secp521r1": "sha512"}  # as OMS / Sigstore


def generate_private_key(curve: str = "p256"):
    from cryptography.hazmat.primitives.asymmetric import ec

    if curve not in SIGN_CURVES:
        raise InputError(f"unknown curve {curve!r} (choose {', '.join(SIGN_CURVES)})", rule="keygen-curve")
    return ec.generate_private_key(ec.SECP256R1() if curve == "p256" else ec.SECP384R1())


def private_key_pem(private_key, passphrase: bytes) -> bytes:
    """PKCS#8 PEM, encrypted with the passphrase (the best scheme cryptography offers)."""
    from cryptography.hazmat.primitives import serialization

    if not passphrase:
        raise InputError("an empty passphrase would leave the private key unencrypted", rule="keygen-passphrase")
    return private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.BestAvailableEncryption(passphrase))


def public_key_pem(public_key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_hint(public_key) -> str:
    """OMS's `publicKey.hint`: hex sha256 of the PEM SubjectPublicKeyInfo."""
    return hashlib.sha256(public_key_pem(public_key)).hexdigest()


def ecdsa_algorithm(public_key):
    """ECDSA with the hash that matches the curve (Sigstore's key details; what OMS signs with)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    name = _VERIFY_CURVES[check_ec_key(public_key)]
    return ec.ECDSA({"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}[name])


def check_ec_key(public_key, *, where: str | os.PathLike | None = None) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec

    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise InputError(f"not an EC key ({type(public_key).__name__}); OMS signs with EC P-256/P-384/P-521",
                         path=where, rule="key-type")
    if public_key.curve.name not in _VERIFY_CURVES:
        raise InputError(f"unsupported curve {public_key.curve.name}", path=where, rule="key-type")
    return public_key.curve.name


def load_private_key(path: str | os.PathLike, passphrase: bytes | None):
    from cryptography.hazmat.primitives import serialization

    data = _read(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, passphrase)
    except TypeError as exc:
        # Encrypted key without a passphrase, or a passphrase for an unencrypted key.
        needs = "encrypted" in str(exc) and "not encrypted" not in str(exc)
        hint = "the key is encrypted: set the passphrase variable or run interactively" if needs else str(exc)
        raise InputError(hint, path=path, rule="key-passphrase") from None
    except ValueError as exc:
        message = str(exc)
        if "password" in message.lower() or "decrypt" in message.lower():
            raise InputError("wrong passphrase for the private key", path=path, rule="key-passphrase") from None
        raise InputError(f"not a PEM private key ({message.splitlines()[0] if message else 'unparseable'})",
                         path=path, rule="key-unreadable") from None
    except Exception as exc:  # cryptography raises several types for unsupported encodings
        raise InputError(f"cannot load private key: {type(exc).__name__}", path=path, rule="key-unreadable") from None
    check_ec_key(key.public_key(), where=path)
    return key


def load_public_key(path: str | os.PathLike):
    from cryptography.hazmat.primitives import serialization

    data = _read(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise InputError(f"not a PEM public key ({str(exc).splitlines()[0] if str(exc) else 'unparseable'})",
                         path=path, rule="key-unreadable") from None
    check_ec_key(key, where=path)
    return key


def _read(path: str | os.PathLike, what: str) -> bytes:
    try:
        return pathlib.Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"no such {what} file", path=path, rule="path-not-found") from None
    except OSError as exc:
        raise InputError(f"cannot read {what}: {exc.strerror}", path=path, rule="path-unreadable") from None
