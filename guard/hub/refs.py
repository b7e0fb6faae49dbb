"""Hub references: `hf:org/name@<commit sha>`, checked before anything touches the network."""

from __future__ import annotations

import dataclasses
import re

from guard.errors import InputError

PREFIX = "hf:"
# The Hub's own rules: owner and name of letters, digits, '-', '_', '.', not starting with '-' or '.'.
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")
_SHA = re.compile(r"[0-9a-f]{40}")


@dataclasses.dataclass(frozen=True)
class HubRef:
    repo_id: str
    sha: str

    def __str__(self) -> str:
        return f"{PREFIX}{self.repo_id}@{self.sha}"


def is_hub_ref(text: str) -> bool:
    return text.startswith(PREFIX)


def check_repo_id(repo_id: str) -> str:
    if not isinstance(repo_id, str) or not _REPO_ID.fullmatch(repo_id) or ".." in repo_id:
        raise InputError(f"not a Hub model id (owner/name): {str(repo_id)[:200]!r}", rule="hub-repo-id")
    return repo_id


def check_sha(sha: str) -> str:
    if not isinstance(sha, str) or not _SHA.fullmatch(sha):
        raise InputError(f"not a full 40-hex commit sha: {str(sha)[:80]!r} (branches and tags move; guard pins "
                         "commits)", rule="hub-revision")
    return sha


def parse_hub_ref(text: str) -> HubRef:
    """`hf:org/name@sha` -> HubRef; InputError (exit 2) naming what is wrong."""
    if not is_hub_ref(text):
        raise InputError(f"not a Hub reference (expected hf:owner/name@<commit sha>): {text[:200]!r}", rule="hub-ref")
    body = text[len(PREFIX):]
    repo_id, sep, sha = body.rpartition("@")
    if not sep:
        raise InputError(f"{text[:200]!r} names no revision: write hf:owner/name@<40-hex commit sha>",
                         rule="hub-revision")
    return HubRef(repo_id=check_repo_id(repo_id), sha=check_sha(sha))
