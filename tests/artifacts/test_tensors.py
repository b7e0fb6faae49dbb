import pytest
import torch
from safetensors import safe_open

from guard.artifacts import ModelWriter, open_model_dir
from guard.artifacts.dtypes import DEFAULT_ALLOWED_DTYPES, safetensors_dtype, torch_dtype


def _sample(dtype: torch.dtype) -> torch.Tensor:
    base = torch.linspace(-3, 3, 12).reshape(3, 4)
    if dtype == torch.bool:
        return base > 0
    if dtype.is_complex:
        return torch.complex(base, -base).to(dtype)
    if not dtype.is_floating_point:
        return base.abs().round().to(dtype)
    return base.to(dtype)


@pytest.mark.parametrize("name", sorted(DEFAULT_ALLOWED_DTYPES))
def test_every_allowed_dtype_round_trips_bit_exactly(tmp_path, name):
    dtype = torch_dtype(name)
    assert safetensors_dtype(dtype) == name
    t = _sample(dtype)
    with ModelWriter(tmp_path / "m") as w:
        w.add("t", t)
        w.add("scalar", t.reshape(-1)[0].clone())
    md = open_model_dir(tmp_path / "m")
    assert md.tensors["t"].dtype == name
    got = md.get_tensor("t")
    assert got.dtype == dtype and got.shape == t.shape
    assert torch.equal(got.view(torch.uint8), t.view(torch.uint8))
    assert md.get_tensor("scalar").shape == ()
    with safe_open(tmp_path / "m" / "model.safetensors", framework="pt") as f:  # the reference loader agrees
        assert torch.equal(f.get_tensor("t").view(torch.uint8), t.view(torch.uint8))
