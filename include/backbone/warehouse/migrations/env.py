"""Alembic environment shared by both warehouses (see ``backbone.warehouse.db.migrate``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

url = context.config.get_main_option("sqlalchemy.url")
engine = create_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, version_table="alembic_version", transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
