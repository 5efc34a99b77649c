"""Alembic environment of the engine tables (run through dalal_shared.db.upgrade)."""

from alembic import context

from dalal_engine.store import metadata

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=config.attributes.get("version_table", "alembic_version_engine"),
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
