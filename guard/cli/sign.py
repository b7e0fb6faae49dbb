"""`guard sign MODEL_DIR`: write an OMS signature (Sigstore bundle v0.3 / DSSE / in-toto v1)."""

from __future__ import annotations

import pathlib

import click

from guard.cli._signing_options import pop_signer_options, signer_from_options, signer_options


@click.command("sign")
@click.argument("model_dir", metavar="MODEL", type=click.Path(path_type=pathlib.Path))
@click.option("--signature", type=click.Path(dir_okay=False, path_type=pathlib.Path), default=None,
              help="Where to write the signature (default: MODEL/model.sig for a directory, MODEL.sig beside a "
                   "single-file model; always excluded from hashing).")
@signer_options(key_flag="--key")
@click.option("--hash", "hash_algorithm", type=click.Choice(["sha256", "blake3"]), default="sha256", show_default=True,
              help="sha256 is what OMS verifiers expect; blake3 is faster.")
@click.option("--serialization", type=click.Choice(["files", "shards"]), default="files", show_default=True,
              help="files: one digest per file (the model_signing CLI can verify it); shards: byte ranges hashed "
                   "in parallel (only OMS's API verifies it).")
@click.option("--shard-size", type=click.IntRange(min=64 * 1024), default=None,
              help="Shard size in bytes for --serialization shards (default 256 MiB).")
@click.option("--ignore-path", "ignore_paths", multiple=True,
              help="A path relative to MODEL_DIR to leave out (repeatable; recorded in the signature).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def sign(model_dir: pathlib.Path, signature: pathlib.Path | None, hash_algorithm: str, serialization: str,
         shard_size: int | None, ignore_paths: tuple[str, ...], as_json: bool, **options) -> int:
    """Sign a model: a directory, or a single file (OMS names it "." in the manifest)."""
    from guard.signing import sign_model

    lazy_signer = signer_from_options(**pop_signer_options(options), lazy=True)
    written = sign_model(model_dir, signer=lazy_signer, signature_path=signature, hash_algorithm=hash_algorithm,
                         ignore_paths=ignore_paths, serialization=serialization, shard_size=shard_size)
    signer = lazy_signer.signer
    if as_json:
        from guard.cli._output import emit_json

        emit_json({"signed": True, "model_dir": str(model_dir), "signature": str(written), "method": signer.method,
                   "signer": signer.describe(), "hash_type": hash_algorithm, "serialization": serialization})
    else:
        click.echo(f"signed {model_dir} -> {written} ({signer.describe()}; {hash_algorithm}, {serialization})")
    return 0
