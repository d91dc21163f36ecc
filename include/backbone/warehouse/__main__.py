"""``python -m backbone.warehouse migrate`` — bring both warehouses to their newest schema.

Reads the warehouse Connections the settings name (``BACKBONE_PSA_WAREHOUSE_CONN_ID``,
``BACKBONE_ACCOUNTING_WAREHOUSE_CONN_ID``; by default ``psa_warehouse`` and
``accounting_warehouse``) through Airflow, so it runs wherever Airflow's Connections are set up:
a deployment's init container, ``astro dev``, or a shell with ``AIRFLOW_CONN_*`` variables.
``check`` reports drift between the migrated warehouses and ``backbone.warehouse.tables``.
``finance-login`` creates (or updates) the read-only login the finance Connections
(``finance_psa_warehouse``, ``finance_accounting_warehouse``) name, as a member of the role
``backbone_finance_reader`` the migrations made, on each warehouse, through its owner Connection.
``setup`` does everything a new deployment needs, in order and repeatably: creates the warehouse
databases that do not exist yet (the owner Connection's login needs ``CREATEDB``), migrates them
and creates the finance login. Compose's ``airflow-init`` runs it; on Astro, trigger the
``backbone_setup`` DAG once.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from backbone.settings import load_settings
    from backbone.warehouse.db import check_schema, migrate, url_from_connection

    parser = argparse.ArgumentParser(
        prog="python -m backbone.warehouse", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["migrate", "check", "finance-login", "setup"])
    args = parser.parse_args(argv)
    if args.command == "setup":
        setup()
        return 0
    settings = load_settings()
    for warehouse, conn_id in (("psa", settings.psa_warehouse_conn_id), ("accounting", settings.accounting_warehouse_conn_id)):
        url = url_from_connection(conn_id)
        if args.command == "finance-login":
            from airflow.sdk import BaseHook

            from backbone.warehouse.db import ensure_login
            from backbone.warehouse.migrations.ops_ledger import FINANCE_READER_ROLE

            reader = BaseHook.get_connection(settings.finance_conn_ids[warehouse])
            ensure_login(url, str(reader.login), str(reader.password), FINANCE_READER_ROLE)
            print(f"{warehouse} warehouse: login {reader.login!r} reads as {FINANCE_READER_ROLE}")
        elif args.command == "migrate":
            migrate(url, warehouse)
            print(f"{warehouse} warehouse ({conn_id}) migrated")
        else:
            check_schema(url, warehouse)
            print(f"{warehouse} warehouse ({conn_id}) matches the code's tables")
    return 0


def setup() -> None:
    """Databases, migrations, finance login: a new deployment's warehouses, ready (repeatable)."""
    from backbone.settings import load_settings
    from backbone.warehouse.db import ensure_database, url_from_connection

    settings = load_settings()
    for warehouse, conn_id in (("psa", settings.psa_warehouse_conn_id), ("accounting", settings.accounting_warehouse_conn_id)):
        created = ensure_database(url_from_connection(conn_id))
        print(f"{warehouse} warehouse ({conn_id}): database {'created' if created else 'exists'}")
    main(["migrate"])
    main(["finance-login"])


if __name__ == "__main__":
    sys.exit(main())
