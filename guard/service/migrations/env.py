"""Alembic environment: guard passes the connection in (guard.service.db.upgrade); no alembic.ini."""

from alembic import context

from guard.service.db import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through guard.service.db.upgrade(engine)")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
