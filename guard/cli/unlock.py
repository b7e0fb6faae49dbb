"""`guard unlock MODEL --out OUT --lock-key K`: restore the original weights of a MergeLock-protected model.

A key whose fingerprint does not match the model's lock metadata is refused (exit 1) before anything is
written. The result is self-checked against the protected model and written atomically.
"""

from __future__ import annotations

import pathlib

import click

from guard.cli._signing_options import pop_signer_options, signer_from_options, signer_options

_FILE = click.Path(dir_okay=False, path_type=pathlib.Path)


def use_huge_pages() -> None:
    """Ask torch's CPU allocator for transparent huge pages (before torch is imported: it reads this once).
    Every weight passes through a fresh buffer; first-touch page faults made such copies 3-4x slower on
    the shared VM (torch clone of 256 MB: 0.8 GB/s without, 2.5 GB/s with)."""
    import os

    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


@click.command("unlock")
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=pathlib.Path))
@click.option("--out", "out_dir", type=click.Path(path_type=pathlib.Path), required=True,
              help="Where to write the restored model (must not exist).")
@click.option("--lock-key", type=click.Path(dir_okay=False, path_type=pathlib.Path), required=True,
              help="The lock key the model was protected with.")
@click.option("--allow-legacy", is_flag=True,
              help="Also unlock a format v1 output, whose guard_lock.json carries no MAC (written before v2).")
@click.option("--verify-key", "verify_key", type=_FILE, default=None,
              help="Verify the protected model's signature with this EC public key (PEM) first, and unlock the "
                   "verified bytes.")
@click.option("--verify-certificate-chain", "verify_certificate_chain", type=_FILE, multiple=True,
              help="Verify against these trust anchors (PEM root CA; repeatable) first.")
@click.option("--verify-identity", default=None, help="Verify keyless (Sigstore): expected signer identity.")
@click.option("--verify-issuer", default=None, help="Verify keyless (Sigstore): expected OIDC issuer URL.")
@click.option("--verify-trust-config", type=_FILE, default=None, help="Sigstore ClientTrustConfig JSON (offline).")
@click.option("--signature", type=_FILE, default=None, help="The signature file (default: MODEL_DIR/model.sig).")
@click.option("--unverified", is_flag=True,
              help="Unlock without verifying the protected model's signature (no --verify-* option).")
@signer_options(key_flag="--sign-key")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def unlock(model_dir: pathlib.Path, out_dir: pathlib.Path, lock_key: pathlib.Path, allow_legacy: bool,
           verify_key: pathlib.Path | None, verify_certificate_chain: tuple[pathlib.Path, ...],
           verify_identity: str | None, verify_issuer: str | None, verify_trust_config: pathlib.Path | None,
           signature: pathlib.Path | None, unverified: bool, as_json: bool, **options) -> int:
    """Undo MergeLock on MODEL_DIR (optionally signing the restored model)."""
    from guard.errors import InputError
    from guard.lock.keys import read_lock_key

    signer_args = pop_signer_options(options)
    verifying = dict(public_key=verify_key, certificate_chain=verify_certificate_chain, identity=verify_identity,
                     issuer=verify_issuer, trust_config=verify_trust_config)
    wants_verification = verify_key is not None or bool(verify_certificate_chain) or bool(verify_identity or verify_issuer)
    if wants_verification == unverified:
        raise InputError("pass a verification method for the protected model (--verify-key, "
                         "--verify-certificate-chain, or --verify-identity with --verify-issuer), or --unverified",
                         rule="verify-method")
    verifier = None
    if wants_verification:
        from guard.signing.verify import check_verifier_options, load_verifier

        check_verifier_options(**verifying)
        verifier = load_verifier(**verifying)
    elif signature is not None:
        raise InputError("--signature needs a verification method", rule="verify-method")
    wants_signature = signer_args.get("sign_key") is not None or signer_args.get("sigstore")
    signer = signer_from_options(**signer_args) if wants_signature else None
    key = read_lock_key(lock_key)
    use_huge_pages()
    from guard.lock.protect import unlock_model  # torch loads only past the option checks

    result = unlock_model(model_dir, out_dir, key=key, signer=signer, allow_legacy=allow_legacy, verifier=verifier,
                          signature=signature)
    check = result.selfcheck
    if as_json:
        from guard.cli._output import emit_json

        emit_json({"unlocked": True, "out_dir": str(result.out_dir), "selfcheck": check.as_metadata(),
                   "verified": verifier is not None,
                   "signature": None if result.signature is None else str(result.signature)})
    else:
        source = "the verified bytes" if verifier is not None else "an unverified model (--unverified)"
        click.echo(f"unlocked {model_dir} -> {result.out_dir} from {source}; self-check: max relative logit error "
                   f"{check.max_relative_error:.3g} (bound {check.bound:g}, {check.dtype})")
    return 0
