"""OMS-compatible model signing and verification (Sigstore bundle v0.3 / DSSE / in-toto v1).

Public API (everything else in this package is machinery):

    signer = load_signer(key="ec.key", key_passphrase=b"...")
    sign_model("models/bert", signer=signer)                      # -> models/bert/model.sig
    verifier = load_verifier(public_key="ec.pub")
    verify_model("models/bert", signature="models/bert/model.sig", verifier=verifier)
    with open_verified_model("models/bert", signature=..., verifier=verifier) as model_dir:
        ...  # a guard.artifacts.ModelDir over a private copy of exactly the bytes that were hashed

Importing this package is cheap: methods import cryptography / sigstore only when used.
"""

from __future__ import annotations

import importlib

__all__ = ["Signer", "VerificationResult", "Verifier", "load_signer", "load_verifier", "open_verified_model",
           "sign_model", "verify_model"]

_LAZY = {
    "load_signer": "guard.signing.sign",
    "sign_model": "guard.signing.sign",
    "load_verifier": "guard.signing.verify",
    "verify_model": "guard.signing.verify",
    "VerificationResult": "guard.signing.verify",
    "open_verified_model": "guard.signing.verified_model",
    "Signer": "guard.signing.methods",
    "Verifier": "guard.signing.methods",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'guard.signing' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
