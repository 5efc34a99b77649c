"""the journal's outbox on the shared schema (dalal_shared.outbox): the envelope id and the
time each row was written, for the outbox metrics and one relay for every service

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    old = sa.table(
        "broker_outbox",
        sa.column("seq", sa.Integer),
        sa.column("stream", sa.String),
        sa.column("fields", sa.Text),
    )
    rows = conn.execute(sa.select(old.c.seq, old.c.stream, old.c.fields).order_by(old.c.seq)).all()
    op.drop_table("broker_outbox")
    new = op.create_table(
        "broker_outbox",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("envelope_id", sa.String(64), nullable=False, unique=True),
        sa.Column("stream", sa.String(200), nullable=False),
        sa.Column("fields", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    now = datetime.now(UTC)
    if rows:  # unpublished events keep their envelope (and id) and their order
        op.bulk_insert(
            new,
            [
                {
                    "envelope_id": json.loads(r.fields)["id"],
                    "stream": r.stream,
                    "fields": r.fields,
                    "created_at": now,
                }
                for r in rows
            ],
        )


def downgrade() -> None:
    op.drop_table("broker_outbox")
    op.create_table(
        "broker_outbox",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("stream", sa.String(64), nullable=False),
        sa.Column("fields", sa.Text, nullable=False),
    )
