"""Verification options shared by the commands that check a signature (`guard verify`, `guard inspect`).

Usage in a command:

    @verifier_options(prefix="verify-")          # --verify-key, --verify-certificate-chain, ...
    def inspect_cmd(..., **options):
        chosen = pop_verifier_options(options)
        build = lazy_verifier(**chosen) if wants_verification(chosen) else None

With `prefix=""` the flags are `guard verify`'s: --key, --certificate-chain, --certificate-time,
--identity, --issuer, --trust-config, --staging, --allow-legacy. Option checks run at once (exit 2
before any work); the verifier itself is built when first called, so `guard verify` can overlap
importing cryptography with hashing.
"""

from __future__ import annotations

import pathlib

import click

from guard.cli._signing_options import option_group

VERIFIER_OPTION_NAMES = ("public_key", "certificate_chain", "certificate_time", "identity", "issuer", "trust_config",
                         "staging", "allow_legacy")
_FILE = click.Path(dir_okay=False, path_type=pathlib.Path)


def verifier_options(*, prefix: str = ""):
    """Decorator adding the verification-method options, each flag named `--{prefix}{name}`."""
    def flag(name: str) -> str:
        return f"--{prefix}{name}"

    options = [
        click.option(flag("key"), "public_key", type=_FILE, default=None, help="EC public key (PEM): key method."),
        click.option(flag("certificate-chain"), "certificate_chain", type=_FILE, multiple=True,
                     help="Trust anchor(s) (PEM root CA; repeatable): certificate method."),
        click.option(flag("certificate-time"), "certificate_time", type=click.Choice(["now", "signing"]),
                     default="now", show_default=True,
                     help="Check the certificate path now, or (like OMS) at the leaf's notBefore."),
        click.option(flag("identity"), "identity", default=None,
                     help="Expected signer identity (certificate SAN): keyless method."),
        click.option(flag("issuer"), "issuer", default=None, help="Expected OIDC issuer URL: keyless method."),
        click.option(flag("trust-config"), "trust_config", type=_FILE, default=None,
                     help="Sigstore ClientTrustConfig JSON; makes keyless verification offline."),
        click.option(flag("staging"), "staging", is_flag=True, help="Sigstore staging trust root (network)."),
        click.option(flag("allow-legacy"), "allow_legacy", is_flag=True,
                     help="Also accept model_signing 0.2's forms (legacy DSSE encoding, SHA-256 with any curve, "
                          "v0.2 predicate)."),
    ]

    return option_group(options)


def pop_verifier_options(kwargs: dict) -> dict:
    return {name: kwargs.pop(name) for name in VERIFIER_OPTION_NAMES if name in kwargs}


def wants_verification(options: dict) -> bool:
    return options.get("public_key") is not None or bool(options.get("certificate_chain")) or bool(
        options.get("identity") or options.get("issuer"))


def lazy_verifier(*, public_key=None, certificate_chain=(), certificate_time="now", identity=None, issuer=None,
                  trust_config=None, staging=False, allow_legacy=False):
    """A zero-argument callable building the Verifier. The options are checked now: InputError (exit 2)
    unless exactly one method is chosen."""
    from guard.signing.verify import check_verifier_options, load_verifier

    check_verifier_options(public_key=public_key, certificate_chain=certificate_chain, identity=identity,
                           issuer=issuer, trust_config=trust_config, staging=staging)

    def build():
        return load_verifier(public_key=public_key, certificate_chain=certificate_chain, identity=identity,
                             issuer=issuer, trust_config=trust_config, staging=staging,
                             certificate_time=certificate_time, allow_legacy=allow_legacy)

    return build
