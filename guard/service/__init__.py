"""`guard serve`: the Hub webhook audit service (the rightmost stage: service imports every stage to its left).

    webhook.py    payload -> the (repo, ref, sha) jobs it asks for, or why it is ignored
    app.py        the ASGI app: POST /webhooks/hub (secret, size cap, 202 at once), read API, dashboard
    db.py         SQLAlchemy 2 schema and engines (SQLite WAL by default, PostgreSQL by URL); Alembic
    store.py      durable jobs: idempotent on (repo, ref, sha), leases, retries with backoff, re-queue
    audit.py      the audit of one downloaded revision (artifacts, signature bound to the repo, MergeLock,
                  probes when present) and its Markdown summary
    sandbox.py    one audit job (download + audit) in a child process under rlimits and a wall clock
    executor.py   where sandboxed jobs run: in this process's pool, or as Ray tasks on a cluster
    worker.py     claim -> run -> record -> report back to the Hub -> complete
    dashboard.py  server-rendered HTML pages with inline SVG plots
"""
