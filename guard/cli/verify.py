"""`guard verify MODEL --signature SIG`: exit 0 verified, 1 verification failed, 2 unreadable input.

Imports neither torch nor sigstore (sigstore only for --identity/--issuer).
"""

from __future__ import annotations

import pathlib

import click

from guard.cli._verifier_options import lazy_verifier, pop_verifier_options, verifier_options


@click.command("verify")
@click.argument("model_dir", metavar="MODEL", type=click.Path(path_type=pathlib.Path))
@click.option("--signature", type=click.Path(dir_okay=False, path_type=pathlib.Path), default=None,
              help="The signature file (default: MODEL/model.sig, or MODEL.sig beside a single-file model).")
@verifier_options(prefix="")
@click.option("--ignore-path", "ignore_paths", multiple=True,
              help="Also leave out this path (relative to MODEL; repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify(model_dir: pathlib.Path, signature: pathlib.Path | None, ignore_paths: tuple[str, ...], as_json: bool,
           **options) -> int:
    """Verify a model (a directory, or a single file) against its signature."""
    from guard.signing.verify import verify_model

    verifier = lazy_verifier(**pop_verifier_options(options))  # built while the files hash (see verify_model)
    result = verify_model(model_dir, signature=signature, verifier=verifier, ignore_paths=ignore_paths)
    if as_json:
        from guard.cli._output import emit_json

        emit_json(result.to_json())
    else:
        click.echo(f"verified {model_dir}: {len(result.files)} files, {result.total_bytes} bytes, "
                   f"{result.hash_type}/{result.serialization}, root sha256:{result.root_digest}; signed by "
                   f"{result.signer}" + (" (legacy v0.2 predicate)" if result.legacy_predicate else ""))
    return 0
