"""JSON parsing that sees what `json.loads` hides: duplicate keys (the last one silently wins there).

Every JSON guard reads (safetensors headers, config.json, tokenizer files, indexes, signature bundles)
goes through `parse_json`, which returns the value exactly as Python (and therefore transformers)
reads it, plus the keys that appeared twice in an object, so each caller decides what a duplicate
means for its format instead of inheriting the last-wins rule.
"""

from __future__ import annotations

import json


def parse_json(text: str, *, allow_constants: bool = True) -> tuple[object, tuple[str, ...]]:
    """(value, duplicate keys in order of appearance). ValueError/RecursionError if it is not JSON;
    `allow_constants=False` also refuses NaN/Infinity/-Infinity literals."""
    duplicates: list[str] = []

    def pairs_hook(pairs: list[tuple[str, object]]) -> dict:
        out: dict = {}
        for key, value in pairs:
            if key in out:
                duplicates.append(key)
            out[key] = value
        return out

    def no_constant(name: str):
        raise ValueError(f"non-standard JSON constant {name}")

    extra = {} if allow_constants else {"parse_constant": no_constant}
    value = json.loads(text, object_pairs_hook=pairs_hook, **extra)
    return value, tuple(duplicates)


def find_keys(value: object, names: frozenset[str], *, limit: int = 20) -> list[tuple[str, object]]:
    """(key, value) of every object member named in `names`, at any depth (iterative: no recursion limit)."""
    found: list[tuple[str, object]] = []
    stack = [value]
    while stack and len(found) < limit:
        node = stack.pop()
        if isinstance(node, dict):
            for key, child in node.items():
                if key in names:
                    found.append((key, child))
                stack.append(child)
        elif isinstance(node, list):
            stack.extend(node)
    return found
