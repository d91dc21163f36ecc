"""
### Milestones back: PSA project milestones → the CRM deal

Daily at 06:30 company time. `push_milestones` reads the milestones completed in the data
interval and sets the deal's project status (mapped in `crm_mapping.yaml`), last milestone and
billed-to-date (net posted invoicing from `acct.invoice`), patching a deal only where a value
differs, so a rerun writes nothing. `record_run` closes the run record (always runs).

Connections: the PSA's (`psa_default`, or `kantata_default` when `BACKBONE_PSA_CONN_ID` says so), the CRM's
(`hubspot_default`, or `salesforce_default` when `BACKBONE_CRM_CONN_ID` says so), `accounting_warehouse`,
`psa_warehouse`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task

from backbone.schedules import dag_arguments
from backbone.settings import load_settings

FLOW = "psa_milestones_to_crm"
SETTINGS = load_settings()


@dag(
    doc_md=__doc__,
    tags=["psa", "crm", "hubspot"],
    **dag_arguments(FLOW, SETTINGS.company_timezone, retry_delay=timedelta(minutes=5)),
)
def psa_milestones_to_crm() -> None:
    @task(multiple_outputs=False)
    def push_milestones(**context) -> dict[str, int]:
        from backbone.flows import milestones
        from backbone.flows.runtime import open_flow_run
        from backbone.hooks.vendors import crm_hook, psa_hook
        from backbone.pilot import is_pilot
        from backbone.warehouse.db import engine_for

        settings = load_settings()
        run, warehouse = open_flow_run(FLOW, settings.psa_warehouse_conn_id, context)
        return milestones.push_milestones(
            psa_hook(settings.psa_conn_id),
            crm_hook(settings.crm_conn_id),
            engine_for(settings.accounting_warehouse_conn_id),
            warehouse,
            run,
            pilot=is_pilot(FLOW),
        )

    @task(multiple_outputs=False, trigger_rule="all_done", retries=0)
    def record_run(**context) -> dict[str, object]:
        from backbone.flows.runtime import finish_flow_run

        return finish_flow_run(FLOW, load_settings().psa_warehouse_conn_id, last_task_id="push_milestones", context=context)

    push_milestones() >> record_run()


psa_milestones_to_crm()
