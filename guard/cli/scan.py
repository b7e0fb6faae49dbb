"""`guard scan MODEL --base BASE [--peers DIR]... [--calibration FILE] [--json | --sarif] [--report FILE]`.

Runs the ingestion probes (docs/probes.md) on one model. Exit 0 clean, 1 a probe flagged it (or the
artifacts policy refused a file), 2 unreadable or malformed input, 3 internal error.
"""

from __future__ import annotations

import click


@click.command("scan")
@click.argument("model_dir")
@click.option("--base", "base_dir", required=True, metavar="BASE_DIR", help="The public base model it was fine-tuned from.")
@click.option("--peers", "peers", multiple=True, metavar="DIR",
              help="Another fine-tune of the same base (repeatable): the reference for z-scores.")
@click.option("--calibration", default=None, metavar="FILE",
              help="Unlabeled inputs (safetensors: pixel_values, or input_ids + attention_mask) for data-driven probes.")
@click.option("--aligned", default=None, metavar="DIR", help="Trusted aligned model of a safety pair.")
@click.option("--unaligned", default=None, metavar="DIR", help="Trusted unaligned model of a safety pair.")
@click.option("--probe", "probes", multiple=True, metavar="NAME", help="Run only this probe (repeatable).")
@click.option("--settings", "settings_file", default=None, metavar="FILE",
              help="Probe settings (JSON, the `probes:` section of a policy); defaults otherwise.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
              help="Where data-driven probes run (default: the settings', auto).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--sarif", "as_sarif", is_flag=True, help="Print the report as SARIF 2.1.0.")
@click.option("--report", "report_path", default=None, metavar="FILE", help="Also write an HTML report with plots.")
def scan_cmd(model_dir: str, base_dir: str, peers: tuple[str, ...], calibration: str | None, aligned: str | None,
             unaligned: str | None, probes: tuple[str, ...], settings_file: str | None, device: str | None,
             as_json: bool, as_sarif: bool, report_path: str | None) -> int:
    """Probe a model for backdoors, safety stripping and re-parameterisation before it is merged."""
    from guard.cli._output import console, emit_json
    from guard.errors import InputError
    from guard.pipeline.scan import scan_model

    if as_json and as_sarif:
        raise InputError("--json and --sarif are exclusive", rule="scan-output")
    settings = _settings(settings_file, device)
    err = console(stderr=True)
    with err.status("scanning", spinner="dots") as status:
        report = scan_model(model_dir, base=base_dir, peers=peers, calibration=calibration, aligned=aligned,
                            unaligned=unaligned, settings=settings, probes=probes or None,
                            progress=lambda name: status.update(f"probe {name}"))
    if report_path is not None:
        _write_report(report_path, report)
    if as_json:
        emit_json(report.to_json())
    elif as_sarif:
        from guard.probes.sarif import to_sarif

        emit_json(to_sarif(report))
    else:
        _print(report)
    return 1 if report.decision.flagged else 0


def _settings(path: str | None, device: str | None):
    import json
    import pathlib

    import pydantic

    from guard.errors import InputError
    from guard.probes.settings import ProbeSettings

    data = {}
    if path is not None:
        try:
            data = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise InputError(f"cannot read probe settings: {exc}", path=path, rule="scan-settings") from None
    try:
        settings = ProbeSettings.model_validate(data)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"probe settings: {where}: {first['msg']}", path=path, rule="scan-settings") from None
    return settings if device is None else settings.model_copy(update={"device": device})


def _write_report(path: str, report) -> None:
    import pathlib

    from guard.errors import InputError
    from guard.probes.html import to_html
    from guard.artifacts.atomic import write_atomically

    target = pathlib.Path(path)
    if not target.parent.is_dir():
        raise InputError("the report's directory does not exist", path=target.parent, rule="scan-report")
    write_atomically(target, to_html(report))


def _print(report) -> None:
    decision = report.decision
    click.echo(f"model:   {report.inputs['model']} ({report.inputs['kind']}, {report.inputs['parameters']:,} parameters)")
    for r in report.results:
        if r.status == "ran":
            mark = "FLAG" if r.flagged else "ok  "
            click.echo(f"{mark} {r.probe:17s} {r.score:9.3g} / {r.threshold:<7.3g} {r.message}")
        else:
            click.echo(f"-    {r.probe:17s} {'':19s} {r.message}")
    click.echo(f"verdict: {'FLAGGED' if decision.flagged else 'clean'} ({len(decision.ran)} probes ran, "
               f"{len(decision.skipped)} skipped)")
