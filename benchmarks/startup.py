"""Start-up time of `guard --help` against the interpreter floor (`python -c pass`), measured in the same run.

Runs the two commands alternately N times each (so drift affects both), reports the medians in seconds,
guard's overhead over the floor, and the ratio. Goal: `guard --help` at most 0.3 s. Also reports whether
`guard --help` imported torch (it must not: subcommands are imported lazily).

    python -m benchmarks.startup [--runs N] [--small] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
GOAL_SECONDS = 0.3

COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "guard --help": [sys.executable, "-m", "guard", "--help"],
    "guard inspect --help": [sys.executable, "-m", "guard", "inspect", "--help"],
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _time_once(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
    return time.perf_counter() - start


def imports_torch(env: dict[str, str]) -> bool:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "guard", "--help"], capture_output=True, text=True,
                          env=env, check=True)
    return any(line.rstrip().endswith("| torch") for line in proc.stderr.splitlines())


def measure(*, runs: int) -> dict:
    env = _env()
    for cmd in COMMANDS.values():  # warm the page cache and .pyc files once, untimed
        _time_once(cmd, env)
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(runs):
        for name, cmd in COMMANDS.items():
            samples[name].append(_time_once(cmd, env))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    floor = medians["python -c pass"]
    guard = medians["guard --help"]
    return {
        "runs": runs,
        "median_seconds": medians,
        "guard_help_seconds": guard,
        "floor_seconds": floor,
        "overhead_seconds": guard - floor,
        "ratio_to_floor": guard / floor,
        "goal_seconds": GOAL_SECONDS,
        "meets_goal": guard <= GOAL_SECONDS,
        "imports_torch": imports_torch(env),
        "python": sys.version.split()[0],
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
    }


def render(result: dict) -> str:
    lines = [f"start-up on {result['machine']}, median of {result['runs']} runs each (same run, interleaved):"]
    lines += [f"  {name:<22} {sec:.3f} s" for name, sec in result["median_seconds"].items()]
    lines.append(f"  guard --help is {result['ratio_to_floor']:.1f}x the interpreter floor "
                 f"(+{result['overhead_seconds']:.3f} s); goal <= {result['goal_seconds']} s: "
                 f"{'met' if result['meets_goal'] else 'NOT met'}; imports torch: {result['imports_torch']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--small", action="store_true", help="3 runs: a smoke test, not a figure")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = measure(runs=3 if args.small else args.runs)
    print(json.dumps(result, indent=2) if args.json else render(result))


if __name__ == "__main__":
    main()
