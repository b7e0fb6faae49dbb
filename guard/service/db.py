"""The service's schema (SQLAlchemy 2) and engines: SQLite in WAL mode by default, PostgreSQL by URL.

Times are epoch seconds (float), the same on both databases. The schema is created and upgraded by
Alembic (migrations/), never by `create_all`, so a deployed database and a test database are the
same schema. SQLite transactions begin IMMEDIATE: a claim's read-then-write never meets a writer that
slipped in between (no SQLITE_BUSY upgrades); WAL checkpoints run beside the writers, not inside commits.
"""

from __future__ import annotations

import pathlib

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from guard.errors import InputError

MIGRATIONS = pathlib.Path(__file__).with_name("migrations")


class Base(DeclarativeBase):
    pass


class Job(Base):
    """One audit of (repo, ref, sha). `state`: queued -> running -> done | failed."""

    __tablename__ = "jobs"
    __table_args__ = (sa.UniqueConstraint("repo", "ref", "sha", name="uq_jobs_repo_ref_sha"),
                      sa.Index("ix_jobs_state_due", "state", "next_attempt_at"))

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    repo: Mapped[str] = mapped_column(sa.String(200))
    ref: Mapped[str] = mapped_column(sa.String(255))
    sha: Mapped[str] = mapped_column(sa.String(40))
    state: Mapped[str] = mapped_column(sa.String(16), default="queued")
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    deliveries: Mapped[int] = mapped_column(sa.Integer, default=1)  # how often the Hub asked for this key
    next_attempt_at: Mapped[float] = mapped_column(sa.Float)
    lease_owner: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    lease_token: Mapped[str | None] = mapped_column(sa.String(36), nullable=True)
    lease_expires: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    created_at: Mapped[float] = mapped_column(sa.Float)
    updated_at: Mapped[float] = mapped_column(sa.Float)
    finished_at: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    last_error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    verdict: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)  # pass | fail | error
    result: Mapped[str | None] = mapped_column(sa.Text, nullable=True)  # the audit report, JSON
    audited_at: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    audit_runs: Mapped[int] = mapped_column(sa.Integer, default=0)  # results recorded (exactly one when done)
    report_state: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)  # posted | exists | off | failed
    report_discussion: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)


class Delivery(Base):
    """One authenticated webhook delivery and what guard did with it."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    received_at: Mapped[float] = mapped_column(sa.Float, index=True)
    scope: Mapped[str] = mapped_column(sa.String(64))
    repo: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    status: Mapped[str] = mapped_column(sa.String(16))  # accepted | ignored
    reason: Mapped[str] = mapped_column(sa.Text)
    jobs_created: Mapped[int] = mapped_column(sa.Integer, default=0)
    jobs_duplicate: Mapped[int] = mapped_column(sa.Integer, default=0)


def normalize_url(url: str) -> str:
    """A bare path means a SQLite file; postgresql:// means psycopg 3."""
    if "://" not in url:
        return f"sqlite:///{pathlib.Path(url).expanduser().resolve()}"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> sa.Engine:
    url = normalize_url(url)
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise InputError(f"not a database URL: {url[:200]!r}", rule="serve-database") from None
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 60,
                                                     "isolation_level": None}, pool_size=8, max_overflow=16)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes; WAL fsyncs at checkpoints
            cur.execute("PRAGMA busy_timeout=60000")
            # No checkpoint inside a commit (it would fsync the database while a webhook waits for its
            # answer): JobStore checkpoints from a background thread instead.
            cur.execute("PRAGMA wal_autocheckpoint=0")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if parsed.get_backend_name() == "postgresql":
        return sa.create_engine(url, pool_size=8, max_overflow=16, pool_pre_ping=True)
    raise InputError(f"unsupported database {parsed.get_backend_name()!r}: use a SQLite path or a postgresql:// URL",
                     rule="serve-database")


def upgrade(engine: sa.Engine) -> None:
    """Bring the schema to the newest migration (idempotent; safe to call from several processes)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":  # several processes may start at once
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7215001)")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
