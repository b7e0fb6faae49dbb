"""The ASGI app (FastAPI): the webhook, a read API and the dashboard.

`POST /webhooks/hub` authenticates first (constant-time comparison of `X-Webhook-Secret`, or of
`?secret=` when configured), then reads at most `max_body_bytes`, parses leniently, stores the jobs and
the delivery in one transaction and answers 202. The audit runs later, in a worker. Answers: 202
accepted or ignored (the Hub retries and eventually suspends webhooks that get non-2xx), 401 no secret,
403 wrong secret, 413 too large, 400 not a JSON object. Query strings never reach a log line.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import queue
import threading

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.routing import request_response

from guard.errors import InputError
from guard.service.config import ServiceConfig
from guard.service.store import JobStore
from guard.service.webhook import decide

log = logging.getLogger("guard.serve")
WEBHOOK_PATH = "/webhooks/hub"


def job_summary(job) -> dict:
    return {"id": job.id, "repo": job.repo, "ref": job.ref, "sha": job.sha, "state": job.state,
            "verdict": job.verdict, "attempts": job.attempts, "deliveries": job.deliveries,
            "created_at": job.created_at, "finished_at": job.finished_at, "report": job.report_state,
            "discussion": job.report_discussion, "error": job.last_error}


class DeliveryWriter:
    """One thread that stores deliveries, several per transaction when they arrive together (group commit).
    The event loop never waits on the database; a request is answered once its transaction committed."""

    MAX_BATCH = 64

    def __init__(self, store: JobStore) -> None:
        self._store = store
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="guard-delivery-writer", daemon=True)
        self._thread.start()

    async def store(self, keys, delivery: dict) -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((keys, delivery, loop, future))
        return await future

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                results = self._store.enqueue_many([(keys, delivery) for keys, delivery, _, _ in batch])
            except Exception as exc:  # noqa: BLE001 - every request of the batch answers 503; the Hub retries
                for _, _, loop, future in batch:
                    loop.call_soon_threadsafe(_settle, future, None, exc)
                continue
            for (_, _, loop, future), result in zip(batch, results):
                loop.call_soon_threadsafe(_settle, future, result, None)


def _settle(future: asyncio.Future, result, exc) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


def create_app(config: ServiceConfig, store: JobStore, *, lifespan=None) -> FastAPI:
    app = FastAPI(title="guard serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    secret = config.webhook_secret.get_secret_value().encode()
    cap = config.max_body_bytes
    writer = DeliveryWriter(store)

    def refuse(status: int, reason: str) -> JSONResponse:
        log.info("webhook refused: %d %s", status, reason)
        return JSONResponse({"error": reason}, status_code=status)

    async def webhook(request: Request):
        supplied = request.headers.get("x-webhook-secret")
        if supplied is None and config.secret_in_query:
            supplied = request.query_params.get("secret")
        if supplied is None:
            return refuse(401, "missing webhook secret")
        if not hmac.compare_digest(supplied.encode("latin-1", "replace"), secret):
            return refuse(403, "wrong webhook secret")
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > cap):
            return refuse(413, f"body over {cap} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > cap:
                return refuse(413, f"body over {cap} bytes")
        try:
            decision = decide(json.loads(body), bot_user_ids=config.bot_user_ids, ignore_refs=config.ignore_refs)
        except (ValueError, InputError):
            return refuse(400, "body is not a JSON object")
        delivery = {"scope": decision.scope, "repo": decision.repo, "status": decision.status,
                    "reason": decision.reason}
        try:
            new, dup = await writer.store(decision.keys, delivery)
        except Exception:  # noqa: BLE001 - not stored: say so, so that the Hub delivers again
            log.exception("webhook: storing the delivery failed")
            return refuse(503, "not stored; retry")
        log.info("webhook %s %s: %s", decision.status, decision.repo, decision.reason)
        return JSONResponse({"status": decision.status, "reason": decision.reason, "queued": new,
                             "duplicates": dup}, status_code=202)

    # The hot path is a plain Starlette endpoint dispatched ahead of FastAPI's routing and middleware stack.
    app.state.webhook = request_response(webhook)

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    @app.get("/api/audits")
    def list_audits(limit: int = 100, offset: int = 0, repo: str | None = None, state: str | None = None):
        limit = max(1, min(limit, 1000))
        return {"audits": [job_summary(j) for j in store.jobs(limit=limit, offset=max(0, offset), repo=repo,
                                                                state=state)]}

    @app.get("/api/audits/{job_id}")
    def get_audit(job_id: int):
        job = store.job(job_id)
        if job is None:
            raise HTTPException(404, "no such audit")
        return {**job_summary(job), "result": json.loads(job.result) if job.result else None}

    @app.get("/api/stats")
    def stats():
        return store.counts()

    from guard.service.dashboard import add_dashboard

    add_dashboard(app, store)
    return WebhookFirst(app)


class WebhookFirst:
    """ASGI: POST /webhooks/hub straight to the webhook endpoint; everything else (and lifespan) to FastAPI."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._webhook = app.state.webhook

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] == WEBHOOK_PATH:
            if scope["method"] != "POST":
                await JSONResponse({"error": "POST only"}, status_code=405, headers={"Allow": "POST"})(
                    scope, receive, send)
                return
            await self._webhook(scope, receive, send)
            return
        await self.app(scope, receive, send)
