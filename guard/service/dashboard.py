"""The dashboard: server-rendered HTML (Jinja2, autoescaped), plots as inline SVG; no script, no CDN."""

from __future__ import annotations

import datetime
import json
import math
import pathlib

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse
from markupsafe import Markup, escape

from guard.service.store import JobStore

TEMPLATES = pathlib.Path(__file__).with_name("templates")
COLORS = ("#2563eb", "#dc2626", "#059669", "#d97706")


def _environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["when"] = lambda t: "" if t is None else datetime.datetime.fromtimestamp(
        t, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    env.filters["pretty"] = lambda obj: json.dumps(obj, indent=2, sort_keys=True, default=str)
    env.globals["svg_plot"] = svg_plot
    return env


def svg_plot(plot: dict, *, width: int = 640, height: int = 220) -> Markup:
    """A line chart of `plot["series"]` (name -> values per label), with an optional dashed threshold."""
    labels = list(plot.get("labels") or [])
    series = {k: [v for v in vals] for k, vals in (plot.get("series") or {}).items()}
    values = [v for vals in series.values() for v in vals if isinstance(v, (int, float)) and math.isfinite(v)]
    threshold = plot.get("threshold")
    if isinstance(threshold, (int, float)) and math.isfinite(threshold):
        values.append(threshold)
    else:
        threshold = None
    if not labels or not values:
        return Markup('<p class="muted">no data</p>')
    left, right, top, bottom = 56, 12, 12, 40
    lo, hi = min(0.0, min(values)), max(values)
    hi = hi if hi > lo else lo + 1.0
    n = len(labels)

    def x(i: int) -> float:
        return left + (i + 0.5) * (width - left - right) / n

    def y(v: float) -> float:
        return top + (hi - v) * (height - top - bottom) / (hi - lo)

    parts = [f'<svg class="plot" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(plot.get("title", ""))}</title>',
             f'<line x1="{left}" y1="{y(lo):.1f}" x2="{width - right}" y2="{y(lo):.1f}" stroke="#999"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{y(lo):.1f}" stroke="#999"/>']
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        parts.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end" class="tick">{v:.3g}</text>')
    step = max(1, n // 12)
    for i, label in enumerate(labels):
        if i % step == 0:
            short = str(label).rsplit(".", 1)[-1]
            parts.append(f'<text x="{x(i):.1f}" y="{height - bottom + 16}" text-anchor="middle" class="tick">'
                         f'{escape(short)}</text>')
    if threshold is not None:
        parts.append(f'<line x1="{left}" y1="{y(threshold):.1f}" x2="{width - right}" y2="{y(threshold):.1f}" '
                     f'stroke="#555" stroke-dasharray="5,4"/><text x="{width - right}" y="{y(threshold) - 4:.1f}" '
                     f'text-anchor="end" class="tick">threshold {threshold:.3g}</text>')
    for (name, vals), color in zip(series.items(), COLORS * 4):
        points = [(x(i), y(v)) for i, v in enumerate(vals) if isinstance(v, (int, float)) and math.isfinite(v)]
        if len(points) > 1:
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="'
                         + " ".join(f"{px:.1f},{py:.1f}" for px, py in points) + '"/>')
        parts += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{color}"/>' for px, py in points]
    for j, (name, color) in enumerate(zip(series, COLORS * 4)):
        lx = left + 10 + j * 120
        parts.append(f'<rect x="{lx}" y="{height - 14}" width="10" height="10" fill="{color}"/>'
                     f'<text x="{lx + 14}" y="{height - 5}" class="tick">{escape(name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def add_dashboard(app: FastAPI, store: JobStore) -> None:
    env = _environment()

    @app.get("/", response_class=HTMLResponse)
    def index(limit: int = 100, offset: int = 0):
        limit = max(1, min(limit, 1000))
        return env.get_template("index.html").render(jobs=store.jobs(limit=limit, offset=max(0, offset)),
                                                     counts=store.counts(), deliveries=store.deliveries(limit=20))

    @app.get("/audits/{job_id}", response_class=HTMLResponse)
    def audit_page(job_id: int):
        job = store.job(job_id)
        if job is None:
            raise HTTPException(404, "no such audit")
        result = json.loads(job.result) if job.result else None
        return env.get_template("audit.html").render(job=job, result=result)
