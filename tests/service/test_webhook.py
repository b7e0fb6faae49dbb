import pytest

from guard.errors import InputError
from guard.service.store import JobKey
from guard.service.webhook import decide
from tests.service.helpers import push_payload

A, B = "a" * 40, "b" * 40


def test_one_job_per_updated_ref_with_a_new_sha():
    d = decide(push_payload("acme/m", [("refs/heads/main", A), ("refs/pr/3", B), ("refs/tags/v1", A)]))
    assert d.status == "accepted"
    assert d.keys == (JobKey("acme/m", "refs/heads/main", A), JobKey("acme/m", "refs/pr/3", B),
                      JobKey("acme/m", "refs/tags/v1", A))


def test_skips_deleted_convert_own_and_malformed_refs():
    d = decide(push_payload("acme/m", [("refs/heads/gone", None), ("refs/convert/parquet", A), ("refs/guard/x", A),
                                       ("refs/heads/main", "not-a-sha"), ("main", A), ("refs/heads/ok", B)]),
               ignore_refs=("refs/convert/*", "refs/guard/*"))
    assert d.keys == (JobKey("acme/m", "refs/heads/ok", B),)
    for reason in ("deleted", "ignored ref", "not a commit sha", "not a ref"):
        assert reason in d.reason


def test_head_sha_fallback_only_without_updated_refs():
    payload = push_payload("acme/m", [], head=A)
    del payload["updatedRefs"]
    assert decide(payload).keys == (JobKey("acme/m", "refs/heads/main", A),)


@pytest.mark.parametrize("payload, why", [
    (push_payload("acme/d", [("refs/heads/main", A)], repo_type="dataset"), "not model"),
    (push_payload("acme/m", [("refs/heads/main", A)], scope="repo"), "not repo.content"),
    (push_payload("acme/m", [("refs/heads/main", A)], scope="repo.config"), "not repo.content"),
    (push_payload("../evil", [("refs/heads/main", A)]), "owner/name"),
    ({"event": {"scope": "discussion"}, "repo": {"type": "model", "name": "acme/m"}}, "discussion"),
    ({"something": "else entirely"}, "not repo.content"),
])
def test_ignored_events_say_why(payload, why):
    d = decide(payload)
    assert d.status == "ignored" and not d.keys and why in d.reason


def test_sub_scopes_and_unknown_fields_are_tolerated():
    payload = push_payload("acme/m", [("refs/heads/main", A)], scope="repo.content.lfs")
    payload["brandNewField"] = {"x": [1, 2]}
    payload["updatedRefs"][0]["extra"] = True
    assert decide(payload).keys == (JobKey("acme/m", "refs/heads/main", A),)


def test_guards_own_comments_are_ignored():
    payload = {"event": {"action": "create", "scope": "discussion.comment"}, "repo": {"type": "model", "name": "a/b"},
               "comment": {"author": {"id": "bot-id"}, "content": "guard audit"}}
    assert decide(payload, bot_user_ids=("bot-id",)).reason == "guard's own comment"
    assert decide(payload).status == "ignored"


def test_non_objects_are_input_errors():
    for body in ([], "x", 3, None):
        with pytest.raises(InputError):
            decide(body)
