"""`guard inspect MODEL_DIR [--json]`: what a model directory holds, and whether the default policy refuses it.

With a verification method (`--verify-key`, `--verify-certificate-chain`, `--verify-identity` and
`--verify-issuer`) the signature is checked first and everything reported, tensors included, is read
from the bytes that were hashed and matched (guard.signing.open_verified_model).
Exit 0 clean, 1 findings the policy refuses (pickles, unknown binaries, remote code...) or a failed
verification, 2 unreadable or malformed input (one line naming the file and the broken rule).
"""

from __future__ import annotations

import pathlib

import click

from guard.cli._verifier_options import lazy_verifier, pop_verifier_options, verifier_options, wants_verification


@click.command("inspect")
@click.argument("model_dir")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--scan-values", is_flag=True, help="Read every tensor and refuse NaN/Inf and non-0/1 BOOL bytes.")
@click.option("--allow-symlinks", is_flag=True, help="Follow symlinks to regular files inside the directory.")
@click.option("--max-header-mib", type=click.IntRange(min=1), default=16, show_default=True,
              help="Largest safetensors header accepted.")
@click.option("--ignore", "ignore", multiple=True, metavar="PATTERN", help="Skip files matching this pattern (repeatable).")
@click.option("--base", "base_dir", default=None, metavar="BASE_DIR",
              help="The public base model: detect MergeLock by attention far from it while MLP weights stay close.")
@click.option("--signature", type=click.Path(dir_okay=False, path_type=pathlib.Path), default=None,
              help="With --verify-*: the signature file (default: MODEL_DIR/model.sig).")
@verifier_options(prefix="verify-")
def inspect_cmd(model_dir: str, as_json: bool, scan_values: bool, allow_symlinks: bool, max_header_mib: int,
                ignore: tuple[str, ...], base_dir: str | None, signature: pathlib.Path | None, **options) -> int:
    """Report architecture, parameter count, dtypes, shards, files by detected type, and findings."""
    from guard.artifacts import ReadPolicy
    from guard.artifacts.report import render_text
    from guard.errors import InputError
    from guard.pipeline.inspect import inspect_model

    chosen = pop_verifier_options(options)
    verifier = lazy_verifier(**chosen)() if wants_verification(chosen) else None
    if verifier is None and signature is not None:
        raise InputError("--signature needs a verification method (--verify-key, --verify-certificate-chain, or "
                         "--verify-identity with --verify-issuer)", rule="verify-method")
    policy = ReadPolicy(max_header_bytes=max_header_mib << 20, scan_nan_inf=scan_values,
                        allow_symlinks=allow_symlinks, ignore_paths=ignore)
    report = inspect_model(model_dir, policy=policy, base=base_dir, verifier=verifier, signature=signature)
    if as_json:
        from guard.cli._output import emit_json

        emit_json(report)
    else:
        click.echo(render_text(report))
        if report.get("verification"):
            check = report["verification"]
            click.echo(f"verified:     signed by {check['signer']}, root {check['root_digest']} (read from the "
                       "verified bytes)")
        lock = report["mergelock"]
        if not lock["checked"]:
            click.echo(f"mergelock:    not checked: {lock['reason']}")
        else:
            click.echo(f"mergelock:    {'FLAGGED (see findings)' if lock['flagged'] else lock['message']}")
    return 1 if report["refused"] else 0
