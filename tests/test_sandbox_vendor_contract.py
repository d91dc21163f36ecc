"""The sandbox accepts what the vendors accept and refuses in their own words (issue 17's list).

- OAuth client credentials in the Basic header *or* the form body: RFC 6749 §2.3.1 lets a token
  endpoint take either; Intuit's and Xero's SDKs and Salesforce's own examples use both forms.
- Parameter and body mistakes answered in the vendor's error envelope (QuickBooks ``Fault``, Xero
  ``ValidationException``, HubSpot ``{"status": "error", "category": …}``, Salesforce
  ``[{"errorCode": …}]``, BambooHR's ``X-BambooHR-Error-Message`` header), never ``422 {"detail"}``;
  a token endpoint answers ``{"error": "invalid_request"}`` (RFC 6749 §5.2).
- QuickBooks queries as ``POST …/query`` with ``Content-Type: application/text``.
- Xero request dates as ``2026-10-31``, with a time, or MS-JSON ``/Date(…)/``; nonsense is a 400, not a 500.
- BambooHR: the API key as the Basic user name with *any* password ("the password can be any random
  string"), and custom report requests as XML as well as JSON.
"""

from __future__ import annotations

import base64

import pytest
import requests

from backbone_sandbox import quickbooks, salesforce, xero

pytestmark = pytest.mark.db


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("path", "store", "client_id", "client_secret"),
    [
        ("/quickbooks/oauth2/v1/tokens/bearer", "qbo", quickbooks.CLIENT_ID, quickbooks.CLIENT_SECRET),
        ("/xero/connect/token", "xero", xero.CLIENT_ID, xero.CLIENT_SECRET),
    ],
)
def test_token_endpoints_take_the_client_in_the_header_or_in_the_body(sandbox, path, store, client_id, client_secret):
    issuer = getattr(sandbox.state, store)
    token = next(iter(issuer.refresh_tokens))
    in_body = requests.post(
        sandbox.url + path,
        data={"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id, "client_secret": client_secret},
        timeout=10,
    )
    assert in_body.status_code == 200 and in_body.json()["access_token"]
    rotated = in_body.json().get("refresh_token") or token
    in_header = requests.post(
        sandbox.url + path,
        data={"grant_type": "refresh_token", "refresh_token": rotated},
        headers={"Authorization": basic(client_id, client_secret)},
        timeout=10,
    )
    assert in_header.status_code == 200
    wrong = requests.post(
        sandbox.url + path,
        data={"grant_type": "refresh_token", "refresh_token": rotated, "client_id": client_id, "client_secret": "nope"},
        timeout=10,
    )
    assert wrong.json() == {"error": "invalid_client"}
    missing = requests.post(sandbox.url + path, data={}, timeout=10)
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"


def test_salesforce_takes_the_client_in_basic_auth_too(sandbox):
    answer = requests.post(
        sandbox.url + "/salesforce/services/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": basic(salesforce.CLIENT_ID, salesforce.CLIENT_SECRET)},
        timeout=10,
    )
    assert answer.status_code == 200 and answer.json()["access_token"]


def test_parameter_mistakes_are_answered_in_each_vendors_envelope(sandbox):
    qbo = requests.get(f"{sandbox.url}/quickbooks/v3/company/{quickbooks.REALM_ID}/query", timeout=10)  # no query
    assert qbo.status_code == 400 and qbo.json()["Fault"]["type"] == "ValidationFault" and "detail" not in qbo.json()
    hubspot = requests.post(
        f"{sandbox.url}/hubspot/crm/v3/objects/deals/search",
        data="not json",
        headers={"Authorization": "Bearer sandbox-token", "Content-Type": "application/json"},
        timeout=10,
    )
    assert hubspot.status_code == 400 and hubspot.json()["category"] == "VALIDATION_ERROR" and hubspot.json()["status"] == "error"
    bamboo = requests.post(
        f"{sandbox.url}/bamboohr/api/v1/reports/custom", params={"format": "csv"}, auth=("sandbox-token", "x"), json={}, timeout=10
    )
    assert bamboo.status_code == 404 and bamboo.headers["X-BambooHR-Error-Message"] and not bamboo.content


def test_quickbooks_answers_a_query_posted_as_application_text(sandbox):
    token = quickbooks_access_token(sandbox)
    answer = requests.post(
        f"{sandbox.url}/quickbooks/v3/company/{quickbooks.REALM_ID}/query",
        data="SELECT * FROM Customer STARTPOSITION 1 MAXRESULTS 5",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/text", "Accept": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 200 and 0 < len(answer.json()["QueryResponse"]["Customer"]) <= 5


def quickbooks_access_token(sandbox) -> str:  # noqa: ANN001
    answer = requests.post(
        sandbox.url + "/quickbooks/oauth2/v1/tokens/bearer",
        data={"grant_type": "refresh_token", "refresh_token": next(iter(sandbox.state.qbo.refresh_tokens))},
        headers={"Authorization": basic(quickbooks.CLIENT_ID, quickbooks.CLIENT_SECRET)},
        timeout=10,
    )
    return answer.json()["access_token"]


def test_bamboohr_takes_any_password_and_xml_report_requests(sandbox):
    directory = requests.get(f"{sandbox.url}/bamboohr/api/v1/employees/directory", auth=("sandbox-token", "anything at all"), timeout=10)
    assert directory.status_code == 200
    refused = requests.get(f"{sandbox.url}/bamboohr/api/v1/employees/directory", auth=("wrong-key", "x"), timeout=10)
    assert refused.status_code == 401 and refused.headers["X-BambooHR-Error-Message"]
    xml = '<report><title>roster</title><fields><field id="firstName"/><field id="workEmail"/></fields></report>'
    report = requests.post(
        f"{sandbox.url}/bamboohr/api/v1/reports/custom",
        params={"format": "json"},
        data=xml,
        headers={"Content-Type": "text/xml", "Accept": "application/json"},
        auth=("sandbox-token", "x"),
        timeout=10,
    )
    assert report.status_code == 200
    assert [f["id"] for f in report.json()["fields"]] == ["firstName", "workEmail"] and report.json()["employees"]


def test_xero_request_dates_in_any_form_its_sdks_send_and_a_400_for_nonsense():
    from datetime import date

    from backbone_sandbox.xero import XeroError, request_date

    october_31 = date(2026, 10, 31)
    assert request_date("2026-10-31", "Date") == october_31
    assert request_date("2026-10-31T00:00:00", "Date") == october_31
    assert request_date("/Date(1793404800000+0000)/", "Date") == october_31  # MS-JSON, as xero-python serialises dates
    with pytest.raises(XeroError) as refused:
        request_date("31/10/2026", "DueDate")
    assert refused.value.status == 400 and "DueDate" in refused.value.errors[0]


@pytest.mark.parametrize(
    ("path", "headers", "envelope"),
    [
        (
            "/hubspot/crm/v3/objects/deals/nope/nothing",
            {"Authorization": "Bearer sandbox-token"},
            lambda b: b["category"] == "OBJECT_NOT_FOUND",
        ),
        ("/salesforce/services/data/v61.0/nothing", {}, lambda b: b[0]["errorCode"] == "NOT_FOUND"),
        ("/quickbooks/v3/nothing/at/all/here", {}, lambda b: "Fault" in b),
        ("/xero/api.xro/2.0/Nothing/at/all", {}, lambda b: b["Type"] == "ValidationException" or "Message" in b),
    ],
)
def test_an_unknown_path_is_answered_in_the_vendors_envelope_not_a_framework_default(sandbox, path, headers, envelope):
    answer = requests.get(sandbox.url + path, headers=headers, timeout=10)
    assert answer.status_code in (401, 403, 404) and "detail" not in answer.text, answer.text
    if answer.status_code == 404:
        assert envelope(answer.json())


def test_bamboohr_unknown_path_says_why_in_its_header(sandbox):
    answer = requests.get(f"{sandbox.url}/bamboohr/api/v1/nothing", auth=("sandbox-token", "x"), timeout=10)
    assert answer.status_code == 404 and answer.headers.get("X-BambooHR-Error-Message") and not answer.content


def test_quickbooks_batch_calls_have_a_budget_of_their_own_and_a_41st_in_a_minute_is_throttled(sandbox):
    """Intuit's throttling: 40 batch requests a minute per company, beside the 500 of single calls,
    answered with its ``ThrottleExceeded`` fault. The tests' sandboxes switch this budget off (they
    post many weeks a minute, and the hook would pace itself to 38); here it is QuickBooks' own."""
    import dataclasses

    sandbox.state.config = dataclasses.replace(sandbox.state.config, qbo_batch_requests_per_minute=40)
    headers = {"Authorization": f"Bearer {quickbooks_access_token(sandbox)}", "Accept": "application/json"}
    url = f"{sandbox.url}/quickbooks/v3/company/{quickbooks.REALM_ID}/batch"
    body = {"BatchItemRequest": [{"bId": "1", "Query": "SELECT * FROM Customer MAXRESULTS 1"}]}
    answers = [requests.post(url, json=body, headers=headers, timeout=10) for _ in range(41)]
    assert [a.status_code for a in answers[:40]] == [200] * 40
    assert answers[40].status_code == 429 and "ThrottleExceeded" in answers[40].text
    single = requests.post(
        url.removesuffix("/batch") + "/query",
        data="SELECT * FROM Customer MAXRESULTS 1",
        headers=headers | {"Content-Type": "application/text"},
        timeout=10,
    )
    assert single.status_code == 200  # the single-call budget is a separate one
