"""backtest jobs: request, status, progress, summary

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "engine_backtests",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("bars_done", sa.Integer, nullable=False),
        sa.Column("bars_total", sa.Integer, nullable=False),
        sa.Column("eta_seconds", sa.Float),
        sa.Column("summary", sa.Text),
        sa.Column("error", sa.String(500)),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("started_at", sa.String(40)),
        sa.Column("finished_at", sa.String(40)),
    )


def downgrade() -> None:
    op.drop_table("engine_backtests")
