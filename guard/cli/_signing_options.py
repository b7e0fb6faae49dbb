"""Signing options shared by `guard sign`, `protect`, `unlock` and `safe-merge` (click decorators + one constructor).

Usage in a command:

    @signer_options(key_flag="--sign-key")
    def protect(..., **options):
        signer = signer_from_options(**pop_signer_options(options))

The passphrase never comes from the command line: it is read from the environment variable named by
`--passphrase-env` (default GUARD_KEY_PASSPHRASE), or prompted for when the key is encrypted and stdin
is a terminal.
"""

from __future__ import annotations

import os
import pathlib
import sys

import click

from guard.errors import InputError

DEFAULT_PASSPHRASE_ENV = "GUARD_KEY_PASSPHRASE"
# Each option's parameter name -> signer_from_options' argument. The names differ from the verifier options'
# (guard/cli/_verifier_options.py), so one command can take both groups (safe-merge).
SIGNER_OPTION_NAMES = {"sign_key": "sign_key", "certificate": "certificate", "sign_certificate_chain": "certificate_chain",
                       "sigstore": "sigstore", "identity_token": "identity_token", "sign_staging": "staging",
                       "sign_trust_config": "trust_config", "passphrase_env": "passphrase_env"}
_PATH = click.Path(dir_okay=False, path_type=pathlib.Path)


def signer_options(*, key_flag: str = "--key", beside_verifier: bool = False):
    """Decorator adding the signing-method options. With `beside_verifier` (a command that also takes
    @verifier_options(prefix=""), as safe-merge does) the flags a verifier also has are --sign-certificate-chain,
    --sign-trust-config and --sign-staging."""
    clash = "--sign-" if beside_verifier else "--"
    options = [
        click.option(key_flag, "sign_key", type=_PATH, default=None,
                     help="EC private key (PEM) for the key method, or the certificate's key."),
        click.option("--certificate", type=_PATH, default=None,
                     help="Signing certificate (PEM) matching the key: certificate method."),
        click.option(f"{clash}certificate-chain", "sign_certificate_chain", type=_PATH, multiple=True,
                     help="Intermediate certificates to embed (PEM; repeatable)."),
        click.option("--sigstore", is_flag=True, help="Keyless Sigstore signing (needs network and an OIDC identity)."),
        click.option("--identity-token", default=None,
                     help="OIDC identity token for --sigstore (default: $SIGSTORE_ID_TOKEN, ambient, or browser)."),
        click.option(f"{clash}staging", "sign_staging", is_flag=True,
                     help="Use Sigstore's staging instance (testing only)."),
        click.option(f"{clash}trust-config", "sign_trust_config", type=_PATH, default=None,
                     help="Sigstore ClientTrustConfig JSON (private instance)."),
        click.option("--passphrase-env", default=DEFAULT_PASSPHRASE_ENV, show_default=True,
                     help="Environment variable holding the private key's passphrase."),
    ]

    return option_group(options)


def option_group(options: list):
    """One decorator applying click options in the order listed (so --help lists them that way)."""
    def decorate(func):
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def pop_signer_options(kwargs: dict) -> dict:
    """The signing options taken out of a command's keyword arguments, as signer_from_options' arguments."""
    return {argument: kwargs.pop(name) for name, argument in SIGNER_OPTION_NAMES.items() if name in kwargs}


def wants_signing(options: dict) -> bool:
    return options.get("sign_key") is not None or bool(options.get("sigstore"))


def signer_from_options(*, sign_key=None, certificate=None, certificate_chain=(), sigstore=False, identity_token=None,
                        staging=False, trust_config=None, passphrase_env=DEFAULT_PASSPHRASE_ENV, lazy: bool = False):
    """A Signer; with `lazy=True` a LazySigner to hand to sign_model (the passphrase is read now either way)."""
    passphrase = None
    if sign_key is not None and not sigstore:
        passphrase = read_passphrase(sign_key, passphrase_env)
    lazy_signer = LazySigner(dict(key=sign_key, key_passphrase=passphrase, certificate=certificate,
                                  certificate_chain=tuple(certificate_chain), sigstore=sigstore,
                                  identity_token=identity_token, staging=staging, trust_config=trust_config))
    return lazy_signer if lazy else lazy_signer()


class LazySigner:
    """Builds the Signer when called (sign_model calls it while the files hash); `.signer` afterwards."""

    def __init__(self, arguments: dict) -> None:
        self._arguments = arguments
        self.signer = None

    def __call__(self):
        from guard.signing import load_signer

        if self.signer is None:
            self.signer = load_signer(**self._arguments)
        return self.signer


def read_passphrase(key_path: pathlib.Path, env_name: str) -> bytes | None:
    """The passphrase for an encrypted key: from $env_name, else a prompt on a terminal, else None."""
    value = os.environ.get(env_name)
    if value:
        return value.encode("utf-8")
    if not _is_encrypted(key_path):
        return None
    if sys.stdin.isatty():
        return click.prompt(f"Passphrase for {key_path}", hide_input=True).encode("utf-8")
    raise InputError(f"the private key is encrypted: set ${env_name} or run on a terminal", path=key_path,
                     rule="key-passphrase")


def new_passphrase(env_name: str) -> bytes:
    """A passphrase for a new key: from $env_name, else prompted twice on a terminal."""
    value = os.environ.get(env_name)
    if value:
        return value.encode("utf-8")
    if sys.stdin.isatty():
        return click.prompt("Passphrase for the new key", hide_input=True, confirmation_prompt=True).encode("utf-8")
    raise InputError(f"no passphrase: set ${env_name} or run on a terminal", rule="keygen-passphrase")


def _is_encrypted(key_path: pathlib.Path) -> bool:
    try:
        head = key_path.read_bytes()[:4096]
    except OSError:
        return False  # load_private_key reports the read error with its path
    return b"ENCRYPTED" in head
