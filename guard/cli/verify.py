"""`guard verify MODEL --signature SIG`: exit 0 verified, 1 verification failed, 2 unreadable input.

Imports neither torch nor sigstore (sigstore only for --identity/--issuer).
"""

from __future__ import annotations

import pathlib

import click

from guard.cli._verifier_options import lazy_verifier, pop_verifier_options, verifier_options
from guard.errors import InputError


@click.command("verify")
@click.argument("model_dir", metavar="MODEL", type=click.Path(path_type=pathlib.Path))
@click.option("--signature", type=click.Path(dir_okay=False, path_type=pathlib.Path), default=None,
              help="The signature file (default: MODEL/model.sig, or MODEL.sig beside a single-file model).")
@verifier_options(prefix="")
@click.option("--ignore-path", "ignore_paths", multiple=True,
              help="Also leave out this path (relative to MODEL; repeatable).")
@click.option("--provenance", is_flag=True,
              help="Also check the merged model's signed provenance (guard safe-merge output) and re-verify the "
                   "inputs it names that are at hand.")
@click.option("--input", "input_paths", multiple=True, metavar="LABEL=PATH",
              help="With --provenance: where an input named LABEL in the provenance is now (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify(model_dir: pathlib.Path, signature: pathlib.Path | None, ignore_paths: tuple[str, ...], provenance: bool,
           input_paths: tuple[str, ...], as_json: bool, **options) -> int:
    """Verify a model (a directory, or a single file) against its signature."""
    from guard.signing.verify import verify_model

    verifier = lazy_verifier(**pop_verifier_options(options))  # built while the files hash (see verify_model)
    if provenance:
        return _verify_provenance(model_dir, verifier(), signature=signature, ignore_paths=ignore_paths,
                                  input_paths=input_paths, as_json=as_json)
    if input_paths:
        raise InputError("--input only applies with --provenance", rule="verify-provenance-options")
    result = verify_model(model_dir, signature=signature, verifier=verifier, ignore_paths=ignore_paths)
    if as_json:
        from guard.cli._output import emit_json

        emit_json(result.to_json())
    else:
        click.echo(f"verified {model_dir}: {len(result.files)} files, {result.total_bytes} bytes, "
                   f"{result.hash_type}/{result.serialization}, root sha256:{result.root_digest}; signed by "
                   f"{result.signer}" + (" (legacy v0.2 predicate)" if result.legacy_predicate else ""))
    return 0


def _verify_provenance(model_dir: pathlib.Path, verifier, *, signature, ignore_paths, input_paths, as_json) -> int:
    from guard.pipeline.provenance import verify_provenance

    if signature is not None or ignore_paths:
        raise InputError("--provenance reads MODEL/model.sig over every file; drop --signature/--ignore-path",
                         rule="verify-provenance-options")
    mapping = {}
    for item in input_paths:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            raise InputError(f"--input {item!r}: expected LABEL=PATH", rule="verify-provenance-options")
        mapping[label] = path
    report = verify_provenance(model_dir, verifier=verifier, input_paths=mapping)
    if as_json:
        from guard.cli._output import emit_json

        emit_json(report)
        return 0
    click.echo(f"verified {model_dir}: {report['files']} files signed by {report['signer']}; provenance: "
               f"{report['merge_method']} under policy {report['policy']['name']} "
               f"(sha256:{report['policy']['digest']['sha256'][:16]}...), {report['checks']} checks recorded")
    for item in report["inputs"]:
        state = "re-verified" if item["reverified"] else f"not re-verified ({item['reason']})"
        click.echo(f"  {item['role']:5} {item['name']}: {item['root_digest'] or 'unsigned'}, {item['signer']}; {state}")
    return 0
