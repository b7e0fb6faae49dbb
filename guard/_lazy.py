"""Lazy package attributes: `__getattr__ = lazy_attributes(__name__, {"Name": "package.module", ...})` lets a
package re-export names without importing their (heavy) modules until first use."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_attributes(package: str, table: Mapping[str, str]) -> Callable[[str], object]:
    def __getattr__(name: str) -> object:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
