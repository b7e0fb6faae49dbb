"""A scan report as one self-contained HTML page: the decision, a score/threshold chart of every probe, and
per probe its evidence table and plots (per tensor, layer, block, class or token), all inline SVG, no
script and no external resource. Every string from the report is HTML-escaped (tensor names and token
texts come from the scanned model)."""

from __future__ import annotations

import html
import math

from guard.probes.framework import ProbeResult, Series

WIDTH, BAR_AREA, ROW = 760, 300, 16
_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:60em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:2px 6px;font-size:.85em;text-align:left}
.flag{color:#b00;font-weight:bold}.ok{color:#070;font-weight:bold}.skip{color:#777}
svg text{font-size:11px;font-family:monospace}
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _finite(values) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def bar_chart(labels: list[str], values: list[float], *, reference: list[float] | None = None,
              threshold: float | None = None, reference_label: str = "", max_rows: int = 60) -> str:
    """Horizontal bars (one row per label), an optional reference tick per row and a threshold line."""
    rows = list(zip(labels, values, reference or [None] * len(values)))
    if len(rows) > max_rows:  # keep the rows that matter most: largest values
        rows = sorted(rows, key=lambda r: -(r[1] if r[1] is not None and math.isfinite(r[1]) else -math.inf))[:max_rows]
    numbers = _finite([v for _, v, _ in rows] + [r for _, _, r in rows] + ([threshold] if threshold is not None else []))
    if not numbers:
        return "<p class='skip'>no finite values to plot</p>"
    low, high = min(0.0, *numbers), max(0.0, *numbers)
    span = (high - low) or 1.0
    left = WIDTH - BAR_AREA - 10

    def x(v: float) -> float:
        return left + (v - low) / span * BAR_AREA

    height = ROW * len(rows) + 24
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height}' role='img'>"]
    parts.append(f"<line x1='{x(0):.1f}' y1='0' x2='{x(0):.1f}' y2='{height - 20}' stroke='#999'/>")
    for i, (label, value, ref) in enumerate(rows):
        y = i * ROW + 2
        short = label if len(label) <= 60 else "..." + label[-57:]
        parts.append(f"<text x='{left - 4}' y='{y + 11}' text-anchor='end'>{_e(short)}</text>")
        if value is not None and math.isfinite(value):
            x0, x1 = sorted((x(0), x(value)))
            over = threshold is not None and value >= threshold
            parts.append(f"<rect x='{x0:.1f}' y='{y}' width='{max(x1 - x0, 0.5):.1f}' height='{ROW - 4}' "
                         f"fill='{'#c33' if over else '#48a'}'><title>{_e(label)}: {value:.4g}</title></rect>")
        if ref is not None and math.isfinite(ref):
            parts.append(f"<line x1='{x(ref):.1f}' y1='{y - 1}' x2='{x(ref):.1f}' y2='{y + ROW - 3}' stroke='#000' "
                         f"stroke-width='2'><title>{_e(reference_label)}: {ref:.4g}</title></line>")
    if threshold is not None and math.isfinite(threshold):
        parts.append(f"<line x1='{x(threshold):.1f}' y1='0' x2='{x(threshold):.1f}' y2='{height - 20}' stroke='#c33' "
                     f"stroke-dasharray='4 3'/><text x='{x(threshold):.1f}' y='{height - 6}' text-anchor='middle' "
                     f"fill='#c33'>threshold {threshold:.3g}</text>")
    parts.append(f"<text x='{left}' y='{height - 6}'>{low:.3g}</text>"
                 f"<text x='{left + BAR_AREA}' y='{height - 6}' text-anchor='end'>{high:.3g}</text></svg>")
    return "".join(parts)


def _series(series: Series) -> str:
    legend = f" <small>(black ticks: {_e(series.reference_label)})</small>" if series.reference else ""
    return (f"<h4>{_e(series.title)}{legend}</h4>" +
            bar_chart(series.labels, series.values, reference=series.reference, threshold=series.threshold,
                      reference_label=series.reference_label))


def _probe(result: ProbeResult) -> str:
    state = ("<span class='flag'>FLAGGED</span>" if result.flagged else "<span class='ok'>clean</span>") \
        if result.status == "ran" else "<span class='skip'>skipped</span>"
    head = (f"<h2 id='{_e(result.probe)}'>{_e(result.title)}: {state}</h2><p>{_e(result.message)}</p>")
    if result.status != "ran":
        return head
    facts = (f"<p>score {result.score:.4g}, threshold {result.threshold:.4g}, {result.seconds:.2f} s on "
             f"{_e(result.device)}{', stopped by its time budget' if result.truncated else ''}</p>")
    rows = "".join(f"<tr><td>{_e(e.kind)}</td><td>{_e(e.where)}</td><td>{e.value:.4g}</td><td>{_e(e.detail)}</td></tr>"
                   for e in result.evidence)
    table = f"<table><tr><th>kind</th><th>where</th><th>value</th><th>detail</th></tr>{rows}</table>" if rows else ""
    return head + facts + table + "".join(_series(s) for s in result.series)


def to_html(report) -> str:
    """The whole page for a guard.probes.scan.ScanReport."""
    decision = report.decision
    verdict = "<p class='flag'>FLAGGED</p>" if decision.flagged else "<p class='ok'>no probe flagged this model</p>"
    reasons = "".join(f"<li>{_e(r)}</li>" for r in decision.reasons)
    ran = [r for r in report.results if r.status == "ran"]
    summary = bar_chart([r.probe for r in ran], [r.ratio for r in ran], threshold=1.0)
    inputs = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in report.inputs.items())
    skipped = "".join(f"<li>{_e(r.probe)}: {_e(r.message)}</li>" for r in report.results if r.status != "ran")
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>guard scan report</title>"
            f"<style>{_CSS}</style></head><body><h1>guard scan: {_e(report.inputs.get('model', ''))}</h1>"
            f"{verdict}<ul>{reasons}</ul><table>{inputs}</table>"
            "<h2>Score / threshold per probe (1 = the threshold)</h2>" + summary +
            (f"<h3>Skipped</h3><ul>{skipped}</ul>" if skipped else "") +
            "".join(_probe(r) for r in report.results) +
            f"<p><small>{report.seconds:.2f} s in all.</small></p></body></html>\n")
