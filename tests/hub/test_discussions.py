from guard.hub.discussions import post_report, report_marker
from tests.hub.conftest import TOKEN


def test_pr_audit_is_a_comment_on_the_pr_posted_once(hub, settings):
    hub.push("acme/model", {"config.json": b"{}"})
    num, sha = hub.open_pull_request("acme/model", {"config.json": b'{"a": 1}'})
    first = post_report(repo_id="acme/model", ref=f"refs/pr/{num}", sha=sha, markdown="**clean**", settings=settings)
    again = post_report(repo_id="acme/model", ref=f"refs/pr/{num}", sha=sha, markdown="**clean**", settings=settings)
    assert (first.discussion, first.created) == (num, True)
    assert (again.discussion, again.created) == (num, False)
    comments = hub.comments("acme/model", num)
    assert len(comments) == 1
    assert comments[0]["author"]["name"] == hub.users[TOKEN]
    assert report_marker("acme/model", f"refs/pr/{num}", sha) in comments[0]["data"]["latest"]["raw"]


def test_branch_audit_opens_one_discussion_per_sha(hub, settings):
    sha1 = hub.push("acme/model", {"config.json": b"{}"})
    sha2 = hub.push("acme/model", {"config.json": b'{"b": 2}'})
    for sha in (sha1, sha1, sha2):
        post_report(repo_id="acme/model", ref="refs/heads/main", sha=sha, markdown="report", settings=settings)
    titles = sorted(d.title for d in hub.discussion_list("acme/model"))
    assert titles == sorted([f"guard audit main @ {sha1[:7]}", f"guard audit main @ {sha2[:7]}"])
