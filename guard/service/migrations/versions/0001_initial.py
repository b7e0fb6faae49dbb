"""jobs and deliveries

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("repo", sa.String(200), nullable=False),
        sa.Column("ref", sa.String(255), nullable=False),
        sa.Column("sha", sa.String(40), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("deliveries", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_token", sa.String(36), nullable=True),
        sa.Column("lease_expires", sa.Float, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("verdict", sa.String(16), nullable=True),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("audited_at", sa.Float, nullable=True),
        sa.Column("audit_runs", sa.Integer, nullable=False),
        sa.Column("report_state", sa.String(16), nullable=True),
        sa.Column("report_discussion", sa.Integer, nullable=True),
        sa.UniqueConstraint("repo", "ref", "sha", name="uq_jobs_repo_ref_sha"),
    )
    op.create_index("ix_jobs_state_due", "jobs", ["state", "next_attempt_at"])
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("repo", sa.String(200), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("jobs_created", sa.Integer, nullable=False),
        sa.Column("jobs_duplicate", sa.Integer, nullable=False),
    )
    op.create_index("ix_deliveries_received_at", "deliveries", ["received_at"])


def downgrade() -> None:
    op.drop_table("deliveries")
    op.drop_table("jobs")
