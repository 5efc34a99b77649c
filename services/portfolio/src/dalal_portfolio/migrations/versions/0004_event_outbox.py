"""the shared durable outbox (dalal_shared.outbox): whole envelopes with fixed ids

The old `portfolio_outbox` kept each event's payload and wrapped it in a new envelope (a new
id) at every publish. Its unpublished rows move to the new table as envelopes (their ids fixed
now); published rows were history only and are dropped with the table.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

import json
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    new = op.create_table(
        "portfolio_event_outbox",
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
    conn = op.get_bind()
    old = sa.table(
        "portfolio_outbox",
        sa.column("id", sa.Integer),
        sa.column("stream", sa.String),
        sa.column("type", sa.String),
        sa.column("payload", sa.Text),
        sa.column("corr", sa.String),
        sa.column("published_at", sa.DateTime),
    )
    rows = conn.execute(
        sa.select(old.c.stream, old.c.type, old.c.payload, old.c.corr)
        .where(old.c.published_at.is_(None))
        .order_by(old.c.id)
    ).all()
    now = datetime.now(UTC)
    moved = []
    for r in rows:
        envelope_id = uuid.uuid4().hex
        fields = {
            "type": r.type,
            "v": "1",
            "id": envelope_id,
            "ts": now.isoformat(),
            "source": "portfolio",
            "corr": r.corr or envelope_id,
            "data": r.payload,
        }
        moved.append(
            {
                "envelope_id": envelope_id,
                "stream": r.stream,
                "fields": json.dumps(fields, separators=(",", ":")),
                "created_at": now,
            }
        )
    if moved:
        op.bulk_insert(new, moved)
    op.drop_table("portfolio_outbox")


def downgrade() -> None:
    op.drop_table("portfolio_event_outbox")
    op.create_table(
        "portfolio_outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("stream", sa.String(100), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("corr", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), index=True),
    )
