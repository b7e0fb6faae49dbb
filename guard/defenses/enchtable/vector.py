"""The safety-vector artifact: what `guard safety-vector distill` writes and the EnchTable stage reads.

A safety vector is stored in *model form*: a model directory whose weights are theta_sur + Delta (the
surrogate it was distilled on, moved by the safety vector; every tensor Delta does not touch is the
surrogate's, byte for byte), with the surrogate's config and tokenizer files, a `guard_safety_vector.json`
description, and an OMS signature (`model.sig`). So it is an input like any other: the same strict
reading, signature check against the trusted signers, MergeLock detection (against the merge's base) and
probes as every model in a merge; its task vector against the surrogate is Delta. Its cost is a full
model's size on disk.

`guard_safety_vector.json` (covered by the signature): format, the surrogate's weights digest (sha256
over every tensor's name, dtype, shape and bytes, in name order: independent of sharding and file
names), the modules trained, linearisation, the data digest, the recipe, and ||Delta||.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
from typing import Any

from guard.errors import InputError

DESCRIPTION_FILE = "guard_safety_vector.json"
FORMAT = "guard-safety-vector/1"


def weights_digest(model) -> str:
    """sha256 over every tensor's (name, dtype, shape, sha256 of its bytes), in name order: a digest of the
    weights alone, independent of sharding and file names. Streamed in file order."""
    import torch

    lines = {}
    for name, tensor in model.iter_tensors():
        info = model.tensors[name]
        data = memoryview(tensor.contiguous().reshape(-1).view(torch.uint8).numpy()) if tensor.numel() else b""
        lines[name] = json.dumps([name, info.dtype, list(info.shape), hashlib.sha256(data).hexdigest()])
    return "sha256:" + hashlib.sha256("\n".join(lines[n] for n in sorted(lines)).encode()).hexdigest()


def read_description(model) -> dict[str, Any]:
    """The description of a validated safety-vector ModelDir; InputError when it is not one."""
    path = model.root / DESCRIPTION_FILE
    if not any(f.relpath == DESCRIPTION_FILE for f in model.files):
        raise InputError(f"not a safety vector: no {DESCRIPTION_FILE} (write one with `guard safety-vector distill`)",
                         path=model.root, rule="safety-vector-format")
    try:
        description = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"unreadable {DESCRIPTION_FILE}: {exc}", path=path, rule="safety-vector-format") from None
    if not isinstance(description, dict) or description.get("format") != FORMAT:
        raise InputError(f"{DESCRIPTION_FILE}: format is not {FORMAT!r}", path=path, rule="safety-vector-format")
    surrogate = description.get("surrogate")
    if not isinstance(surrogate, dict) or not str(surrogate.get("weights_digest", "")).startswith("sha256:"):
        raise InputError(f"{DESCRIPTION_FILE}: no surrogate weights digest", path=path, rule="safety-vector-format")
    return description


def description_path(root: str | pathlib.Path) -> pathlib.Path:
    return pathlib.Path(root) / DESCRIPTION_FILE


def write_safety_vector(out: str | pathlib.Path, *, surrogate, delta, recipe: dict[str, Any] | None = None,
                        data_digest: str | None = None) -> pathlib.Path:
    """Write a safety vector in model form (atomically, through guard's ModelWriter): the validated
    surrogate ModelDir's tensors, plus `delta[name]` where given (checkpoint names), its support files and
    the description. Signing is the caller's (`guard sign` / the distill command)."""
    import torch

    from guard.artifacts.writer import ModelWriter

    out = pathlib.Path(out)
    unknown = sorted(set(delta) - set(surrogate.tensors))
    if unknown:
        raise InputError(f"safety vector: tensor {unknown[0]!r} is not in the surrogate", path=surrogate.root,
                         rule="safety-vector-format")
    squares = 0.0
    with ModelWriter(out) as writer:
        for name, tensor in surrogate.iter_tensors():
            if name in delta:
                change = delta[name].to(torch.float32)
                squares += float(change.pow(2).sum())
                tensor = (tensor.to(torch.float32) + change).to(tensor.dtype)
            writer.add(name, tensor)
        writer.copy_support_files(surrogate, skip=(DESCRIPTION_FILE, "model.sig"))
        writer.write_json(DESCRIPTION_FILE, {
            "format": FORMAT, "surrogate": {"weights_digest": weights_digest(surrogate)},
            "tensors": sorted(delta), "norm": squares ** 0.5, "data_digest": data_digest, "recipe": recipe or {}})
    return out


def safety_delta(vector, surrogate) -> dict[str, Any]:
    """Delta = vector - surrogate (float32, CPU) for every floating tensor that differs; the vector's
    description must name this surrogate's weights digest (else InputError: a vector distilled on another
    model). Both are validated ModelDirs over verified bytes."""
    import torch

    description = read_description(vector)
    digest = weights_digest(surrogate)
    if description["surrogate"]["weights_digest"] != digest:
        raise InputError(f"safety vector was distilled on another surrogate ({description['surrogate']['weights_digest']}, "
                         f"this one is {digest})", path=vector.root, rule="safety-vector-surrogate")
    missing = sorted(set(surrogate.tensors) ^ set(vector.tensors))
    if missing:
        raise InputError(f"safety vector and surrogate differ in tensor {missing[0]!r}", path=vector.root,
                         rule="safety-vector-format")
    out = {}
    for name, tensor in vector.iter_tensors():
        if not tensor.is_floating_point():
            continue
        change = tensor.to(torch.float32) - surrogate.get_tensor(name).to(torch.float32)
        if bool(change.any()):
            out[name] = change
    return out
