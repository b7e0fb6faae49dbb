"""Reporting back to the Hub: a discussion comment, posted at most once per (repo, ref, sha).

The Hub has no commit-status API. A pull request's audit (ref `refs/pr/N`) is a comment on discussion N;
any other ref gets a discussion of its own titled `guard audit <ref> @ <sha7>`. Every report carries a
hidden marker naming (repo, ref, sha); before posting, guard looks for it, so a worker that died after
posting but before recording it does not post twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

from guard.hub.download import hub_errors
from guard.hub.refs import check_repo_id, check_sha
from guard.hub.settings import HubLimits, HubSettings
from guard.hub.transport import hub_session

_PR_REF = re.compile(r"refs/pr/(\d+)")


@dataclasses.dataclass(frozen=True)
class Posted:
    discussion: int
    created: bool  # False: the marker was already there (posted by an earlier attempt)


def report_marker(repo_id: str, ref: str, sha: str) -> str:
    key = hashlib.sha256(f"{repo_id}\0{ref}\0{sha}".encode()).hexdigest()[:32]
    return f"<!-- guard-audit {key} -->"


def report_title(ref: str, sha: str) -> str:
    short = ref.removeprefix("refs/heads/").removeprefix("refs/tags/")
    return f"guard audit {short} @ {sha[:7]}"


def post_report(*, repo_id: str, ref: str, sha: str, markdown: str, settings: HubSettings | None = None,
                limits: HubLimits | None = None) -> Posted:
    from huggingface_hub import HfApi

    settings = settings or HubSettings()
    limits = limits or HubLimits(timeout_s=120.0)
    check_repo_id(repo_id)
    check_sha(sha)
    marker = report_marker(repo_id, ref, sha)
    body = f"{markdown.rstrip()}\n\n{marker}\n"
    api = HfApi(endpoint=settings.endpoint, token=settings.token or False)
    pr = _PR_REF.fullmatch(ref)
    with hub_session(settings, limits, total_bytes=0), hub_errors(f"hf:{repo_id}@{sha}"):
        if pr:
            num = int(pr.group(1))
            if _has_marker(api, repo_id, num, marker):
                return Posted(discussion=num, created=False)
            api.comment_discussion(repo_id, num, body)
            return Posted(discussion=num, created=True)
        title = report_title(ref, sha)
        for discussion in api.get_repo_discussions(repo_id, discussion_type="discussion"):
            if discussion.title == title and _has_marker(api, repo_id, discussion.num, marker):
                return Posted(discussion=discussion.num, created=False)
        created = api.create_discussion(repo_id, title, description=body)
        return Posted(discussion=created.num, created=True)


def _has_marker(api, repo_id: str, num: int, marker: str) -> bool:
    details = api.get_discussion_details(repo_id, num)
    return any(marker in (getattr(event, "content", "") or "") for event in details.events)
