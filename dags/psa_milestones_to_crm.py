"""
### Milestones back: PSA project milestones → the CRM deal

Daily at 06:30 company time. `push_milestones` reads the milestones completed in the data
interval and sets the deal's project status (mapped in `crm_mapping.yaml`), last milestone and
billed-to-date (net posted invoicing from `acct.invoice`), patching a deal only where a value
differs, so a rerun writes nothing. `record_run` closes the run record (always runs).

Connections: `psa_default`, the CRM's (`hubspot_default`, or `salesforce_default` when `BACKBONE_CRM_CONN_ID` says so),
`accounting_warehouse`, `psa_warehouse`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from backbone.schedules import timetable
from backbone.settings import load_settings

FLOW = "psa_milestones_to_crm"
SETTINGS = load_settings()


@dag(
    dag_id=FLOW,
    doc_md=__doc__,
    schedule=timetable(FLOW, SETTINGS.company_timezone),
    start_date=pendulum.datetime(2026, 1, 1, tz=SETTINGS.company_timezone),
    catchup=False,
    max_active_runs=1,
    tags=["psa", "crm", "hubspot"],
    default_args={"owner": "data-engineering", "retries": 3, "retry_delay": timedelta(minutes=5), "retry_exponential_backoff": True},
)
def psa_milestones_to_crm() -> None:
    @task
    def push_milestones(**context) -> dict[str, int]:
        from backbone.flows import milestones
        from backbone.flows.runtime import open_flow_run
        from backbone.hooks.psa import PsaHook
        from backbone.hooks.vendors import crm_hook
        from backbone.warehouse.db import engine_for

        settings = load_settings()
        run, warehouse = open_flow_run(FLOW, settings.psa_warehouse_conn_id, context)
        return milestones.push_milestones(
            PsaHook(settings.psa_conn_id), crm_hook(settings.crm_conn_id), engine_for(settings.accounting_warehouse_conn_id), warehouse, run
        )

    @task(trigger_rule="all_done", retries=0)
    def record_run(**context) -> dict[str, object]:
        from backbone.flows.runtime import finish_flow_run

        return finish_flow_run(FLOW, load_settings().psa_warehouse_conn_id, last_task_id="push_milestones", context=context)

    push_milestones() >> record_run()


psa_milestones_to_crm()
