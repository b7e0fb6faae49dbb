"""The Hub client: guard's only network stage, leftmost in the pipeline (hub -> artifacts -> ...).

    ref = parse_hub_ref("hf:org/name@<40-hex commit sha>")
    settings = HubSettings()                       # endpoint from HF_ENDPOINT, token from HF_TOKEN
    fetched = download_revision(ref, dest="audit-123/", settings=settings, limits=HubLimits())
    fetched.model_dir                              # regular files (no symlinks), hashes checked
    post_report(repo_id="org/name", ref="refs/pr/3", sha=..., markdown=..., settings=settings)

Downloads go through huggingface_hub with a transport that talks only to the Hub's hosts, under a
deadline and a byte budget, into a per-download cache directory. Revisions are commit shas only: an
audit or a merge names the exact bytes it checked. huggingface_hub itself is imported only when a
function here is called.
"""

from __future__ import annotations

from guard.hub.discussions import post_report
from guard.hub.download import Fetched, download_revision, list_revision, resolve_revision
from guard.hub.refs import HubRef, is_hub_ref, parse_hub_ref
from guard.hub.settings import HubLimits, HubSettings
from guard.hub.transport import HubLimitExceeded, HubUnavailable

__all__ = ["Fetched", "HubLimitExceeded", "HubLimits", "HubRef", "HubSettings", "HubUnavailable", "download_revision",
           "is_hub_ref", "list_revision", "parse_hub_ref", "post_report", "resolve_revision"]
