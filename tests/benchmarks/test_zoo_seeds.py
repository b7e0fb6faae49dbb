"""benchmarks/zoo_seeds.py: every (seed, numeric path) runs in its own process under its kernel set, and
the table reports each property's mean and worst case. Run as a module, this file is a stand-in
benchmark that reports the seed and the kernel set its process ran with."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import pytest

from benchmarks.zoo_seeds import Property, parse_seeds, run_grid, table, write_grid


def test_each_run_gets_its_seed_and_numeric_path(tmp_path):
    results = run_grid("tests.benchmarks.test_zoo_seeds", profile="small", seeds=(3, 4), paths=("native", "default"),
                       root=tmp_path, log=lambda line: None)
    assert [(r["seed"], r["numeric_path"]) for r in results] == [
        (3, "native"), (3, "default"), (4, "native"), (4, "default")]
    native = _native_capability()
    for r in results:
        expected = "DEFAULT" if r["numeric_path"] == "default" else native
        assert r["cpu_capability"] == expected and r["root"] == str(tmp_path)
        assert r["process"]["wall"] > 0 and r["process"]["cpu"] >= 0
    with pytest.raises(ValueError, match="unknown numeric path"):
        run_grid("tests.benchmarks.test_zoo_seeds", profile="small", seeds=(0,), paths=("avx",), root=None)


def _native_capability() -> str:
    """The machine's own ATen kernel set (this process may itself run under ATEN_CPU_CAPABILITY)."""
    import os
    import subprocess

    import torch

    if "ATEN_CPU_CAPABILITY" not in os.environ:
        return torch.backends.cpu.get_cpu_capability()
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    return subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                          env=env, check=True, capture_output=True, text=True).stdout.strip()


def test_table_reports_mean_and_worst_case_per_property(tmp_path):
    runs = [{"seed": s, "numeric_path": p, "value": v, "machine": "m"}
            for (s, p), v in zip([(0, "native"), (0, "default"), (1, "native")], (0.9, 0.7, 0.8))]
    props = [Property("higher is better", lambda r: r["value"], ">= 70%"),
             Property("lower is better", lambda r: r["value"], "<= 90%", worst="max")]
    text = table(runs, props)
    assert "| higher is better | >= 70% | 80.0 | **70.0** | 90.0 | 70.0 | 80.0 |" in text
    assert "| lower is better | <= 90% | 80.0 | **90.0** |" in text
    assert "s0 native | s0 default | s1 native" in text
    written = write_grid(runs, props, out=tmp_path / "grid.md", json_out=tmp_path / "grid.json", extra="note\n")
    assert (tmp_path / "grid.md").read_text() == written and written.endswith("note\n")
    assert json.loads((tmp_path / "grid.json").read_text()) == runs


@pytest.mark.parametrize(("raw", "seeds"), [("0,1,2", (0, 1, 2)), ("7", (7,)), ("3, 4,", (3, 4))])
def test_parse_seeds(raw, seeds):
    assert parse_seeds(raw) == seeds


@pytest.mark.parametrize("raw", ["", "a,b", "-1"])
def test_parse_seeds_refuses_non_seeds(raw):
    with pytest.raises(ValueError, match="--seeds"):
        parse_seeds(raw)


def _stand_in(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--json", type=pathlib.Path)
    parser.add_argument("--root")
    args = parser.parse_args(argv)
    import torch

    args.json.write_text(json.dumps({"seed": args.seed, "profile": args.profile, "root": args.root,
                                     "cpu_capability": torch.backends.cpu.get_cpu_capability()}))


if __name__ == "__main__":
    _stand_in(sys.argv[1:])
