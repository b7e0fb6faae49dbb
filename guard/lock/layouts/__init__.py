"""Attention layouts MergeLock knows, one adapter module per layout family, behind one registry.

An architecture that is not listed is refused: a wrong guess about a layout would either break the
model or leave it unprotected while claiming otherwise.
"""

from __future__ import annotations

from guard.errors import InputError
from guard.lock.layouts import bert, gpt2, gpt_neox, gptj, llama, phi3, t5
from guard.lock.layouts.base import AttentionWeights, HeadGeometry, Layout

LAYOUTS: dict[str, Layout] = {}

for _layout in (llama.LAYOUT, llama.GEMMA, phi3.LAYOUT, gpt2.LAYOUT, gpt_neox.LAYOUT, gptj.LAYOUT, bert.BERT, bert.VIT, t5.LAYOUT):
    for _model_type in _layout.model_types:
        LAYOUTS[_model_type] = _layout


def layout_for(model_type: str | None, *, path=None) -> Layout:
    try:
        return LAYOUTS[model_type or ""]
    except KeyError:
        raise InputError(
            f"architecture {model_type!r} is not supported by MergeLock; supported: {', '.join(sorted(LAYOUTS))}",
            path=path, rule="lock-unsupported",
        ) from None


__all__ = ["LAYOUTS", "AttentionWeights", "HeadGeometry", "Layout", "layout_for"]
