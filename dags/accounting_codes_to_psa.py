"""
### Accounting's codes → the PSA: items, GL accounts and tax codes, daily

Daily at 04:30 company time (before the day's flows; the data interval is the day before).

1. `extract_codes` — accounting's items (service codes), GL accounts and tax codes, and every
   billing code of `accounting_mapping.yaml` judged against them: `active`, `renamed` (the item
   kept its accounting id under a new name) or `retired` (accounting no longer has it); the PSA's
   time approved in the last seven days tells which codes open work uses.
2. `check_codes` — a retired code that open work uses is an exception for finance now
   (`billing_code.item_retired`), before Friday's export would hold every entry on it.
3. `load_codes` — `psa.accounting_code` (by accounting id; ones no longer listed become inactive)
   and `psa.billing_code` in the PSA warehouse.
4. `update_psa` — the PSA's billing-code list gets each code's item, GL account and active flag
   (`PUT /api/v1/billing-codes/{code}`, idempotent); Kantata keeps no such list (skipped).
5. `audit_systems` — the cross-system data audit (`backbone audit`: client names, duplicate
   customers, unmapped codes, people without HR or accounting records) kept in
   `psa.audit_finding` for the Finance page's Data audit section.
6. `record_run` — the run record (always runs; fails the DAG run if a step failed).

Connections: the accounting system's (`quickbooks_default` or `xero_default`), the PSA's, the CRM's,
the HR system's (the audit reads all four, read-only), `psa_warehouse`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from backbone.schedules import dag_arguments
from backbone.settings import load_settings

FLOW = "accounting_codes_to_psa"
SETTINGS = load_settings()


@dag(
    doc_md=__doc__,
    tags=["accounting", "psa", "reference data"],
    **dag_arguments(
        FLOW, SETTINGS.company_timezone, retry_delay=timedelta(minutes=5), start=pendulum.datetime(2026, 1, 1, tz=SETTINGS.company_timezone)
    ),
)
def accounting_codes_to_psa() -> None:
    @task(multiple_outputs=False)
    def extract_codes(**context) -> dict[str, int]:
        from backbone.flows import accounting_codes
        from backbone.flows.runtime import open_flow_run
        from backbone.hooks.vendors import accounting_hook, psa_hook

        settings = load_settings()
        run, warehouse = open_flow_run(FLOW, settings.psa_warehouse_conn_id, context)
        return accounting_codes.extract_codes(
            accounting_hook(settings.accounting_conn_id), psa_hook(settings.psa_conn_id), warehouse, run, page_size=settings.psa_page_size
        )

    @task(multiple_outputs=False)
    def check_codes(extracted: dict[str, int], **context) -> dict[str, int]:
        from backbone.flows import accounting_codes
        from backbone.flows.runtime import run_ref
        from backbone.warehouse.db import engine_for

        settings = load_settings()
        return accounting_codes.check_codes(
            engine_for(settings.psa_warehouse_conn_id), run_ref(FLOW, context), chunk_size=settings.chunk_size
        )

    @task(multiple_outputs=False)
    def load_codes(checked: dict[str, int], **context) -> dict[str, int]:
        from backbone.flows import accounting_codes
        from backbone.flows.runtime import run_ref
        from backbone.warehouse.db import engine_for

        return accounting_codes.load_codes(engine_for(load_settings().psa_warehouse_conn_id), run_ref(FLOW, context))

    @task(multiple_outputs=False)
    def update_psa(loaded: dict[str, int], **context) -> dict[str, int]:
        from backbone.flows import accounting_codes
        from backbone.flows.runtime import run_ref
        from backbone.hooks.vendors import psa_hook
        from backbone.warehouse.db import engine_for

        settings = load_settings()
        return accounting_codes.update_psa(
            psa_hook(settings.psa_conn_id), engine_for(settings.psa_warehouse_conn_id), run_ref(FLOW, context)
        )

    @task(multiple_outputs=False)
    def audit_systems(updated: dict[str, int], **context) -> dict[str, int]:
        from backbone.flows import accounting_codes
        from backbone.flows.runtime import run_ref
        from backbone.warehouse.db import engine_for

        return accounting_codes.audit_systems(engine_for(load_settings().psa_warehouse_conn_id), run_ref(FLOW, context))

    @task(multiple_outputs=False, trigger_rule="all_done", retries=0)
    def record_run(**context) -> dict[str, object]:
        from backbone.flows.runtime import finish_flow_run

        return finish_flow_run(FLOW, load_settings().psa_warehouse_conn_id, last_task_id="audit_systems", context=context)

    audit_systems(update_psa(load_codes(check_codes(extract_codes())))) >> record_run()


accounting_codes_to_psa()
