"""Merge methods, one module each; importing this package registers all of them."""

from guard.merge.methods import dare, task_arithmetic, ties  # noqa: F401
