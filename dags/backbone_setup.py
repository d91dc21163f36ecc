"""
### Set up the warehouses of a new deployment: databases, migrations, the finance login

Runs by itself once, when a deployment first sees it (`@once`, created unpaused): that is the init
step where no init container runs (`astro dev start`, Astro, a managed Airflow). It is repeatable:
trigger it again after an upgrade to apply new migrations, or after adding the Connections if they
were missing the first time. Compose's `airflow-init` runs the same (`python -m backbone.warehouse setup`).

1. `set_up_warehouses` — creates `psa_warehouse` and `accounting_warehouse` when missing (the owner
   Connection's login needs `CREATEDB`), migrates both, creates the read-only login the finance
   Connections name as a member of `backbone_finance_reader`.

Connections: `psa_warehouse`, `accounting_warehouse`, `finance_psa_warehouse`, `finance_accounting_warehouse`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, task


@dag(
    dag_id="backbone_setup",
    schedule="@once",
    is_paused_upon_creation=False,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["ops", "setup"],
    doc_md=__doc__,
    default_args={"owner": "data-engineering", "retries": 2, "retry_delay": timedelta(minutes=1)},
)
def backbone_setup() -> None:
    @task(multiple_outputs=False)
    def set_up_warehouses() -> None:
        from backbone.warehouse.__main__ import setup

        setup()

    set_up_warehouses()


backbone_setup()
