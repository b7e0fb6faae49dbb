"""`guard keygen`: an EC key pair for `guard sign --key` (private key PEM encrypted with a passphrase)."""

from __future__ import annotations

import pathlib

import click

from guard.cli._signing_options import DEFAULT_PASSPHRASE_ENV, new_passphrase
from guard.errors import InputError


@click.command("keygen")
@click.argument("private_key", type=click.Path(dir_okay=False, path_type=pathlib.Path))
@click.option("--public-key", type=click.Path(dir_okay=False, path_type=pathlib.Path), default=None,
              help="Where to write the public key (default: PRIVATE_KEY with .pub appended).")
@click.option("--curve", type=click.Choice(["p256", "p384"]), default="p256", show_default=True)
@click.option("--passphrase-env", default=DEFAULT_PASSPHRASE_ENV, show_default=True,
              help="Environment variable holding the passphrase (otherwise prompted on a terminal).")
@click.option("--force", is_flag=True, help="Overwrite existing key files.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def keygen(private_key: pathlib.Path, public_key: pathlib.Path | None, curve: str, passphrase_env: str, force: bool,
           as_json: bool) -> int:
    """Create an EC key pair; the private key is encrypted with a passphrase."""
    from guard.signing import keys
    from guard.artifacts.atomic import write_atomically

    public_key = public_key or private_key.with_name(private_key.name + ".pub")
    for path in (private_key, public_key):
        if path.exists() and not force:
            raise InputError("already exists (use --force to overwrite)", path=path, rule="keygen-exists")
        if not path.parent.is_dir():
            raise InputError("directory does not exist", path=path.parent, rule="path-not-found")
    passphrase = new_passphrase(passphrase_env)
    key = keys.generate_private_key(curve)
    write_atomically(private_key, keys.private_key_pem(key, passphrase).decode("ascii"), mode=0o600)
    write_atomically(public_key, keys.public_key_pem(key.public_key()).decode("ascii"))
    hint = keys.key_hint(key.public_key())
    if as_json:
        from guard.cli._output import emit_json

        emit_json({"private_key": str(private_key), "public_key": str(public_key), "curve": curve, "key_hint": hint})
    else:
        click.echo(f"wrote {private_key} (encrypted) and {public_key}; curve {curve}; key hint {hint}")
    return 0
