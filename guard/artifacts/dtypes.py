"""safetensors dtype names, their bit widths, and the torch dtypes they map to (torch imported lazily)."""

from __future__ import annotations

# Every dtype safetensors 0.8 defines -> bits per element.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8,
    "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64, "U64": 64,
}

# name -> torch attribute; the default allow-list is exactly what torch can hold element by element.
_TORCH_NAMES: dict[str, str] = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16", "I32": "int32",
    "U32": "uint32", "I64": "int64", "U64": "uint64", "F16": "float16", "BF16": "bfloat16", "F32": "float32",
    "F64": "float64", "C64": "complex64", "F8_E5M2": "float8_e5m2", "F8_E4M3": "float8_e4m3fn",
    "F8_E4M3FNUZ": "float8_e4m3fnuz", "F8_E5M2FNUZ": "float8_e5m2fnuz", "F8_E8M0": "float8_e8m0fnu",
}
DEFAULT_ALLOWED_DTYPES: frozenset[str] = frozenset(_TORCH_NAMES)
FLOAT_DTYPES: frozenset[str] = frozenset({"F16", "BF16", "F32", "F64", "C64"})


def is_parameter_dtype(name: str) -> bool:
    """Floating-point (incl. F4/F6/F8 and complex) tensors can be parameters; integer/BOOL ones are buffers."""
    return name.startswith(("F", "BF", "C"))


def torch_dtype(name: str):
    import torch

    return getattr(torch, _TORCH_NAMES[name])


def safetensors_dtype(dtype) -> str:
    """The safetensors name of a torch dtype (ValueError if it has none)."""
    for name, attr in _TORCH_NAMES.items():
        if str(dtype) == f"torch.{attr}":
            return name
    raise ValueError(f"no safetensors dtype for {dtype}")
