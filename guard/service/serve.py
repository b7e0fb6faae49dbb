"""Starting the service: the web app, the worker pool, or both, on one database.

    role "all"     webhook + read API + dashboard, and `workers` in-process worker threads (the default)
    role "web"     webhook, read API, dashboard only
    role "worker"  worker threads only, no HTTP: run it on other machines against the same PostgreSQL
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import signal
import threading

from guard.errors import InputError
from guard.service.config import ServiceConfig

ROLES = ("all", "web", "worker")
log = logging.getLogger("guard.serve")


def load_config(path: str | os.PathLike | None, **overrides) -> ServiceConfig:
    """The YAML config file (if any), then the non-None overrides, then the environment: the webhook secret
    comes from GUARD_WEBHOOK_SECRET (never a flag), the Hub token from HF_TOKEN, the endpoint from HF_ENDPOINT."""
    import yaml
    from pydantic import ValidationError

    data: dict = {}
    base = pathlib.Path(".")
    if path is not None:
        path = pathlib.Path(path)
        base = path.parent
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise InputError(f"cannot read the config: {' '.join(str(exc).split())[:300]}", path=path,
                             rule="serve-config") from None
        if not isinstance(data, dict):
            raise InputError("the config must be a YAML mapping", path=path, rule="serve-config")
    data.update({k: v for k, v in overrides.items() if v is not None})
    trust_file = data.pop("trust_file", None)
    if trust_file is not None:
        from guard.service.trust import load_trust

        data["trust"] = load_trust(base / trust_file)
    if "webhook_secret" not in data:
        data["webhook_secret"] = os.environ.get("GUARD_WEBHOOK_SECRET", "")
    try:
        config = ServiceConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise InputError(f"{where}: {first['msg']}", path=path, rule="serve-config") from None
    return config


def require_secret(config: ServiceConfig) -> None:
    secret = config.webhook_secret.get_secret_value()
    if len(secret) < 16:
        raise InputError("set GUARD_WEBHOOK_SECRET to the webhook's secret (16 characters or more): the webhook "
                         "refuses every delivery without one", rule="serve-secret")


def run(config: ServiceConfig, *, role: str = "all", ready: threading.Event | None = None) -> None:
    from guard.service.executor import make_executor
    from guard.service.store import JobStore, RetryPolicy
    from guard.service.worker import WorkerPool

    if role not in ROLES:
        raise InputError(f"unknown role {role!r} (choose {', '.join(ROLES)})", rule="serve-role")
    if role != "worker":
        require_secret(config)
    store = JobStore(config.database, retry=RetryPolicy(max_attempts=config.max_attempts,
                                                         backoff_base_s=config.backoff_base_s,
                                                         backoff_max_s=config.backoff_max_s))
    n_workers = 0 if role == "web" else config.workers
    executor = make_executor(config) if n_workers else None
    pool = WorkerPool(store=store, executor=executor, config=config, n=n_workers) if n_workers else None
    try:
        if role == "worker":
            _run_workers(pool, ready)
        else:
            _run_web(config, store, pool, ready)
    finally:
        if executor is not None:
            executor.close()
        store.close()


def _run_workers(pool, ready: threading.Event | None) -> None:
    if pool is None:
        raise InputError("role worker with 0 workers has nothing to do", rule="serve-role")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    pool.start()
    log.info("guard serve: %d worker(s) running", len(pool.workers))
    if ready is not None:
        ready.set()
    stop.wait()
    pool.close()


def _run_web(config: ServiceConfig, store, pool, ready: threading.Event | None) -> None:
    import uvicorn

    from guard.service.app import create_app

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if pool is not None:
            pool.start()
        if ready is not None:
            ready.set()
        try:
            yield
        finally:
            if pool is not None:
                pool.close()

    app = create_app(config, store, lifespan=lifespan)
    # access_log off: the Hub may put the secret in the query string, and a query string must never be logged
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, access_log=False,
                                           log_level="info", timeout_graceful_shutdown=10))
    server.run()
