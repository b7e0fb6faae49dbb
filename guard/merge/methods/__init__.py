"""The merge methods, one module each, and the registry built from them (explicitly, no import-time
side effects). Adding a method: write its module with a `METHOD`, add it to the list below."""

from __future__ import annotations

from guard.merge.method import Registry
from guard.merge.methods import (
    breadcrumbs,
    breadcrumbs_ties,
    dare_linear,
    dare_ties,
    linear,
    model_stock,
    slerp,
    task_arithmetic,
    ties,
)

REGISTRY = Registry([m.METHOD for m in (linear, task_arithmetic, ties, dare_linear, dare_ties, breadcrumbs,
                                        breadcrumbs_ties, model_stock, slerp)])

__all__ = ["REGISTRY"]
