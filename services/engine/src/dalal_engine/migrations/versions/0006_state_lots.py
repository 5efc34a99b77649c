"""strategy state: the open FIFO lots of the shared accounting kernel

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a row saved before holds one position at its average price: read as one lot
    with op.batch_alter_table("engine_strategy_state") as batch:
        batch.add_column(sa.Column("lots", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("engine_strategy_state") as batch:
        batch.drop_column("lots")
