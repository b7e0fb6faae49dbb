"""Policy stage: the safe-merge policy model (pydantic), loading it from YAML, its JSON Schema.

    loaded = load_policy("strict")          # or a path; None is strict
    loaded.policy.signatures.required       # True
    loaded.sha256                           # digest of the file, recorded in provenance

The policy decides; the pipeline (guard.pipeline.checks) applies it to every input.
"""

from __future__ import annotations

from guard._lazy import lazy_attributes

__all__ = ["DEFAULT_POLICY", "LoadedPolicy", "Policy", "TrustedSigner", "load_policy"]

_LAZY = {
    "Policy": "guard.policy.model",
    "TrustedSigner": "guard.policy.model",
    "DEFAULT_POLICY": "guard.policy.load",
    "LoadedPolicy": "guard.policy.load",
    "load_policy": "guard.policy.load",
}


__getattr__ = lazy_attributes(__name__, _LAZY)
