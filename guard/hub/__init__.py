"""The Hub client: guard's only network stage, leftmost in the pipeline (hub -> artifacts -> ...).

    ref = parse_hub_ref("hf:org/name@<40-hex commit sha>")
    settings = HubSettings()                       # endpoint from HF_ENDPOINT, token from HF_TOKEN
    fetched = download_revision(ref, dest="audit-123/", settings=settings, limits=HubLimits())
    fetched.model_dir                              # regular files (no symlinks), hashes checked
    post_report(repo_id="org/name", ref="refs/pr/3", sha=..., markdown=..., settings=settings)

Downloads go through huggingface_hub with a transport that talks only to the Hub's hosts, under a
deadline and a byte budget, into a per-download cache directory. Revisions are commit shas only: an
audit or a merge names the exact bytes it checked. huggingface_hub is imported lazily.
"""

from __future__ import annotations

import importlib

__all__ = ["Fetched", "HubLimits", "HubRef", "HubSettings", "download_revision", "list_revision", "parse_hub_ref",
           "post_report", "resolve_revision"]

_LAZY = {
    "HubRef": "guard.hub.refs",
    "parse_hub_ref": "guard.hub.refs",
    "HubLimits": "guard.hub.settings",
    "HubSettings": "guard.hub.settings",
    "Fetched": "guard.hub.download",
    "download_revision": "guard.hub.download",
    "list_revision": "guard.hub.download",
    "resolve_revision": "guard.hub.download",
    "post_report": "guard.hub.discussions",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'guard.hub' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
