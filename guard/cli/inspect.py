"""`guard inspect MODEL_DIR [--json]`: what a model directory holds, and whether the default policy refuses it.

Exit 0 clean, 1 findings the policy refuses (pickles, unknown binaries, remote code...), 2 unreadable or
malformed input (one line naming the file and the broken rule).
"""

from __future__ import annotations

import click


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
def inspect_cmd(model_dir: str, as_json: bool, scan_values: bool, allow_symlinks: bool, max_header_mib: int,
                ignore: tuple[str, ...], base_dir: str | None) -> int:
    """Report architecture, parameter count, dtypes, shards, files by detected type, and findings."""
    from guard.artifacts import ReadPolicy
    from guard.artifacts.report import render_text
    from guard.pipeline.inspect import inspect_model

    policy = ReadPolicy(max_header_bytes=max_header_mib << 20, scan_nan_inf=scan_values,
                        allow_symlinks=allow_symlinks, ignore_paths=ignore)
    report = inspect_model(model_dir, policy=policy, base=base_dir)
    if as_json:
        from guard.cli._output import emit_json

        emit_json(report)
    else:
        click.echo(render_text(report))
        lock = report["mergelock"]
        if not lock["checked"]:
            click.echo(f"mergelock:    not checked: {lock['reason']}")
        else:
            click.echo(f"mergelock:    {'FLAGGED (see findings)' if lock['flagged'] else lock['message']}")
    return 1 if report["refused"] else 0
