"""
### Closed-won deals → PSA projects

Every 30 minutes, deals that reached a **won** stage in the CRM (HubSpot: any pipeline, won stages
resolved through the pipelines endpoint; Salesforce: `IsWon` Opportunities) and were modified in the
run's data interval (plus a lookback for the CRM's search-index lag) become projects in the PSA:

1. `extract_deals` — search, associations, companies and contacts → staging; and a fresh snapshot
   of every open deal (stage, probability, amount) → `psa.pipeline_deal` for the pipeline mart.
2. `validate_deals` — Great Expectations suites generated from the data dictionary; failures go
   to `ops.quarantine` with their rule and reason.
3. `load_projects` — clients, contacts and projects upserted into the PSA warehouse in one
   transaction.
4. `write_back` — project created or updated in the PSA (idempotent on the deal id); its id and
   link written to the deal's `psa_project_id` / `psa_project_url` properties.
5. `record_run` — the run record in `ops.flow_run` (always runs; fails the DAG run if a step failed).

Connections: the CRM's (`hubspot_default`, or `salesforce_default` when `BACKBONE_CRM_CONN_ID` says so),
the PSA's (`psa_default`, or `kantata_default` when `BACKBONE_PSA_CONN_ID` says so), `psa_warehouse`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task

from backbone.schedules import dag_arguments
from backbone.settings import load_settings

FLOW = "crm_closed_won_to_psa"
SETTINGS = load_settings()


@dag(
    doc_md=__doc__,
    tags=["crm", "psa", "hubspot"],
    **dag_arguments(FLOW, SETTINGS.company_timezone, retry_delay=timedelta(minutes=2)),
)
def crm_closed_won_to_psa() -> None:
    @task(multiple_outputs=False)
    def extract_deals(**context) -> dict[str, int]:
        from airflow.sdk import timezone

        from backbone.flows import closed_won
        from backbone.flows.runtime import open_flow_run
        from backbone.hooks.vendors import crm_hook

        settings = load_settings()
        run, warehouse = open_flow_run(FLOW, settings.psa_warehouse_conn_id, context)
        crm = crm_hook(settings.crm_conn_id)
        extracted = closed_won.extract_deals(crm, warehouse, run, lookback=settings.crm_lookback)
        return {**extracted, **closed_won.snapshot_pipeline(crm, warehouse, run, taken_at=timezone.utcnow())}

    @task(multiple_outputs=False)
    def validate_deals(extracted: dict[str, int], **context) -> dict[str, int]:
        from backbone.flows import closed_won
        from backbone.flows.runtime import run_ref
        from backbone.warehouse.db import engine_for

        settings = load_settings()
        return closed_won.validate_deals(engine_for(settings.psa_warehouse_conn_id), run_ref(FLOW, context), chunk_size=settings.chunk_size)

    @task(multiple_outputs=False)
    def load_projects(validated: dict[str, int], **context) -> dict[str, int]:
        from backbone.flows import closed_won
        from backbone.flows.runtime import run_ref
        from backbone.warehouse.db import engine_for

        settings = load_settings()
        return closed_won.load_projects(engine_for(settings.psa_warehouse_conn_id), run_ref(FLOW, context), chunk_size=settings.chunk_size)

    @task(multiple_outputs=False)
    def write_back(loaded: dict[str, int], **context) -> dict[str, int]:
        from backbone.flows import closed_won
        from backbone.flows.runtime import run_ref
        from backbone.hooks.vendors import crm_hook, psa_hook
        from backbone.pilot import is_pilot, pilot_closed_won
        from backbone.warehouse.db import engine_for

        settings = load_settings()
        if is_pilot(FLOW):  # reports what it would create and link; the next real run covers this interval
            return pilot_closed_won(engine_for(settings.psa_warehouse_conn_id), run_ref(FLOW, context))
        return closed_won.write_back(
            crm_hook(settings.crm_conn_id),
            psa_hook(settings.psa_conn_id),
            engine_for(settings.psa_warehouse_conn_id),
            run_ref(FLOW, context),
            chunk_size=settings.chunk_size,
        )

    @task(multiple_outputs=False, trigger_rule="all_done", retries=0)
    def record_run(**context) -> dict[str, object]:
        from backbone.flows.runtime import finish_flow_run

        return finish_flow_run(FLOW, load_settings().psa_warehouse_conn_id, last_task_id="write_back", context=context)

    write_back(load_projects(validate_deals(extract_deals()))) >> record_run()


crm_closed_won_to_psa()
