"""The migrations and the code's table definitions (``backbone.warehouse.tables``) agree."""

from __future__ import annotations

import pytest

from tests.conftest import warehouse_url


@pytest.mark.db
@pytest.mark.parametrize("warehouse", ["psa", "accounting"])
def test_the_migrations_make_exactly_the_tables_the_code_declares(warehouse):
    """``alembic check`` on the migrated warehouse: no table, column, type or index differs."""
    from backbone.warehouse.db import check_schema

    check_schema(warehouse_url(f"{warehouse}_warehouse"), warehouse)
