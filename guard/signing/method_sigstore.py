"""Sigstore (keyless) method through sigstore-python: Fulcio certificate + Rekor entry + timestamps.

Signing always needs the network (OIDC token, Fulcio, Rekor, TSA). Verification is offline when a
trust-config file is given (a ClientTrustConfig JSON with the trusted root); without one, sigstore-python
refreshes the production (or staging) trusted root over TUF. sigstore is imported only here, so the
key and certificate methods never pay for it.
"""

from __future__ import annotations

import os
import pathlib

from guard.errors import InputError, VerificationError
from guard.signing.bundle import Bundle
from guard.signing.methods import SignedContent, Signer, Verifier
from guard.signing.statement import PAYLOAD_TYPE


def load_trust_config(*, trust_config: str | os.PathLike | None, staging: bool):
    """A sigstore ClientTrustConfig: from the file if given (offline), else from TUF (network)."""
    from sigstore.models import ClientTrustConfig

    if trust_config is not None:
        try:
            text = pathlib.Path(trust_config).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot read trust config: {exc.strerror}", path=trust_config,
                             rule="path-unreadable") from None
        try:
            return ClientTrustConfig.from_json(text)
        except Exception as exc:  # pydantic/protobuf errors vary by version
            raise InputError(f"not a Sigstore ClientTrustConfig JSON ({type(exc).__name__})", path=trust_config,
                             rule="trust-config-unreadable") from None
    try:
        return ClientTrustConfig.staging() if staging else ClientTrustConfig.production()
    except Exception as exc:  # TUF refresh failures (offline, proxy, expired metadata)
        raise InputError(f"cannot fetch the Sigstore trusted root over TUF ({type(exc).__name__}); "
                         "pass --trust-config FILE to verify offline", rule="trust-config-fetch") from None


class SigstoreSigner(Signer):
    method = "sigstore"

    def __init__(self, *, identity_token: str | None = None, staging: bool = False,
                 trust_config: str | os.PathLike | None = None) -> None:
        if trust_config is not None and not pathlib.Path(trust_config).is_file():
            raise InputError("no such trust config file", path=trust_config, rule="path-not-found")
        self._token, self._staging, self._trust_config = identity_token, staging, trust_config

    def sign(self, payload: bytes) -> str:
        from sigstore.dsse import Statement
        from sigstore.sign import SigningContext

        config = load_trust_config(trust_config=self._trust_config, staging=self._staging)
        token = self._identity_token(config)
        with SigningContext.from_trust_config(config).signer(token) as signer:
            bundle = signer.sign_dsse(Statement(payload))
        return bundle.to_json()

    def _identity_token(self, config):
        from sigstore.oidc import IdentityToken, Issuer, detect_credential

        try:
            token = self._token or os.environ.get("SIGSTORE_ID_TOKEN")
            if token:
                return IdentityToken(token)
            ambient = detect_credential()
            if ambient:
                return IdentityToken(ambient)
            return Issuer(config.signing_config.get_oidc_url()).identity_token()
        except Exception as exc:  # sigstore raises IdentityError, network errors, ...
            raise InputError(f"cannot obtain an OIDC identity token: {exc}", rule="sigstore-token") from None

    def describe(self) -> str:
        return "sigstore keyless" + (" (staging)" if self._staging else "")


class SigstoreVerifier(Verifier):
    method = "sigstore"

    def __init__(self, *, identity: str, issuer: str, trust_config: str | os.PathLike | None = None,
                 staging: bool = False, allow_legacy: bool = False) -> None:
        if not identity or not issuer:
            raise InputError("keyless verification needs both --identity and --issuer", rule="sigstore-identity")
        self._identity, self._issuer = identity, issuer
        self.allow_legacy = allow_legacy  # the v0.2 predicate (sigstore-python checks the DSSE encoding itself)
        self._trust_config, self._staging = trust_config, staging

    def verify(self, bundle: Bundle) -> SignedContent:
        from sigstore.errors import Error as SigstoreError
        from sigstore.models import Bundle as SigstoreBundle
        from sigstore.verify import Verifier as SigstoreVerify
        from sigstore.verify.policy import Identity

        if bundle.kind != "sigstore":
            raise VerificationError(f"verification failed: the signature was made with the {bundle.kind} method, "
                                    "not with Sigstore", rule="verify-method")
        config = load_trust_config(trust_config=self._trust_config, staging=self._staging)
        try:
            parsed = SigstoreBundle.from_json(bundle.text)
        except Exception as exc:
            raise VerificationError(f"verification failed: signature bundle unreadable: {_reason(exc)}",
                                    rule="verify-bundle") from None
        try:
            verifier = SigstoreVerify(trusted_root=config.trusted_root)
            payload_type, payload = verifier.verify_dsse(parsed, Identity(identity=self._identity, issuer=self._issuer))
        except Exception as exc:  # noqa: BLE001 - sigstore lets parse errors of many types through; all mean "no"
            raise VerificationError(f"verification failed: sigstore: {_reason(exc)} (expected identity "
                                    f"{self._identity!r}, issuer {self._issuer!r})", rule="verify-sigstore") from None
        if payload_type != PAYLOAD_TYPE or payload != bundle.envelope.payload:
            raise VerificationError(f"verification failed: unexpected DSSE payload type {payload_type!r}",
                                    rule="verify-signature")
        return SignedContent(payload=payload, signer=f"sigstore identity {self._identity} (issuer {self._issuer})")


def _reason(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
