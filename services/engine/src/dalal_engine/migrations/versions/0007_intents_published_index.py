"""intents: an index for the outbox's read of the unpublished ones

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # read after every step that ordered: without it, the whole table (every order ever made)
    op.create_index("ix_engine_intents_published", "engine_intents", ["published", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_engine_intents_published", table_name="engine_intents")
