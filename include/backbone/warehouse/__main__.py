"""``python -m backbone.warehouse migrate`` — bring both warehouses to their newest schema.

Reads the warehouse Connections the settings name (``BACKBONE_PSA_WAREHOUSE_CONN_ID``,
``BACKBONE_ACCOUNTING_WAREHOUSE_CONN_ID``; by default ``psa_warehouse`` and
``accounting_warehouse``) through Airflow, so it runs wherever Airflow's Connections are set up:
a deployment's init container, ``astro dev``, or a shell with ``AIRFLOW_CONN_*`` variables.
``check`` reports drift between the migrated warehouses and ``backbone.warehouse.tables``.
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
    parser.add_argument("command", choices=["migrate", "check"])
    args = parser.parse_args(argv)
    settings = load_settings()
    for warehouse, conn_id in (("psa", settings.psa_warehouse_conn_id), ("accounting", settings.accounting_warehouse_conn_id)):
        url = url_from_connection(conn_id)
        if args.command == "migrate":
            migrate(url, warehouse)
            print(f"{warehouse} warehouse ({conn_id}) migrated")
        else:
            check_schema(url, warehouse)
            print(f"{warehouse} warehouse ({conn_id}) matches the code's tables")
    return 0


if __name__ == "__main__":
    sys.exit(main())
