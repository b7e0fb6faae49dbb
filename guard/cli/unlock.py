"""`guard unlock MODEL --out OUT --lock-key K --verify-key PUB`: restore the original weights of a
MergeLock-protected model, read from the bytes its signature covers.

A key whose fingerprint does not match the model's lock metadata is refused (exit 1) before anything is
written. The result is self-checked against the protected model and written atomically.
"""

from __future__ import annotations

import pathlib

import click

from guard.cli._memory import use_huge_pages
from guard.cli._verifier_options import lazy_verifier, pop_verifier_options, verifier_options, wants_verification

_FILE = click.Path(dir_okay=False, path_type=pathlib.Path)


@click.command("unlock")
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=pathlib.Path))
@click.option("--out", "out_dir", type=click.Path(path_type=pathlib.Path), required=True,
              help="Where to write the restored model (must not exist).")
@click.option("--lock-key", type=click.Path(dir_okay=False, path_type=pathlib.Path), required=True,
              help="The lock key the model was protected with.")
@click.option("--allow-legacy", "allow_legacy_lock", is_flag=True,
              help="Also unlock a format v1 output, whose guard_lock.json carries no MAC (written before v2).")
@click.option("--signature", type=_FILE, default=None,
              help="With --verify-*: the signature file (default: MODEL_DIR/model.sig).")
@verifier_options(prefix="verify-")
@click.option("--unverified", is_flag=True,
              help="Unlock without verifying the protected model's signature (no --verify-* option).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def unlock(model_dir: pathlib.Path, out_dir: pathlib.Path, lock_key: pathlib.Path, allow_legacy_lock: bool,
           signature: pathlib.Path | None, unverified: bool, as_json: bool, **options) -> int:
    """Undo MergeLock on MODEL_DIR, after verifying its signature (or with --unverified). To sign the
    restored model, run `guard sign` on it."""
    from guard.errors import InputError
    from guard.lock.keys import read_lock_key

    chosen = pop_verifier_options(options)
    if wants_verification(chosen) == unverified:
        raise InputError("pass a verification method for the protected model (--verify-key, "
                         "--verify-certificate-chain, or --verify-identity with --verify-issuer), or --unverified",
                         rule="verify-method")
    verifier = lazy_verifier(**chosen)() if wants_verification(chosen) else None
    if verifier is None and signature is not None:
        raise InputError("--signature needs a verification method", rule="verify-method")
    key = read_lock_key(lock_key)
    use_huge_pages()
    from guard.lock.protect import unlock_model  # torch loads only past the option checks

    result = unlock_model(model_dir, out_dir, key=key, allow_legacy=allow_legacy_lock, verifier=verifier,
                          signature=signature)
    check = result.selfcheck
    if as_json:
        from guard.cli._output import emit_json

        emit_json({"unlocked": True, "out_dir": str(result.out_dir), "selfcheck": check.as_metadata(),
                   "verified": verifier is not None})
    else:
        source = "the verified bytes" if verifier is not None else "an unverified model (--unverified)"
        click.echo(f"unlocked {model_dir} -> {result.out_dir} from {source}; self-check: max relative logit error "
                   f"{check.max_relative_error:.3g} (bound {check.bound:g}, {check.dtype})")
    return 0
