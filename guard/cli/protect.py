"""`guard protect MODEL --out OUT --lock-key K --sign-key S`: MergeLock a model and sign the result.

The output is written atomically: staged next to OUT, self-checked (original and protected model run
on a probe batch; refused if the logit error exceeds the dtype's bound), signed, then renamed into place.
"""

from __future__ import annotations

import pathlib

import click

from guard.cli._memory import use_huge_pages
from guard.cli._signing_options import pop_signer_options, signer_from_options, signer_options

_FILE = click.Path(dir_okay=False, path_type=pathlib.Path)


@click.command("protect")
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=pathlib.Path))
@click.option("--out", "out_dir", type=click.Path(path_type=pathlib.Path), required=True,
              help="Where to write the protected model (must not exist).")
@click.option("--lock-key", type=_FILE, default=None, help="Existing lock key file (from `guard lock-keygen`).")
@click.option("--new-lock-key", type=_FILE, default=None,
              help="Create a new lock key at this path (mode 0600, never overwritten) and use it.")
@click.option("--bound", type=click.FloatRange(min=1.0, max=64.0, min_open=True), default=None,
              help="Singular values of every transform lie in [1/bound, bound] (condition number <= bound^2). "
                   "Larger breaks merges harder and costs low-precision accuracy. Default: 8, or 4 for 16-bit "
                   "(bf16/fp16) weights.")
@click.option("--no-mlp-permute", "no_mlp_permute", is_flag=True,
              help="Leave the MLPs alone (attention transforms only). By default the hidden units of every MLP are "
                   "also permuted with a key-derived permutation (exact; see docs/threat-model.md for what it adds).")
@click.option("--residual", type=click.Choice(["permutation", "rotation", "none"]), default="permutation",
              show_default=True,
              help="Transform the residual stream too: a secret signed permutation (a plain one for LayerNorm "
                   "models; exact, costs an index copy), a secret rotation (a dense matmul per weight; a "
                   "permutation where a rotation is not exact: tied embeddings, post-norm), or nothing.")
@click.option("--unsigned", is_flag=True, help="Write the protected model without signing it.")
@signer_options(key_flag="--sign-key")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def protect(model_dir: pathlib.Path, out_dir: pathlib.Path, lock_key: pathlib.Path | None,
            new_lock_key: pathlib.Path | None, bound: float | None, no_mlp_permute: bool, residual: str, unsigned: bool,
            as_json: bool,
            **options) -> int:
    """Apply MergeLock to MODEL_DIR: same function, unmergeable weights; then sign the result."""
    from guard.errors import InputError
    from guard.lock.keys import generate_lock_key, read_lock_key, write_lock_key

    signer_args = pop_signer_options(options)
    if (lock_key is None) == (new_lock_key is None):
        raise InputError("pass exactly one of --lock-key or --new-lock-key", rule="lock-key-option")
    wants_signature = signer_args.get("sign_key") is not None or signer_args.get("sigstore")
    if unsigned and wants_signature:
        raise InputError("--unsigned contradicts the signing options", rule="sign-method")
    if not unsigned and not wants_signature:
        raise InputError("no signing method: pass --sign-key (or --sigstore), or --unsigned to skip signing",
                         rule="sign-method")
    signer = None if unsigned else signer_from_options(**signer_args)
    if new_lock_key is not None:
        key = generate_lock_key()
        write_lock_key(key, new_lock_key)
    else:
        key = read_lock_key(lock_key)
    use_huge_pages()
    from guard.lock.protect import protect_model  # torch and transformers load only past the option checks

    result = protect_model(model_dir, out_dir, key=key, bound=bound, signer=signer,
                           mlp_permute=not no_mlp_permute, residual=residual)
    summary = {"protected": True, "out_dir": str(result.out_dir),
               "signature": None if result.signature is None else str(result.signature), **result.metadata,
               "seconds": result.seconds}
    if as_json:
        from guard.cli._output import emit_json

        emit_json(summary)
    else:
        check = result.selfcheck
        click.echo(f"protected {model_dir} -> {result.out_dir} (this run's lock key id {summary['key_id']})")
        click.echo(f"  {summary['blocks']} attention blocks, layout {summary['layout']}: QK {summary['qk']}; "
                   f"VO {summary['vo']}")
        click.echo(f"  MLP: {summary['mlp']}")
        click.echo(f"  residual stream: {summary['residual']}")
        click.echo(f"  self-check: max relative logit error {check.max_relative_error:.3g} "
                   f"(bound {check.bound:g}, {check.dtype})")
        click.echo(f"  signature: {summary['signature'] or 'none (--unsigned)'}")
    return 0
