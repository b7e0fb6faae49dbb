"""Strict reading and atomic writing of model directories (safetensors only; nothing is unpickled).

Heavy modules (torch) are imported lazily: `from guard.artifacts import list_model_files` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from guard.artifacts.paths import check_relname, list_model_files

if TYPE_CHECKING:
    from guard.artifacts.model_dir import ModelDir, open_model_dir
    from guard.artifacts.policy import ReadPolicy
    from guard.artifacts.writer import ModelWriter

__all__ = ["ModelDir", "ModelWriter", "ReadPolicy", "check_relname", "list_model_files", "open_model_dir"]

_LAZY = {
    "ModelDir": "guard.artifacts.model_dir",
    "open_model_dir": "guard.artifacts.model_dir",
    "ReadPolicy": "guard.artifacts.policy",
    "ModelWriter": "guard.artifacts.writer",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'guard.artifacts' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
