"""The inspect job: the artifacts report, plus MergeLock detection from the lock stage.

Detection runs whenever the lock stage knows the architecture: against `base` when one is given (the
attention-far / MLP-near signature), otherwise the base-free OV-imbalance heuristic. A detected lock is
a "warn" finding: the model is not malicious, but merging it destroys the merge.

With a `verifier`, the model's signature is checked first and the whole report (files, headers,
tensors for the value scan and lock detection) comes from the verified private copy
(guard.signing.open_verified_model); the `base`, a public model, is read as it is.
"""

from __future__ import annotations

import os
from typing import Any

from guard.errors import InputError


def inspect_model(model_dir: str | os.PathLike, *, policy=None, base: str | os.PathLike | None = None,
                  verifier=None, signature: str | os.PathLike | None = None) -> dict[str, Any]:
    if verifier is None:
        from guard.artifacts import open_model_dir

        return _inspect(open_model_dir(model_dir, policy=policy), policy=policy, base=base)
    from guard.signing import open_verified_model

    with open_verified_model(model_dir, signature=signature, verifier=verifier, policy=policy) as model:
        report = _inspect(model, policy=policy, base=base)
    report["root"] = str(model_dir)  # the model the user named, not the private copy it was read from
    report["verification"] = model.verification.to_json()
    return report


def _inspect(model, *, policy, base) -> dict[str, Any]:
    from guard.artifacts import open_model_dir
    from guard.artifacts.report import inspect_report

    report = inspect_report(model)
    base_model = None if base is None else open_model_dir(base, policy=policy)
    if base_model is not None:
        require_same_architecture(model, base_model)
    report["mergelock"] = _detect(model, base_model)
    if report["mergelock"].get("flagged"):
        report["findings"].append({"severity": "warn", "rule": report["mergelock"]["rule"], "path": ".",
                                   "message": report["mergelock"]["message"]})
    return report


def _detect(model, base_model) -> dict[str, Any]:
    if model.refused() or not model.tensors:
        return {"checked": False, "reason": "no readable tensors to check" if not model.tensors else
                "refused files present; tensors not read"}
    from guard.lock.detect import detect_model_dir

    try:
        signature = detect_model_dir(model, base_model)
    except InputError as exc:
        if base_model is not None:
            raise  # the user asked for a comparison with a base: say why it is impossible
        return {"checked": False, "reason": exc.message}
    return {"checked": True, "flagged": signature.flagged, "rule": signature.rule, "message": signature.message,
            "with_base": base_model is not None, "measurements": signature.measurements}


def require_same_architecture(model, base_model) -> None:
    """InputError unless `base_model` can be compared with `model` (same model type, tensor names in common)."""
    shared = set(model.tensors) & set(base_model.tensors)
    if model.model_type != base_model.model_type or not shared:
        raise InputError(f"the base is a {base_model.model_type or 'unknown'} model with {len(shared)} tensor names in "
                         f"common with this {model.model_type or 'unknown'} model; a base must be the same "
                         f"architecture", path=base_model.root, rule="inspect-base-mismatch")
