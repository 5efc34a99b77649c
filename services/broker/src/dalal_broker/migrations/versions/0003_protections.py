"""journal: protective GTTs (stop and target at the exchange) per exit order id

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

from dalal_shared.sqltypes import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "broker_protections",
        sa.Column("client_order_id", sa.String(20), primary_key=True),
        sa.Column("command", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("gtt_id", sa.BigInteger),
        sa.Column("broker_order_id", sa.String(64)),
        sa.Column("message", sa.Text),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_broker_protections_status", "broker_protections", ["status"])


def downgrade() -> None:
    op.drop_index("ix_broker_protections_status", "broker_protections")
    op.drop_table("broker_protections")
