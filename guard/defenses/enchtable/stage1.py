"""EnchTable stage 1 on a model directory: distil a safety vector from an aligned surrogate and write it,
signed, in model form (what `guard safety-vector distill` runs).

The surrogate is read strictly (guard's reader, verified bytes when a signature is checked by the
caller); its architecture is built from config.json (transformers classes only) and loaded with its own
tensors; the harmful set is a safetensors file (`input_ids`, `labels`, optional `attention_mask`), read
strictly. The output is staged (guard.artifacts.atomic.atomic_directory), signed there, and renamed
into place: an OUT that exists is complete and signed.
"""

from __future__ import annotations

import hashlib
import os
import pathlib

import torch

from guard.errors import InputError


def distill_safety_vector(surrogate_dir: str | os.PathLike, data_path: str | os.PathLike, out: str | os.PathLike, *,
                          settings, signer=None, progress=None) -> dict:
    from guard.artifacts import open_model_dir
    from guard.artifacts.atomic import atomic_directory
    from guard.defenses.calibration import read_calibration
    from guard.defenses.dam.models import module_for
    from guard.defenses.enchtable.distill import distill
    from guard.defenses.enchtable.vector import write_safety_vector
    from guard.defenses.names import checkpoint_names

    out = pathlib.Path(out)
    if out.exists() or out.is_symlink():  # checked again by atomic_directory; fail before the training
        raise InputError("output already exists", path=out, rule="output-exists")
    surrogate = open_model_dir(surrogate_dir)
    data = read_calibration(data_path)
    for key in ("input_ids", "labels"):
        if key not in data or data[key].is_floating_point() or data[key].dim() != 2:
            raise InputError(f"harmful set needs an integer {key} [N, L]", path=data_path, rule="distill-data")
    if tuple(data["labels"].shape) != tuple(data["input_ids"].shape):
        raise InputError("labels and input_ids differ in shape", path=data_path, rule="distill-data")
    module = module_for(surrogate)
    names = checkpoint_names(module)  # checkpoint -> module
    params = {names[n]: t.float() for n, t in surrogate.iter_tensors() if n in names}
    missing, _ = module.load_state_dict(params, strict=False)
    untied = [m for m in missing if m in dict(module.named_parameters())]
    if untied:
        raise InputError(f"surrogate lacks parameter {untied[0]!r}", path=surrogate.root, rule="distill-surrogate")
    result = distill(module, data, settings, progress=progress)
    back = {m: c for c, m in names.items()}
    delta = {back[m]: d for m, d in result.delta.items() if m in back}
    digest = "sha256:" + hashlib.sha256(pathlib.Path(data_path).read_bytes()).hexdigest()
    signature = None
    # Staged under OUT's name (the signature records it), published by the project's atomic helper.
    with atomic_directory(out) as staging:
        staged = staging / "vector"
        write_safety_vector(staged, surrogate=surrogate, delta=delta, data_digest=digest,
                            recipe={**settings.model_dump(), "steps": result.steps, "final_loss": result.final_loss})
        for item in staged.iterdir():
            os.rename(item, staging / item.name)
        staged.rmdir()
        if signer is not None:
            from guard.signing import sign_model

            signature = str(out / sign_model(staging, signer=signer).name)
    norm = float(torch.sqrt(sum(d.float().pow(2).sum() for d in delta.values())))
    return {"out": str(out), "signature": signature, "tensors": len(delta), "norm": norm, "steps": result.steps,
            "final_loss": result.final_loss, "modules": settings.modules, "linearise": settings.linearise}
