"""The ASGI app (FastAPI): the webhook, a read API and the dashboard.

`POST /webhooks/hub` authenticates first (constant-time comparison of `X-Webhook-Secret`, or of
`?secret=` when configured), then reads at most `max_body_bytes`, parses leniently, stores the jobs and
the delivery in one transaction and answers 202. The audit runs later, in a worker. Answers: 202
accepted or ignored (the Hub retries and eventually suspends webhooks that get non-2xx), 401 no secret,
403 wrong secret, 413 too large, 400 not a JSON object. Query strings never reach a log line.
"""

from __future__ import annotations

import hmac
import json
import logging

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from guard.errors import InputError
from guard.service.config import ServiceConfig
from guard.service.store import JobStore
from guard.service.webhook import decide

log = logging.getLogger("guard.serve")


def job_summary(job) -> dict:
    return {"id": job.id, "repo": job.repo, "ref": job.ref, "sha": job.sha, "state": job.state,
            "verdict": job.verdict, "attempts": job.attempts, "deliveries": job.deliveries,
            "created_at": job.created_at, "finished_at": job.finished_at, "report": job.report_state,
            "discussion": job.report_discussion, "error": job.last_error}


def create_app(config: ServiceConfig, store: JobStore, *, lifespan=None) -> FastAPI:
    app = FastAPI(title="guard serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    secret = config.webhook_secret.get_secret_value().encode()
    cap = config.max_body_bytes

    def refuse(status: int, reason: str) -> JSONResponse:
        log.info("webhook refused: %d %s", status, reason)
        return JSONResponse({"error": reason}, status_code=status)

    @app.post("/webhooks/hub")
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
        if decision.keys:
            new, dup = await run_in_threadpool(store.enqueue, decision.keys, delivery=delivery)
        else:
            await run_in_threadpool(store.record_delivery, **delivery)
            new = dup = 0
        log.info("webhook %s %s: %s", decision.status, decision.repo, decision.reason)
        return JSONResponse({"status": decision.status, "reason": decision.reason, "queued": new,
                             "duplicates": dup}, status_code=202)

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
    return app
