"""The fake Hub against its reference client, huggingface_hub, and its webhook deliveries."""

import http.server
import json
import threading

import pytest

from guard.testing.fake_hub import FakeHub


@pytest.fixture
def hub(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with FakeHub() as fake:
        yield fake


class _Receiver:
    def __init__(self):
        self.received: list[tuple[dict, str | None]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((json.loads(body), self.headers.get("X-Webhook-Secret")))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/hub"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_huggingface_hub_client_reads_what_was_pushed(hub, tmp_path):
    from huggingface_hub import HfApi, hf_hub_download

    sha = hub.push("acme/model", {"config.json": b"{}", "weights/model.safetensors": b"\0" * 64})
    api = HfApi(endpoint=hub.endpoint, token=False)
    assert api.model_info("acme/model").sha == sha
    assert api.model_info("acme/model", revision=sha).sha == sha
    listing = {f.path: f for f in api.list_repo_tree("acme/model", revision=sha, recursive=True)}
    assert set(listing) == {"config.json", "weights", "weights/model.safetensors"}
    assert listing["weights/model.safetensors"].lfs.size == 64
    assert [f.path for f in api.get_paths_info("acme/model", ["config.json"], revision=sha)] == ["config.json"]
    path = hf_hub_download("acme/model", "weights/model.safetensors", revision=sha, cache_dir=tmp_path,
                           endpoint=hub.endpoint)
    assert open(path, "rb").read() == b"\0" * 64


def test_writes_need_a_known_token(hub):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    hub.push("acme/model", {"config.json": b"{}"})
    with pytest.raises(HfHubHTTPError):
        HfApi(endpoint=hub.endpoint, token="hf_unknown").create_discussion("acme/model", "hi")
    d = HfApi(endpoint=hub.endpoint, token="hf_fake_alice_token").create_discussion("acme/model", "hi",
                                                                                      description="first")
    assert d.author == "alice" and [e.content for e in d.events] == ["first"]


def test_webhooks_for_pushes_prs_and_comments(hub):
    from huggingface_hub import HfApi

    receiver = _Receiver()
    try:
        hub.add_webhook(receiver.url, secret="s3cret")
        first = hub.push("acme/model", {"config.json": b"{}"})
        hub.wait_for_deliveries()
        num, pr_sha = hub.open_pull_request("acme/model", {"config.json": b'{"a": 1}'})
        hub.wait_for_deliveries()
        HfApi(endpoint=hub.endpoint, token="hf_fake_guard_token").comment_discussion("acme/model", num, "audit")
        hub.wait_for_deliveries()
    finally:
        receiver.close()
    payloads = [p for p, _ in receiver.received]
    assert {secret for _, secret in receiver.received} == {"s3cret"}
    push, pr, comment = payloads
    assert push["event"] == {"action": "update", "scope": "repo.content"}
    assert push["updatedRefs"] == [{"ref": "refs/heads/main", "oldSha": None, "newSha": first}]
    assert push["repo"]["headSha"] == first and push["webhook"]["version"] == 3
    assert pr["updatedRefs"] == [{"ref": f"refs/pr/{num}", "oldSha": None, "newSha": pr_sha}]
    assert pr["repo"]["headSha"] == first  # headSha is main's head, not the PR's
    assert comment["event"]["scope"] == "discussion.comment"
    assert comment["comment"]["author"]["id"] == FakeHub.user_id("guard-bot")
    assert comment["discussion"]["num"] == num
