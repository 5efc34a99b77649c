"""journal: the current terms of a modified order (the original command stays as sent)

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
    with op.batch_alter_table("broker_orders") as batch:
        batch.add_column(sa.Column("terms", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("broker_orders") as batch:
        batch.drop_column("terms")
