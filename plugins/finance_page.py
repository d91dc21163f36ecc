"""Airflow plugin: the Finance page (runs, totals, charts, exceptions, CSV) and the Leadership page
(utilization, margins, pipeline, cash) inside the Airflow 3 UI.

The API server mounts the FastAPI app at ``/finance``; the nav entries "Finance" and "Leadership"
open ``/finance/`` and ``/finance/leadership``. Both sit behind Airflow's login.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from backbone.finance.app import app as finance_app


class FinancePagePlugin(AirflowPlugin):
    name = "finance_page"
    fastapi_apps = [{"app": finance_app, "url_prefix": "/finance", "name": "Finance"}]
    external_views = [
        {"name": "Finance", "href": "/finance/", "destination": "nav", "url_route": "finance"},
        {"name": "Leadership", "href": "/finance/leadership", "destination": "nav", "url_route": "leadership"},
    ]
