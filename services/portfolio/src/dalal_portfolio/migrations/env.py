"""Alembic environment of the portfolio tables (run through dalal_shared.db.upgrade)."""

from alembic import context

from dalal_portfolio.store import metadata

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=config.attributes.get("version_table", "alembic_version_portfolio"),
    render_as_batch=True,  # SQLite needs batch mode to alter tables
)
with context.begin_transaction():
    context.run_migrations()
