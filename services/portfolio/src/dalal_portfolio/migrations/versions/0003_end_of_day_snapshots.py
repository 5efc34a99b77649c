"""end-of-day equity snapshots: the session day they close, at most one per day

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("portfolio_equity_snapshots") as batch:
        batch.add_column(sa.Column("session_day", sa.Date, nullable=True))
        batch.create_index("ux_portfolio_snapshots_session_day", ["session_day"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("portfolio_equity_snapshots") as batch:
        batch.drop_index("ux_portfolio_snapshots_session_day")
        batch.drop_column("session_day")
