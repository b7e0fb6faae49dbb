"""The zoo's build cache: keyed by kind, spec (seed included) and numeric path; entries appear whole."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from guard.testing.zoo import seeds
from guard.testing.zoo.cache import cached_build, numeric_path, spec_key

_BUILD_IN_CHILD = """
import json, pathlib, sys
from guard.testing.zoo.cache import cached_build, numeric_path
calls = []
path = cached_build("demo", {"seed": 0}, lambda out: (calls.append(1), (out / "x").write_text("built")),
                    root=pathlib.Path(sys.argv[1]))
print(json.dumps({"path": str(path), "built": bool(calls), "numeric_path": numeric_path()}))
"""


def _child(root: pathlib.Path, *, capability: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    if capability is not None:
        env["ATEN_CPU_CAPABILITY"] = capability
    out = subprocess.run([sys.executable, "-c", _BUILD_IN_CHILD, str(root)], env=env, capture_output=True, text=True,
                         check=True, cwd=pathlib.Path(__file__).parents[2])
    return json.loads(out.stdout)


def test_seed_is_part_of_the_key():
    assert spec_key("lm-family", {"seed": 0}) != spec_key("lm-family", {"seed": 1})
    assert spec_key("lm-family", {"seed": 0}) == spec_key("lm-family", {"seed": 0})


def test_numeric_path_names_torch_device_and_kernels():
    path = numeric_path()
    import torch

    assert path["torch"] == torch.__version__
    assert path["device"] in ("cpu", "cuda")
    if path["device"] == "cpu":
        assert path["cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def test_an_entry_built_under_one_kernel_path_is_not_served_under_another(tmp_path):
    """A build under ATEN_CPU_CAPABILITY=default and one under the machine's own kernels get different
    entries (each builds), unless the machine's own kernel set is ATen's default one; a second build
    under the same path is a cache hit."""
    default = _child(tmp_path, capability="default")
    native = _child(tmp_path, capability=None)
    assert default["built"] and default["numeric_path"]["cpu_capability"] == "DEFAULT"
    same_path = native["numeric_path"] == default["numeric_path"]
    assert native["built"] != same_path and (native["path"] == default["path"]) == same_path
    again = _child(tmp_path, capability="default")
    assert not again["built"] and again["path"] == default["path"]
    spec = json.loads((pathlib.Path(default["path"]) / "spec.json").read_text())
    assert spec["numeric_path"]["cpu_capability"] == "DEFAULT" and spec["spec"] == {"seed": 0}


def test_failed_build_leaves_no_entry(tmp_path):
    def fail(out):
        (out / "half").write_text("x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        cached_build("demo", {"seed": 3}, fail, root=tmp_path)
    assert not any(p.name.startswith("demo-") for p in tmp_path.iterdir())


@pytest.mark.parametrize(("raw", "seed"), [(None, 0), ("", 0), ("2", 2), (" 7 ", 7)])
def test_env_seed(monkeypatch, raw, seed):
    if raw is None:
        monkeypatch.delenv(seeds.SEED_ENV, raising=False)
    else:
        monkeypatch.setenv(seeds.SEED_ENV, raw)
    assert seeds.env_seed() == seed


@pytest.mark.parametrize("raw", ["one", "-1", "1.5"])
def test_env_seed_refuses_non_seeds(monkeypatch, raw):
    monkeypatch.setenv(seeds.SEED_ENV, raw)
    with pytest.raises(ValueError, match=seeds.SEED_ENV):
        seeds.env_seed()


def test_reported_seeds_were_not_developed_on():
    assert seeds.DEFAULT_SEED in seeds.REPORTED_SEEDS and len(seeds.REPORTED_SEEDS) >= 3
    assert not set(seeds.REPORTED_SEEDS) & set(seeds.DEVELOPMENT_SEEDS)
