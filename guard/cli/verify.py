"""`guard verify MODEL_DIR --signature SIG`: exit 0 verified, 1 verification failed, 2 unreadable input.

Imports neither torch nor sigstore (sigstore only for --identity/--issuer).
"""

from __future__ import annotations

import pathlib

import click

_FILE = click.Path(dir_okay=False, path_type=pathlib.Path)


@click.command("verify")
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=pathlib.Path))
@click.option("--signature", type=_FILE, default=None, help="The signature file (default: MODEL_DIR/model.sig).")
@click.option("--key", "public_key", type=_FILE, default=None, help="EC public key (PEM): key method.")
@click.option("--certificate-chain", "certificate_chain", type=_FILE, multiple=True,
              help="Trust anchor(s) (PEM root CA; repeatable): certificate method.")
@click.option("--certificate-time", type=click.Choice(["now", "signing"]), default="now", show_default=True,
              help="Check the certificate path now, or (like OMS) at the leaf's notBefore.")
@click.option("--identity", default=None, help="Expected signer identity (certificate SAN): keyless method.")
@click.option("--issuer", default=None, help="Expected OIDC issuer URL: keyless method.")
@click.option("--trust-config", "trust_config", type=_FILE, default=None,
              help="Sigstore ClientTrustConfig JSON; makes keyless verification offline.")
@click.option("--staging", is_flag=True, help="Sigstore staging trust root (network).")
@click.option("--ignore-path", "ignore_paths", multiple=True,
              help="Also leave out this path (relative to MODEL_DIR; repeatable).")
@click.option("--provenance", is_flag=True,
              help="Also check the merged model's signed provenance (guard safe-merge output) and re-verify the "
                   "inputs it names that are at hand.")
@click.option("--input", "input_paths", multiple=True, metavar="LABEL=PATH",
              help="With --provenance: where an input named LABEL in the provenance is now (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify(model_dir: pathlib.Path, signature: pathlib.Path | None, public_key: pathlib.Path | None,
           certificate_chain: tuple[pathlib.Path, ...], certificate_time: str, identity: str | None,
           issuer: str | None, trust_config: pathlib.Path | None, staging: bool, ignore_paths: tuple[str, ...],
           provenance: bool, input_paths: tuple[str, ...], as_json: bool) -> int:
    """Verify a model directory against its signature."""
    from guard.signing.verify import check_verifier_options, load_verifier, verify_model

    check_verifier_options(public_key=public_key, certificate_chain=certificate_chain, identity=identity,
                           issuer=issuer, trust_config=trust_config, staging=staging)

    def verifier():  # built while the files hash (see verify_model)
        return load_verifier(public_key=public_key, certificate_chain=certificate_chain, identity=identity,
                             issuer=issuer, trust_config=trust_config, staging=staging,
                             certificate_time=certificate_time)

    if provenance:
        return _verify_provenance(model_dir, verifier(), signature=signature, ignore_paths=ignore_paths,
                                  input_paths=input_paths, as_json=as_json)
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
    from guard.errors import InputError
    from guard.pipeline.provenance import verify_provenance

    if signature is not None or ignore_paths:
        raise InputError("--provenance reads MODEL_DIR/model.sig over every file; drop --signature/--ignore-path",
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
