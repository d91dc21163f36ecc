"""Salesforce REST API: OAuth2, SOQL ``query`` / ``queryMore``, Opportunity updates, API limits.

Closed-won deals are Opportunities with ``IsWon = true``, read in ``SystemModstamp`` windows with
``Id`` as the tie-break (``ORDER BY SystemModstamp, Id`` and a keyset on both), so no query
locator has to live long and a window never skips or repeats a record. The Account and the
contacts (``OpportunityContactRole``) of a page are read with one ``IN`` query each.

Why not ``apache-airflow-providers-salesforce``: its hook wraps simple-salesforce, which brings no
retry or backoff, hides the ``Sforce-Limit-Info`` usage header and signs in with username,
password and security token or a JWT key. This hook shares the retry policy, rate limiter and error
classes of the other vendor hooks and signs in with an OAuth client (client credentials or a
refresh token), which is what a Connected App gives an integration user.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator, Iterable, Iterator
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from backbone.hooks.auth import RefreshingBearerAuth
from backbone.hooks.base import JsonApiHook
from backbone.hooks.crm import DealBundle, OpenDeal, canonical, field_paths, open_deal
from backbone.http import FatalApiError, QuotaExhaustedError, RateLimiter, check_response
from backbone.paging import NextUrlPaginator, keyset_windows, pages

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

DEFAULT_LOGIN_URL = "https://login.salesforce.com"
DEFAULT_API_VERSION = "61.0"
WINDOW_SIZE = 2000
"""Opportunities per ``SystemModstamp`` window (one query; its pages are read with queryMore)."""
ID_BATCH = 200
"""Ids per ``IN (...)`` list: well inside SOQL's 100,000-character statement limit."""


def soql_datetime(moment: datetime) -> str:
    """A SOQL datetime literal (UTC, whole seconds: ``SystemModstamp`` has no finer precision)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def soql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def parse_api_usage(header: str | None) -> tuple[int, int] | None:
    """``Sforce-Limit-Info: api-usage=25/15000`` → (25, 15000)."""
    for part in (header or "").split(","):
        name, _, value = part.strip().partition("=")
        used, _, limit = value.partition("/")
        if name == "api-usage" and used.isdigit() and limit.isdigit():
            return int(used), int(limit)
    return None


class SalesforceHook(JsonApiHook):
    """Salesforce through a Connected App.

    Connection (``salesforce_default``, type ``salesforce``, or any type with extra
    ``"vendor": "salesforce"``): ``host`` = login URL (``https://login.salesforce.com``,
    ``https://test.salesforce.com`` or the org's My Domain), ``login`` = consumer key,
    ``password`` = consumer secret. Extras: ``refresh_token`` (use the refresh-token grant;
    without it the client-credentials grant is used), ``api_version`` (default 61.0),
    ``requests_per_second`` (default 5), ``max_api_usage`` (share of the org's daily API requests
    this hook may reach before it stops, default 0.9), ``batch_size`` (records per query page,
    200–2000, default 2000).
    """

    conn_name_attr = "salesforce_conn_id"
    default_conn_name = "salesforce_default"
    conn_type = "salesforce"
    hook_name = "Salesforce CRM"
    system_name = "Salesforce"
    system = "salesforce"
    default_base_url = DEFAULT_LOGIN_URL
    RATE_LIMIT_HEADERS = (("API requests used today of the org's limit", "Sforce-Limit-Info"),)
    """``Sforce-Limit-Info: api-usage=used/limit`` on every REST answer (REST API Developer Guide, "Limit Info Header")."""
    REQUIRED_SCOPES = frozenset({"api"})
    """Access and manage data through the REST API (Connected App OAuth scope ``api``)."""

    def __init__(self, salesforce_conn_id: str = default_conn_name, **kwargs: Any):
        super().__init__(salesforce_conn_id, **kwargs)
        self._token_lock = threading.Lock()
        self._token: tuple[str, str] | None = None
        self.api_usage: tuple[int, int] | None = None

    @cached_property
    def limiter(self) -> RateLimiter:
        return RateLimiter(self.budget("requests_per_second", setting=None, default=5))

    @property
    def api_path(self) -> str:
        return f"/services/data/v{self.extras.get('api_version', DEFAULT_API_VERSION)}"

    # --- OAuth ----------------------------------------------------------------------------------
    @cached_property
    def auth(self) -> RefreshingBearerAuth:
        """The session's bearer token on every request, renewed once when Salesforce answers 401."""
        return RefreshingBearerAuth(lambda *, force_refresh=False: self.session_token(renew=force_refresh)[0])

    def session_token(self, *, renew: bool = False) -> tuple[str, str]:
        """``(access token, instance URL)``, fetched once and again when Salesforce says it expired."""
        with self._token_lock:
            if renew or self._token is None:
                self._token = self._fetch_token()
            return self._token

    def _fetch_token(self) -> tuple[str, str]:
        import requests
        from airflow.sdk.log import mask_secret

        conn = self.connection
        if not (conn.login and conn.password):
            raise FatalApiError(
                f"Connection {self.conn_id!r} needs login (consumer key) and password (consumer secret) of the Connected App"
            )
        form = {"grant_type": "client_credentials", "client_id": conn.login, "client_secret": conn.password}
        if self.extras.get("refresh_token"):
            form.update(grant_type="refresh_token", refresh_token=self.extras["refresh_token"])

        def attempt() -> Any:
            response = requests.post(
                f"{self.base_url}/services/oauth2/token", data=form, headers={"Accept": "application/json"}, timeout=self.timeout
            )
            if response.status_code == 400:
                raise FatalApiError(
                    f"Salesforce refused the OAuth grant of {self.conn_id!r}: {response.text[:200]}. Check the consumer key, secret and "
                    "refresh token."
                )
            return check_response(response, system="Salesforce OAuth")

        body = self.retry_policy.call(attempt, description="Salesforce OAuth token")
        mask_secret(body["access_token"])
        if isinstance(body.get("scope"), str):
            self.granted_scopes = frozenset(body["scope"].split())
        return body["access_token"], body["instance_url"].rstrip("/")

    def test_connection(self) -> tuple[bool, str]:
        try:
            list(self.query("SELECT Id FROM OpportunityStage LIMIT 1"))
        except Exception as exc:  # noqa: BLE001 - reported to the UI, not raised
            return False, str(exc)
        return True, "Salesforce answered a SOQL query"

    # --- calls ----------------------------------------------------------------------------------
    def url_for(self, path: str) -> str:
        """Calls go to the org's instance (named by the token answer), not to the login URL."""
        return f"{self.session_token()[1]}{path}"

    def call(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None, description: str | None = None
    ) -> Any:
        """One REST call on the org's instance through the hook's request pipeline (usage ceiling,
        budget, one session renewal on 401, the usage header read, retries)."""
        return self.request(
            method,
            path,
            params=params,
            json=json,
            headers={"Sforce-Query-Options": f"batchSize={int(self.extras.get('batch_size', 2000))}"},
            limiter=self.limiter,
            description=description or f"Salesforce {method} {path}",
        )

    def before_send(self) -> None:
        """Stop before the org's daily API requests pass ``max_api_usage`` (as of the last answer's
        header): checked before sending, so the answer to a call already sent is never thrown away."""
        if self.api_usage is None:
            return
        used, limit = self.api_usage
        ceiling = float(self.extras.get("max_api_usage", 0.9))
        if limit and used / limit >= ceiling:
            raise QuotaExhaustedError(
                f"Salesforce API usage is {used} of {limit} daily requests, past this Connection's max_api_usage of {ceiling:.0%}; "
                "stopping so other integrations keep their share (raise max_api_usage or wait for the daily reset)"
            )

    def validate_response(self, response: requests.Response) -> Any:
        """Salesforce's own signals: the ``Sforce-Limit-Info`` usage header on every answer, and 403
        ``REQUEST_LIMIT_EXCEEDED`` when the org's daily limit is spent."""
        self.api_usage = parse_api_usage(response.headers.get("Sforce-Limit-Info")) or self.api_usage
        if response.status_code == 403 and "REQUEST_LIMIT_EXCEEDED" in response.text:
            raise QuotaExhaustedError(
                f"Salesforce: the org's API request limit is used up ({response.text[:200]}); the run stops until the limit resets",
                status=403,
            )
        return super().validate_response(response)

    def query(self, statement: str) -> Iterator[list[dict[str, Any]]]:
        """Pages of records of one SOQL query: ``query``, then ``queryMore`` through ``nextRecordsUrl``."""

        def fetch(next_url: str | None) -> Any:
            if next_url is None:
                return self.call("GET", f"{self.api_path}/query", params={"q": statement}, description=f"Salesforce query {statement[:60]}")
            return self.call("GET", next_url, description="Salesforce queryMore")

        paginator = NextUrlPaginator(
            lambda body: body.get("nextRecordsUrl"), done=lambda body: bool(body.get("done", True)), description="Salesforce query"
        )
        yield from pages(paginator, fetch, lambda body: body.get("records"))

    def query_ids(self, select: str, sobject: str, id_field: str, ids: Iterable[str], *, extra_where: str = "") -> Iterator[dict[str, Any]]:
        """Records whose ``id_field`` is one of ``ids``, ``ID_BATCH`` ids per query."""
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), ID_BATCH):
            listed = ", ".join(soql_string(i) for i in unique[start : start + ID_BATCH])
            for page in self.query(f"SELECT {select} FROM {sobject} WHERE {id_field} IN ({listed}){extra_where}"):
                yield from page

    # --- the CRM interface the flows use (backbone.hooks.crm.CrmSystem) -------------------------
    def stage_labels(self) -> dict[str, str]:
        """Active opportunity stages: picklist value (``ApiName``) → label."""
        return {
            r["ApiName"]: r.get("MasterLabel") or r["ApiName"]
            for page in self.query("SELECT ApiName, MasterLabel, IsWon, IsClosed FROM OpportunityStage WHERE IsActive = true")
            for r in page
        }

    def won_deal_pages(self, start: datetime, end: datetime) -> Iterator[list[DealBundle]]:
        """Won Opportunities modified in ``[start, end)``, bundled with Account and contact roles."""
        stages = self.stage_labels()
        fields = _deal_select()
        bounds = f"IsWon = true AND SystemModstamp >= {soql_datetime(start)} AND SystemModstamp < {soql_datetime(end)}"

        def window(after: tuple[str, str] | None) -> Generator[list[dict[str, Any]], None, bool]:
            keyset = ""
            if after is not None:
                stamp, last_id = after
                keyset = f" AND (SystemModstamp > {stamp} OR (SystemModstamp = {stamp} AND Id > {soql_string(last_id)}))"
                log.info("Salesforce: the last window was full; the next starts after %s %s", stamp, last_id)
            in_window = 0
            for page in self.query(
                f"SELECT {fields} FROM Opportunity WHERE {bounds}{keyset} ORDER BY SystemModstamp ASC, Id ASC LIMIT {WINDOW_SIZE}"
            ):
                in_window += len(page)
                yield page
            return in_window >= WINDOW_SIZE

        def key_of(opportunity: dict[str, Any]) -> tuple[str, str]:
            return soql_datetime(datetime.fromisoformat(opportunity["SystemModstamp"])), str(opportunity["Id"])

        for page in keyset_windows(window, key_of, description="Salesforce won opportunities"):
            yield self._bundle_page(page, stages)

    def open_deal_pages(self) -> Iterator[list[OpenDeal]]:
        """Every open Opportunity (``IsClosed = false``), with its ``Probability`` (a percent on the
        Opportunity, defaulted from its stage) and its stage's label."""
        stages = self.stage_labels()
        statement = f"SELECT {_deal_select()}, Probability FROM Opportunity WHERE IsClosed = false ORDER BY Id"
        for page in self.query(statement):
            yield [
                open_deal(
                    canonical(_close_date_as_timestamp(o), self.system, "deal"),
                    stage=stages.get(o.get("StageName") or "", o.get("StageName") or ""),
                    probability=float(o.get("Probability") or 0) / 100,
                )
                for o in page
            ]

    def _bundle_page(self, opportunities: list[dict[str, Any]], stages: dict[str, str]) -> list[DealBundle]:
        account_ids = [o["AccountId"] for o in opportunities if o.get("AccountId")]
        accounts = {r["Id"]: r for r in self.query_ids(_select("company"), "Account", "Id", account_ids)}
        roles: dict[str, list[dict[str, Any]]] = {}
        contact_select = ", ".join(f"Contact.{f}" for f in field_paths("salesforce", "contact").values())
        for role in self.query_ids(
            f"OpportunityId, ContactId, IsPrimary, {contact_select}",
            "OpportunityContactRole",
            "OpportunityId",
            [o["Id"] for o in opportunities],
        ):
            if role.get("Contact"):
                roles.setdefault(role["OpportunityId"], []).append(role)
        bundles: list[DealBundle] = []
        for opportunity in opportunities:
            contacts = {r["Contact"]["Id"]: r["Contact"] for r in sorted(roles.get(opportunity["Id"], []), key=lambda r: r["ContactId"])}
            bundles.append(
                {
                    "system": self.system,
                    "deal": _close_date_as_timestamp(opportunity),
                    "company": accounts.get(opportunity.get("AccountId") or ""),
                    "contacts": list(contacts.values()),
                    "stage_label": stages.get(opportunity.get("StageName") or ""),
                }
            )
        return bundles

    def read_deals(self, deal_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        return {
            r["Id"]: canonical(r, self.system, "deal") for r in self.query_ids(_deal_select(), "Opportunity", "Id", sorted(set(deal_ids)))
        }

    def update_deal(self, deal_id: str, values: dict[str, str]) -> None:
        """PATCH the Opportunity (Salesforce answers 204; the same values again change nothing)."""
        paths = field_paths(self.system, "deal")
        self.call(
            "PATCH",
            f"{self.api_path}/sobjects/Opportunity/{deal_id}",
            json={paths[name]: value for name, value in values.items()},
            description=f"Salesforce update Opportunity {deal_id}",
        )


def _select(kind: str) -> str:
    return ", ".join(dict.fromkeys(field_paths("salesforce", kind).values()))


def _deal_select() -> str:
    return ", ".join(dict.fromkeys([*field_paths("salesforce", "deal").values(), "AccountId"]))


def _close_date_as_timestamp(opportunity: dict[str, Any]) -> dict[str, Any]:
    """Salesforce keeps ``CloseDate`` as a bare date; the dictionary's ``close_date`` is a moment:
    midnight UTC of that day (as HubSpot's date properties are)."""
    field = field_paths("salesforce", "deal")["close_date"]
    value = opportunity.get(field)
    if isinstance(value, str) and len(value) == 10 and value[4] == "-" and value[7] == "-":
        return {**opportunity, field: f"{value}T00:00:00.000Z"}
    return opportunity
