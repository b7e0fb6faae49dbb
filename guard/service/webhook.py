"""What a Hub webhook payload (version 3) asks guard to audit: one job per updated ref with a new sha.

Lenient about what it does not use (unknown fields, new scopes), strict about what it does: the repo id
and every sha are validated before anything is stored. Kept: model repos, scope `repo.content` (and its
sub-scopes). Ignored, with the reason recorded: other repo types and scopes, discussion events (guard's
own comments among them), deleted refs, `refs/convert/*` and the refs guard writes itself.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re

from guard.errors import InputError
from guard.hub.refs import check_repo_id
from guard.service.store import JobKey

_SHA = re.compile(r"[0-9a-f]{40}")
MAIN = "refs/heads/main"


@dataclasses.dataclass(frozen=True)
class Decision:
    scope: str
    repo: str | None
    keys: tuple[JobKey, ...]
    reason: str

    @property
    def status(self) -> str:
        return "accepted" if self.keys else "ignored"


def decide(payload: object, *, bot_user_ids: tuple[str, ...] = (), ignore_refs: tuple[str, ...] = ()) -> Decision:
    """Raises InputError only when the body is not a JSON object; anything else is a Decision."""
    if not isinstance(payload, dict):
        raise InputError("webhook body is not a JSON object", rule="webhook-malformed")
    event = payload.get("event") if isinstance(payload.get("event"), dict) else {}
    scope = str(event.get("scope") or "")[:64]
    repo = payload.get("repo") if isinstance(payload.get("repo"), dict) else {}
    name = repo.get("name") if isinstance(repo.get("name"), str) else None

    def ignored(reason: str) -> Decision:
        return Decision(scope=scope, repo=name[:200] if name else None, keys=(), reason=reason)

    if scope.startswith("discussion"):
        comment = payload.get("comment") if isinstance(payload.get("comment"), dict) else {}
        author = (comment.get("author") or {}).get("id") if isinstance(comment.get("author"), dict) else None
        if author is not None and author in bot_user_ids:
            return ignored("guard's own comment")
        return ignored(f"{scope} event: guard audits content, not discussions")
    if scope != "repo.content" and not scope.startswith("repo.content."):
        return ignored(f"scope {scope or '(none)'!r} is not repo.content")
    if repo.get("type") != "model":
        return ignored(f"repo type {str(repo.get('type'))[:32]!r} is not model")
    try:
        repo_id = check_repo_id(name)
    except InputError as exc:
        return ignored(exc.message)
    refs = payload.get("updatedRefs")
    updates = []
    if isinstance(refs, list) and refs:
        updates = [(r.get("ref"), r.get("newSha")) for r in refs if isinstance(r, dict)]
    elif isinstance(repo.get("headSha"), str):
        updates = [(MAIN, repo["headSha"])]
    keys, skipped = [], []
    for ref, sha in updates:
        if not isinstance(ref, str) or not ref.startswith("refs/") or len(ref) > 255:
            skipped.append(f"{str(ref)[:80]!r}: not a ref")
        elif sha is None:
            skipped.append(f"{ref}: deleted")
        elif any(fnmatch.fnmatchcase(ref, pattern) for pattern in ignore_refs):
            skipped.append(f"{ref}: ignored ref")
        elif not isinstance(sha, str) or not _SHA.fullmatch(sha):
            skipped.append(f"{ref}: not a commit sha")
        else:
            keys.append(JobKey(repo_id, ref, sha))
    keys = list(dict.fromkeys(keys))
    reason = f"{len(keys)} ref(s) to audit" + (f"; skipped {'; '.join(skipped)}" if skipped else "")
    if not updates:
        reason = "no updatedRefs and no headSha"
    return Decision(scope=scope, repo=repo_id, keys=tuple(keys), reason=reason[:2000])
