"""`guard safety-vector distill SURROGATE --data HARMFUL --out OUT --sign-key K`: EnchTable stage 1.

Fine-tunes the chosen modules of the aligned SURROGATE on a harmful set (tokenised safetensors:
input_ids, labels with -100 where no loss, optional attention_mask), linearised per block by default
(`--linearise module`; `off` is the released code's effective plain fine-tune), and writes the safety
vector Delta = surrogate - harmful in model form, signed (docs/enchtable.md).
"""

from __future__ import annotations

import pathlib

import click

from guard.cli._signing_options import pop_signer_options, signer_from_options, signer_options


@click.group("safety-vector")
def safety_vector() -> None:
    """EnchTable safety vectors."""


@safety_vector.command("distill")
@click.argument("surrogate", type=click.Path(file_okay=False, path_type=pathlib.Path))
@click.option("--data", "data", type=click.Path(dir_okay=False, path_type=pathlib.Path), required=True,
              help="Harmful set: safetensors with input_ids, labels (-100 = no loss), optional attention_mask.")
@click.option("--out", "out_dir", type=click.Path(path_type=pathlib.Path), required=True,
              help="Where to write the safety vector (must not exist).")
@click.option("--modules", type=click.Choice(["attn", "ffn", "attn_ffn"]), default="attn", show_default=True)
@click.option("--linearise", type=click.Choice(["module", "off"]), default="module", show_default=True,
              help="module: each chosen block trains through its first-order Taylor model (jvp); off: plain fine-tune.")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), default=4.0, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-5, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--max-examples", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--unsigned", is_flag=True, help="Write the vector without signing it (safe-merge will refuse it).")
@signer_options(key_flag="--sign-key")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def distill_cmd(surrogate: pathlib.Path, data: pathlib.Path, out_dir: pathlib.Path, modules: str, linearise: str,
                epochs: float, lr: float, batch: int, max_examples: int, seed: int, unsigned: bool, as_json: bool,
                **options) -> int:
    """Distil a signed safety vector from the aligned SURROGATE model directory."""
    from guard.errors import InputError

    signer_args = pop_signer_options(options)
    wants_signature = signer_args.get("sign_key") is not None or signer_args.get("sigstore")
    if unsigned == bool(wants_signature):
        raise InputError("pass a signing method (--sign-key or --sigstore) or --unsigned, not both or neither",
                         rule="sign-method")
    signer = None if unsigned else signer_from_options(**signer_args)
    from guard.defenses.enchtable.distill import DistillSettings
    from guard.defenses.enchtable.stage1 import distill_safety_vector

    settings = DistillSettings(modules=modules, linearise=linearise, epochs=epochs, lr=lr, batch=batch,
                               max_examples=max_examples, seed=seed)
    from rich.progress import Progress

    with Progress(transient=True, disable=as_json) as bar:
        task = bar.add_task("distil", total=None)
        summary = distill_safety_vector(surrogate, data, out_dir, settings=settings, signer=signer,
                                        progress=lambda done, total, what: bar.update(task, completed=done, total=total))
    if as_json:
        from guard.cli._output import emit_json

        emit_json(summary)
    else:
        click.echo(f"safety vector {summary['out']}: {summary['tensors']} tensors, ||Delta|| {summary['norm']:.4g}, "
                   f"{summary['steps']} steps ({modules}, linearise {linearise}), final loss {summary['final_loss']:.4g}")
        click.echo(f"  signature: {summary['signature'] or 'none (--unsigned)'}")
    return 0
