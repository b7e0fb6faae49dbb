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
def inspect_cmd(model_dir: str, as_json: bool, scan_values: bool, allow_symlinks: bool, max_header_mib: int,
                ignore: tuple[str, ...]) -> int:
    """Report architecture, parameter count, dtypes, shards, files by detected type, and findings."""
    from guard.artifacts import ReadPolicy, open_model_dir
    from guard.artifacts.report import inspect_report, render_text

    policy = ReadPolicy(max_header_bytes=max_header_mib << 20, scan_nan_inf=scan_values,
                        allow_symlinks=allow_symlinks, ignore_paths=ignore)
    report = inspect_report(open_model_dir(model_dir, policy=policy))
    if as_json:
        from guard.cli._output import emit_json

        emit_json(report)
    else:
        click.echo(render_text(report))
    return 1 if report["refused"] else 0
