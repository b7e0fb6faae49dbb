"""Shared output helpers for subcommands: JSON to stdout for machines, rich for people."""

from __future__ import annotations

import json
import sys
from typing import Any


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def console(*, stderr: bool = False):
    """A rich Console, imported lazily (rich costs ~50 ms to import)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)
