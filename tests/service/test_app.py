"""The webhook endpoint and read API over real HTTP (uvicorn on loopback), on SQLite and PostgreSQL."""

import json

import httpx2
import pytest

from guard.service.app import create_app
from guard.service.config import ServiceConfig
from guard.service.store import JobStore
from tests.service.helpers import SECRET, push_payload, serving

A = "a" * 40


@pytest.fixture
def service(database_url):
    config = ServiceConfig(webhook_secret=SECRET, database=database_url, max_body_bytes=4096, secret_in_query=True,
                           bot_user_ids=("bot",))
    store = JobStore(database_url)
    with serving(create_app(config, store)) as url, httpx2.Client(base_url=url, timeout=10) as client:
        yield client, store
    store.close()


def post(client, payload, *, secret=SECRET, params=None, content=None):
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Webhook-Secret"] = secret
    return client.post("/webhooks/hub", headers=headers, params=params,
                       content=content if content is not None else json.dumps(payload))


def test_accepts_queues_and_answers_202(service):
    client, store = service
    r = post(client, push_payload("acme/m", [("refs/heads/main", A)]))
    assert r.status_code == 202 and r.json()["queued"] == 1
    r = post(client, push_payload("acme/m", [("refs/heads/main", A)]))  # a retry / replay
    assert r.status_code == 202 and r.json() == {**r.json(), "queued": 0, "duplicates": 1}
    jobs = client.get("/api/audits").json()["audits"]
    assert [(j["repo"], j["sha"], j["state"], j["deliveries"]) for j in jobs] == [("acme/m", A, "queued", 2)]
    assert client.get(f"/api/audits/{jobs[0]['id']}").json()["result"] is None
    assert client.get("/api/audits/999").status_code == 404
    assert client.get("/api/stats").json() == {"queued": 1}


@pytest.mark.parametrize("secret, status", [(None, 401), ("wrong", 403), (SECRET[:-1], 403), (SECRET + "x", 403),
                                            ("", 403), ("ünïcode", 403)])
def test_bad_secrets_are_refused_and_store_nothing(service, secret, status):
    client, store = service
    if secret == "ünïcode":
        r = client.post("/webhooks/hub", headers=[(b"X-Webhook-Secret", secret.encode())],
                        content=json.dumps(push_payload("acme/m", [("refs/heads/main", A)])))
    else:
        r = post(client, push_payload("acme/m", [("refs/heads/main", A)]), secret=secret)
    assert r.status_code == status
    assert store.jobs() == [] and store.deliveries() == []


def test_secret_in_query_when_configured(service):
    client, _ = service
    assert post(client, push_payload("acme/m", [("refs/heads/main", A)]), secret=None,
                params={"secret": SECRET}).status_code == 202
    assert post(client, push_payload("acme/m", [("refs/heads/main", A)]), secret=None,
                params={"secret": "nope"}).status_code == 403


def test_oversized_and_malformed_bodies(service):
    client, store = service
    big = push_payload("acme/m", [("refs/heads/main", A)])
    big["padding"] = "x" * 5000
    assert post(client, big).status_code == 413
    # no Content-Length (chunked): the cap holds while streaming
    r = client.post("/webhooks/hub", headers={"X-Webhook-Secret": SECRET},
                    content=iter([b'{"a": "' + b"x" * 3000, b"x" * 3000 + b'"}']))
    assert r.status_code == 413
    assert post(client, None, content="{not json").status_code == 400
    assert post(client, None, content="[1, 2]").status_code == 400
    assert store.jobs() == []


def test_ignored_events_are_acknowledged_and_recorded(service):
    client, store = service
    r = post(client, {"event": {"action": "create", "scope": "discussion.comment"},
                      "repo": {"type": "model", "name": "acme/m"}, "comment": {"author": {"id": "bot"}}})
    assert r.status_code == 202 and r.json()["status"] == "ignored"
    assert post(client, {"event": {"scope": "space.build"}}).status_code == 202
    assert store.jobs() == []
    assert [d.reason for d in store.deliveries()][-1] == "guard's own comment"


def test_dashboard_pages_render(service):
    client, store = service
    post(client, push_payload("acme/m", [("refs/heads/main", A)]))
    page = client.get("/")
    assert page.status_code == 200 and "acme/m" in page.text and "<script" not in page.text
    job_id = store.jobs()[0].id
    assert "No result yet" in client.get(f"/audits/{job_id}").text
    assert client.get("/audits/12345").status_code == 404
