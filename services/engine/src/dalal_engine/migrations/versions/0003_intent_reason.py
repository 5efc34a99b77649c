"""order intents: why one was rejected or cancelled

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("engine_intents") as batch:
        batch.add_column(sa.Column("reason", sa.String(200)))


def downgrade() -> None:
    with op.batch_alter_table("engine_intents") as batch:
        batch.drop_column("reason")
