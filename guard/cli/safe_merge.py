"""`guard safe-merge CONFIG --out OUT`: merge only what every policy check lets through, and sign the result.

Exit 0 merged (OUT holds the model, its provenance and its OMS signature), 1 refused by the policy
(nothing at OUT; the message names the check, input, file, number and threshold), 2 bad input.
"""

from __future__ import annotations

import pathlib

import click

from guard.cli._signing_options import pop_signer_options, signer_from_options, signer_options, wants_signing
from guard.cli._verifier_options import pop_verifier_options, verifier_options

_FILE = click.Path(dir_okay=False, path_type=pathlib.Path)


@click.command("safe-merge")
@click.argument("config", type=_FILE)
@click.option("--out", "out_dir", type=click.Path(path_type=pathlib.Path), required=True,
              help="Where to write the merged model (must not exist).")
@click.option("--policy", default=None, help="Policy file, or a shipped policy's name (strict, research). "
                                              "Default: the config's guard.policy, else strict.")
@verifier_options(prefix="")  # trust inputs signed this way, besides the policy's trusted signers
@signer_options(key_flag="--sign-key", beside_verifier=True)
@click.option("--unsigned", is_flag=True, help="Write the merged model without a signature or provenance.")
@click.option("--json", "as_json", is_flag=True, help="Print the decision record as JSON.")
def safe_merge(config: pathlib.Path, out_dir: pathlib.Path, policy: str | None, unsigned: bool, as_json: bool,
               **options) -> int:
    """Check every input of a mergekit-style CONFIG against the policy, merge, and sign the result."""
    from guard.errors import InputError, PolicyRefusal

    signer_args = pop_signer_options(options)
    trust_args = pop_verifier_options(options)
    if unsigned and wants_signing(signer_args):
        raise InputError("--unsigned contradicts the signing options", rule="sign-method")
    if not unsigned and not wants_signing(signer_args):
        raise InputError("no signing method for the merged model: pass --sign-key (or --certificate, --sigstore), "
                         "or --unsigned", rule="sign-method")
    signer = None if unsigned else signer_from_options(**signer_args)
    from guard.pipeline.safe_merge import safe_merge as run

    show = None if as_json else _Live()
    try:
        record = run(config, out_dir, policy=policy, verifier_options=trust_args, signer=signer,
                     progress=None if show is None else show.progress, on_check=None if show is None else show.check)
    finally:
        if show is not None:
            show.close()
    if as_json:
        from guard.cli._output import emit_json

        emit_json(record.to_json())
    else:
        _summary(record)
    refusals = record.refusals()
    if refusals:
        first = refusals[0]
        raise PolicyRefusal(f"refused by policy {record.policy.get('name')}: {first.one_line()}",
                            rule=first.rule or first.check)
    return 0


class _Live:
    """Checks as they happen, then a progress bar for the merge (stdout: stderr carries only the error line)."""

    MARKS = {"pass": "[green]pass[/]", "warn": "[yellow]warn[/]", "refuse": "[red]REFUSE[/]", "skip": "[dim]skip[/]"}

    def __init__(self) -> None:
        from guard.cli._output import console

        self.console = console()
        self._bar = None
        self._task = None

    def check(self, check) -> None:
        from rich.markup import escape

        where = f" {check.input}" if check.input else ""
        self.console.print(f"{self.MARKS[check.verdict]:>16} {check.check}{escape(where)}: {escape(check.message)}")

    def progress(self, done: int, total: int, name: str) -> None:
        if self._bar is None:
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("merging"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                                 console=self.console, transient=True)
            self._bar.start()
            self._task = self._bar.add_task("merge", total=total)
        self._bar.update(self._task, completed=done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _summary(record) -> None:
    counts: dict[str, int] = {}
    for check in record.checks:
        counts[check.verdict] = counts.get(check.verdict, 0) + 1
    tally = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
    click.echo(f"policy {record.policy.get('name')} (sha256:{record.policy.get('digest', {}).get('sha256', '')[:16]}...): "
               f"{len(record.checks)} checks ({tally})")
    for item in record.inputs:
        signer = item.get("signer") or "unsigned"
        click.echo(f"  {item['role']:5} {item['label']}: {item['verdict']}; {signer}"
                   + (f"; {item['root_digest']}" if item.get("root_digest") else ""))
    if record.merge:
        m = record.merge
        click.echo(f"merged: {m['method']} on {m['device']}, {m['merged_tensors']}/{m['tensors']} tensors, "
                   f"{m['input_bytes']:,} bytes in, {m['output_bytes']:,} out, {m['seconds']:.2f} s")
    if record.output:
        o = record.output
        click.echo(f"output: {o['path']}" + (f" (signed by {o['signer']}; provenance {o['provenance']})"
                                             if o.get("signer") else " (unsigned, no provenance)"))
    click.echo(f"verdict: {record.verdict}")
