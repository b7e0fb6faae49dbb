"""Running the service's ASGI app on loopback inside a test (a real uvicorn server, in a thread)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


@contextlib.contextmanager
def serving(app):
    """Yield the base URL of `app` served by uvicorn on 127.0.0.1 (a free port)."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, access_log=False, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


SECRET = "s3cret-webhook-value-0123"


def push_payload(repo: str, updates: list[tuple[str, str | None]], *, head: str | None = None,
                 repo_type: str = "model", scope: str = "repo.content") -> dict:
    payload = {"event": {"action": "update", "scope": scope},
               "repo": {"type": repo_type, "name": repo, "id": "x", "private": False, "owner": {"id": "o"}},
               "updatedRefs": [{"ref": ref, "oldSha": None, "newSha": sha} for ref, sha in updates],
               "webhook": {"id": "w", "version": 3}}
    if head:
        payload["repo"]["headSha"] = head
    return payload
