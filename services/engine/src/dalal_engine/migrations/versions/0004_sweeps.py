"""parameter sweeps and their trials

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "engine_sweeps",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("trials_total", sa.Integer, nullable=False),
        sa.Column("best", sa.Text),
        sa.Column("error", sa.String(500)),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("finished_at", sa.String(40)),
    )
    op.create_table(
        "engine_sweep_trials",
        sa.Column("sweep_id", sa.String(40), primary_key=True),
        sa.Column("n", sa.Integer, primary_key=True),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("metrics", sa.Text),
        sa.Column("error", sa.String(500)),
        sa.Column("worker", sa.String(120)),
        sa.Column("seconds", sa.Float),
        sa.Column("started_at", sa.String(40)),
        sa.Column("finished_at", sa.String(40)),
    )


def downgrade() -> None:
    op.drop_table("engine_sweep_trials")
    op.drop_table("engine_sweeps")
