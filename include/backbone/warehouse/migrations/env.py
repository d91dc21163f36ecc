"""Alembic environment shared by both warehouses (see ``backbone.warehouse.db.migrate``).

``target_metadata`` is the code's own table definitions (``backbone.warehouse.tables``), limited to
the schemas of the warehouse being migrated, so ``alembic check`` (and ``db.schema_drift``) tell
when the tables the code reads and the migrations disagree.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from backbone.warehouse.tables import WAREHOUSE_SCHEMAS, metadata

url = context.config.get_main_option("sqlalchemy.url")
schemas = WAREHOUSE_SCHEMAS[context.config.get_main_option("warehouse") or "psa"]


def include_name(name: str | None, type_: str, parent_names: dict[str, str | None]) -> bool:
    return name in schemas if type_ == "schema" else True


def include_object(obj, name, type_, reflected, compare_to) -> bool:  # noqa: ANN001 - Alembic's hook
    return obj.schema in schemas if type_ == "table" else True


engine = create_engine(url)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        version_table="alembic_version",
        transactional_ddl=True,
        target_metadata=metadata,
        include_schemas=True,
        include_name=include_name,
        include_object=include_object,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
