"""`guard demo`: the end-to-end demo on tiny generated models (see guard/pipeline/demo.py)."""

from __future__ import annotations

import pathlib
import tempfile

import click


@click.command("demo")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=pathlib.Path), default=None,
              help="Where to keep the demo's models and keys (default: a temporary directory, removed afterwards).")
@click.option("--json", "as_json", is_flag=True, help="Print the steps as JSON.")
def demo(workdir: pathlib.Path | None, as_json: bool) -> int:
    """Protect, sign, verify, tamper-check, detect, merge and unlock tiny models, end to end."""
    from guard.pipeline.demo import run_demo

    def show(step) -> None:
        if not as_json:
            mark = "ok " if step.ok else "FAIL"
            click.echo(f"[{mark}] {step.name:9s} {step.detail}")

    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="guard-demo-") as tmp:
            steps = run_demo(pathlib.Path(tmp) / "demo", on_step=show)
    else:
        steps = run_demo(workdir, on_step=show)
    failed = [s.name for s in steps if not s.ok]
    if as_json:
        from guard.cli._output import emit_json

        emit_json({"ok": not failed, "steps": [s.__dict__ for s in steps]})
    elif not failed:
        click.echo("demo complete: every step behaved as expected")
    else:
        click.echo(f"demo: steps that did not behave as expected: {', '.join(failed)}", err=True)
    return 0 if not failed else 1
