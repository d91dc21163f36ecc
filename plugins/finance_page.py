"""Airflow plugin: the Finance page (runs, totals, charts, exceptions, CSV) and the Leadership page
(utilization, margins, pipeline, cash) inside the Airflow 3 UI.

The API server mounts the FastAPI app at ``/finance``; the nav entries "Finance" and "Leadership"
open ``/finance/`` and ``/finance/leadership``. Both sit behind Airflow's login.

Every Airflow process loads its plugins, and every task loads them again in its own process (to
integrate plugin macros), so this module imports nothing of the pages: the app (FastAPI, Jinja2,
Altair and pandas for the charts, about 0.6 s) is imported by the API server on the first request
to ``/finance``.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin


class FinancePagesApp:
    """An ASGI app that hands every request to ``backbone.finance.app.app``, imported on the first."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.app is None:
            from backbone.finance.app import app

            self.app = app
        await self.app(scope, receive, send)


class FinancePagePlugin(AirflowPlugin):
    name = "finance_page"
    fastapi_apps = [{"app": FinancePagesApp(), "url_prefix": "/finance", "name": "Finance"}]
    external_views = [
        {"name": "Finance", "href": "/finance/", "destination": "nav", "url_route": "finance"},
        {"name": "Leadership", "href": "/finance/leadership", "destination": "nav", "url_route": "leadership"},
    ]
