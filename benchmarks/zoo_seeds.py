"""Run a zoo benchmark (benchmarks/zoo_lm.py, benchmarks/zoo_vision.py) over seeds and numeric paths,
and tabulate every property's mean and worst case.

Each (seed, numeric path) runs in a process of its own: ATen reads `ATEN_CPU_CAPABILITY` once, when
it starts, so a numeric path belongs to a process. `native` is the machine's own kernel set (AVX-512,
AVX2, ...), `default` is ATen's portable one, as a CPU without those extensions would run. The zoo's
cache keys hold the numeric path (guard.testing.zoo.cache), so the two never share an entry.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

NUMERIC_PATHS: dict[str, str | None] = {"native": None, "default": "default"}  # name -> ATEN_CPU_CAPABILITY


@dataclasses.dataclass(frozen=True)
class Property:
    """One row of the multi-seed table: a figure of each run, the bar the tests hold it to, and which
    end is the worst case."""

    label: str
    value: Callable[[dict], float]
    bar: str
    worst: str = "min"  # "min": lower is worse; "max": higher is worse
    percent: bool = True


def stage_timer() -> tuple[dict[str, dict[str, float]], Callable]:
    """`timings, timed = stage_timer()`; `timed(name, fn)` runs fn and records its wall and CPU seconds
    (this process) under `name` in `timings`: the build times the zoo benchmarks report."""
    timings: dict[str, dict[str, float]] = {}

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def timed(name: str, fn: Callable):
        wall, start = time.perf_counter(), cpu()
        out = fn()
        timings[name] = {"wall": time.perf_counter() - wall, "cpu": cpu() - start}
        return out

    return timings, timed


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_grid(module: str, *, profile: str, seeds: Sequence[int], paths: Sequence[str], root: pathlib.Path | None,
             args: Sequence[str] = (), log: Callable[[str], None] = print) -> list[dict]:
    """Run `python -m module --profile P --seed S --json F [--root R] *args` for every seed and numeric
    path, one process at a time; returns each run's JSON with `numeric_path` and `process` (wall and
    CPU seconds of the whole process, builds included) added."""
    unknown = [p for p in paths if p not in NUMERIC_PATHS]
    if unknown:
        raise ValueError(f"unknown numeric path(s) {unknown}; known: {', '.join(NUMERIC_PATHS)}")
    results = []
    for seed in seeds:
        for path in paths:
            env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
            if NUMERIC_PATHS[path] is not None:
                env["ATEN_CPU_CAPABILITY"] = NUMERIC_PATHS[path]
            with tempfile.TemporaryDirectory(prefix="zoo-seeds-") as tmp:
                out = pathlib.Path(tmp) / "result.json"
                command = [sys.executable, "-m", module, "--profile", profile, "--seed", str(seed), "--json", str(out),
                           *(["--root", str(root)] if root is not None else []), *args]
                cpu, wall = _child_cpu(), time.perf_counter()
                subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
                result = json.loads(out.read_text())
            result["numeric_path"] = path
            result["process"] = {"wall": time.perf_counter() - wall, "cpu": _child_cpu() - cpu}
            log(f"{module} {profile} seed {seed} {path}: {result['process']['wall']:.0f} s wall, "
                f"{result['process']['cpu']:.0f} s CPU")
            results.append(result)
    return results


def _fmt(value: float, percent: bool) -> str:
    return f"{100 * value:.1f}" if percent else f"{value:.1f}"


def table(results: Sequence[dict], properties: Sequence[Property]) -> str:
    """Markdown: one row per property with its bar, mean, worst case and every run's value."""
    runs = [f"s{r['seed']} {r['numeric_path']}" for r in results]
    lines = ["| property | bar | mean | worst | " + " | ".join(runs) + " |", "|---|---|---|---|" + "---|" * len(runs)]
    for prop in properties:
        values = [prop.value(r) for r in results]
        worst = min(values) if prop.worst == "min" else max(values)
        cells = [_fmt(sum(values) / len(values), prop.percent), f"**{_fmt(worst, prop.percent)}**",
                 *(_fmt(v, prop.percent) for v in values)]
        lines.append(f"| {prop.label} | {prop.bar} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def describe(results: Sequence[dict]) -> str:
    """One line naming the grid: seeds, numeric paths and the machine."""
    seeds = sorted({r["seed"] for r in results})
    paths = list(dict.fromkeys(r["numeric_path"] for r in results))
    return (f"Seeds {', '.join(map(str, seeds))} x numeric paths {', '.join(paths)} "
            f"({len(results)} runs; `default` = `ATEN_CPU_CAPABILITY=default`); {results[0].get('machine', '')}.")


def write_grid(results: Sequence[dict], properties: Sequence[Property], *, out: pathlib.Path | None,
               json_out: pathlib.Path | None, extra: str = "") -> str:
    """The grid's markdown (`extra` appended), written to `out` and the runs' JSON to `json_out`."""
    from guard.artifacts.atomic import write_atomically

    text = describe(results) + "\n\n" + table(results, properties) + (f"\n{extra}" if extra else "")
    if out is not None:
        write_atomically(out, text)
    if json_out is not None:
        write_atomically(json_out, json.dumps(list(results), indent=1, default=str))
    return text


def parse_seeds(raw: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in raw.split(",") if s.strip())
    except ValueError:
        raise ValueError(f"--seeds {raw!r}: a comma-separated list of integers") from None
    if not seeds or min(seeds) < 0:
        raise ValueError(f"--seeds {raw!r}: at least one non-negative seed")
    return seeds
