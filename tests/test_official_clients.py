"""The vendors' own Python clients drive the sandbox through every operation our flows use and
parse its answers into their own models (issue 17: "the sandbox is the vendors' contract").

Clients, pinned in requirements-dev.txt (test-only, never in the image):
- HubSpot: ``hubspot-api-client`` (HubSpot's official SDK);
- Salesforce: ``simple-salesforce`` (the most-used Python client; Salesforce publishes none);
- QuickBooks Online: ``python-quickbooks`` with Intuit's ``intuit-oauth`` (the most-used client and
  Intuit's official OAuth library);
- Xero: ``xero-python`` (Xero's official SDK, generated from its OpenAPI);
- BambooHR: ``PyBambooHR`` (the most-used Python client; BambooHR publishes none).

Each client keeps its real default base URL (``https://api.hubapi.com``, ``https://{domain}.my.salesforce.com``,
``https://sandbox-quickbooks.api.intuit.com``, …) wherever it does not let a caller set one; a
test-only transport maps those hosts to the sandbox's prefixes (:func:`vendor_hosts`), so every
path, query string, header and body is the client's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import pytest
import requests
import requests.sessions

pytestmark = pytest.mark.db


@pytest.fixture
def vendor_hosts(sandbox, monkeypatch) -> Iterator[dict[str, str]]:
    """Requests made through ``requests`` to a vendor's real host go to the sandbox's prefix for it."""
    hosts: dict[str, str] = {}
    send = requests.sessions.Session.request

    def request(self, method, url, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202 - requests' signature
        for real, local in hosts.items():
            if isinstance(url, str) and url.startswith(real):
                url = local + url[len(real) :]
                break
        return send(self, method, url, *args, **kwargs)

    monkeypatch.setattr(requests.sessions.Session, "request", request)
    yield hosts


def test_hubspot_official_client_reads_pipelines_searches_deals_reads_associations_and_batches_and_patches(sandbox):
    """HubSpot API v3/v4 as the closed-won and milestone flows use it, through ``hubspot-api-client``."""
    import hubspot
    from hubspot.crm.associations.v4 import BatchInputPublicFetchAssociationsBatchRequest
    from hubspot.crm.companies import BatchReadInputSimplePublicObjectId
    from hubspot.crm.deals import PublicObjectSearchRequest, SimplePublicObjectInput

    client = hubspot.HubSpot(access_token="sandbox-token", host=f"{sandbox.url}/hubspot")
    pipelines = client.crm.pipelines.pipelines_api.get_all(object_type="deals").results
    won = [s.id for p in pipelines for s in p.stages if s.metadata["isClosed"] == "true" and float(s.metadata["probability"]) == 1.0]
    assert set(won) == {"closedwon", "renewal_signed"}

    search = PublicObjectSearchRequest(
        filter_groups=[{"filters": [{"propertyName": "dealstage", "operator": "IN", "values": won}]}],
        sorts=[{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
        properties=["dealname", "amount", "dealstage", "pipeline", "deal_currency_code", "hs_lastmodifieddate"],
        limit=50,
    )
    first = client.crm.deals.search_api.do_search(public_object_search_request=search)
    assert first.total > 50 and len(first.results) == 50 and first.paging.next.after
    search.after = first.paging.next.after
    second = client.crm.deals.search_api.do_search(public_object_search_request=search)
    ids = [d.id for d in first.results + second.results]
    assert len(ids) == len(set(ids)) == first.total  # paging by ``after`` returns each deal once

    links = client.crm.associations.v4.batch_api.get_page(
        "deals",
        "companies",
        batch_input_public_fetch_associations_batch_request=BatchInputPublicFetchAssociationsBatchRequest(
            inputs=[{"id": i} for i in ids[:10]]
        ),
    ).results
    primary = {r._from.id: [t.to_object_id for t in r.to if any(a.type_id == 5 for a in t.association_types)] for r in links}
    assert all(len(companies) == 1 for companies in primary.values())
    companies = client.crm.companies.batch_api.read(
        batch_read_input_simple_public_object_id=BatchReadInputSimplePublicObjectId(
            inputs=[{"id": c[0]} for c in primary.values()], properties=["name", "domain"]
        )
    ).results
    assert companies and all("name" in c.properties for c in companies)

    updated = client.crm.deals.basic_api.update(
        ids[0], simple_public_object_input=SimplePublicObjectInput(properties={"psa_project_id": "PRJ-000001"})
    )
    assert updated.properties["psa_project_id"] == "PRJ-000001"


def test_salesforce_client_logs_in_queries_pages_reads_and_updates_opportunities(sandbox, vendor_hosts):
    """Salesforce REST as the closed-won and milestone flows use it, through ``simple-salesforce``:
    the OAuth 2.0 client-credentials flow (consumer key and secret in the Basic header), SOQL with
    ``queryMore`` paging, a record read and a PATCH."""
    from simple_salesforce import Salesforce

    from tests.conftest import SANDBOX_PORT

    vendor_hosts["https://ourfirm.my.salesforce.com"] = f"{sandbox.url}/salesforce"
    vendor_hosts[f"https://127.0.0.1:{SANDBOX_PORT}"] = sandbox.url  # the instance_url the token answer names
    sf = Salesforce(
        consumer_key="sandbox-salesforce-consumer-key",
        consumer_secret="sandbox-salesforce-consumer-secret",
        domain="ourfirm.my",
        version="61.0",
    )
    won = sf.query_all("SELECT Id, Name, StageName, Amount, CloseDate, SystemModstamp FROM Opportunity WHERE IsWon = true ORDER BY Id")
    assert won["totalSize"] == len(won["records"]) > 0 and won["done"]
    stages = sf.query("SELECT ApiName, MasterLabel, IsWon, IsClosed, DefaultProbability FROM OpportunityStage WHERE IsActive = true")
    assert {r["ApiName"] for r in stages["records"] if r["IsWon"]} and all(0 <= r["DefaultProbability"] <= 100 for r in stages["records"])
    opportunity = won["records"][0]["Id"]
    roles = sf.query(f"SELECT ContactId, IsPrimary, Contact.Email FROM OpportunityContactRole WHERE OpportunityId = '{opportunity}'")
    assert roles["records"] and roles["records"][0]["Contact"]["Email"]
    assert sf.Opportunity.update(opportunity, {"PSA_Project_Id__c": "PRJ-000001"}) == 204
    assert sf.Opportunity.get(opportunity)["PSA_Project_Id__c"] == "PRJ-000001"
    assert sf.Opportunity.get(opportunity[:15])["Id"] == opportunity  # the 15-character id names the same record
    open_deals = sf.query_all("SELECT Id, StageName, Probability, Amount FROM Opportunity WHERE IsClosed = false")
    assert open_deals["records"] and all(0 < r["Probability"] < 100 for r in open_deals["records"])


def test_quickbooks_client_refreshes_queries_and_posts_time_invoices_and_voids_once(sandbox, vendor_hosts):
    """QuickBooks Online v3 as the timesheet, invoicing and payment flows use it, through
    ``python-quickbooks`` and ``intuit-oauth``: OpenID discovery and the refresh-token grant, queries
    (``SELECT *``, ``SELECT *, Sku`` for items, ``WHERE … = 'a value with and in it'``),
    ``TimeActivity`` and ``Invoice`` creates with a ``requestid`` (a replay returns the same object,
    https://developer.intuit.com/app/developer/qbo/docs/learn/rest-api-features#idempotency), an
    invoice void (``operation=void``) and payments read."""
    from intuitlib.client import AuthClient
    from quickbooks import QuickBooks
    from quickbooks.objects.customer import Customer
    from quickbooks.objects.detailline import SalesItemLine, SalesItemLineDetail
    from quickbooks.objects.employee import Employee
    from quickbooks.objects.invoice import Invoice
    from quickbooks.objects.item import Item
    from quickbooks.objects.payment import Payment
    from quickbooks.objects.taxcode import TaxCode
    from quickbooks.objects.timeactivity import TimeActivity

    for host in ("https://developer.intuit.com", "https://oauth.platform.intuit.com", "https://sandbox-quickbooks.api.intuit.com"):
        vendor_hosts[host] = f"{sandbox.url}/quickbooks"
    auth = AuthClient("sandbox-qbo-client", "sandbox-qbo-secret", "http://localhost/callback", "sandbox")
    qb = QuickBooks(auth_client=auth, refresh_token="sandbox-qbo-refresh-0", company_id="9341455000000001", minorversion=75)
    assert auth.refresh_token and auth.refresh_token != "sandbox-qbo-refresh-0"  # rotated, as Intuit does

    customers = Customer.all(qb=qb, max_results=1000)
    employees, items, taxes = Employee.all(qb=qb), Item.all(qb=qb), TaxCode.all(qb=qb)
    assert customers and employees and {"Consulting Services", "Fixed Fee Services"} <= {i.Name for i in items} and taxes
    tricky = next(c for c in customers if " and " in c.DisplayName)
    assert [c.Id for c in Customer.filter(DisplayName=tricky.DisplayName, qb=qb)] == [tricky.Id]

    def time_activity() -> TimeActivity:
        activity = TimeActivity()
        activity.NameOf, activity.EmployeeRef, activity.CustomerRef = "Employee", employees[0].to_ref(), customers[0].to_ref()
        activity.ItemRef, activity.Hours, activity.Minutes, activity.TxnDate = items[0].to_ref(), 2, 30, "2026-10-30"
        activity.BillableStatus, activity.HourlyRate, activity.Description = "Billable", 100, "TE-CONTRACT:v1"
        return activity

    created = time_activity().save(qb=qb, request_id="contract-te-1")
    replayed = time_activity().save(qb=qb, request_id="contract-te-1")
    assert created.Id == replayed.Id and len(TimeActivity.filter(Description="TE-CONTRACT:v1", qb=qb)) == 1

    invoice = Invoice()
    invoice.CustomerRef, invoice.DocNumber, invoice.TxnDate = customers[0].to_ref(), "CONTRACT-1", "2026-10-31"
    line = SalesItemLine()
    line.Amount, line.Description = 250.0, "2.5 h consulting"
    line.SalesItemLineDetail = SalesItemLineDetail()
    line.SalesItemLineDetail.ItemRef = items[0].to_ref()
    line.SalesItemLineDetail.Qty, line.SalesItemLineDetail.UnitPrice = 2.5, 100
    invoice.Line = [line]
    posted = invoice.save(qb=qb, request_id="contract-inv-1")
    assert Decimal(str(posted.TotalAmt)) >= Decimal("250") and posted.DocNumber == "CONTRACT-1"
    voided = Invoice.get(posted.Id, qb=qb).void(qb=qb)
    assert voided and Decimal(str(Invoice.get(posted.Id, qb=qb).TotalAmt)) == 0
    assert isinstance(Payment.all(qb=qb), list)


def test_xero_official_client_refreshes_reads_posts_once_voids_and_keeps_project_time(sandbox, monkeypatch):
    """Xero Accounting and Projects APIs as the timesheet, invoicing and payment flows use them,
    through ``xero-python``: the refresh-token grant, organisation, contacts, items, tax rates,
    invoices created with an ``Idempotency-Key`` (a replay returns the same invoice,
    https://developer.xero.com/documentation/guides/idempotent-requests/idempotency), read by number
    with ``If-Modified-Since``, voided; payments; project users, a project, a task, and a time entry
    created, updated, listed and deleted."""
    from datetime import UTC, datetime

    from xero_python.accounting import AccountingApi, Contact, Invoice, Invoices, LineItem
    from xero_python.api_client import ApiClient, Configuration
    from xero_python.api_client.oauth2 import OAuth2Token, TokenApi
    from xero_python.project import ProjectApi
    from xero_python.project.models import Amount, ChargeType, CurrencyCode, ProjectCreateOrUpdate, TaskCreateOrUpdate
    from xero_python.project.models import TimeEntryCreateOrUpdate as TimeEntry

    from backbone_devtools.localenv import XERO_TENANT_ID as TENANT

    monkeypatch.setattr(TokenApi, "refresh_token_url", f"{sandbox.url}/xero/connect/token")
    stored: dict[str, object] = {}
    client = ApiClient(Configuration(oauth2_token=OAuth2Token(client_id="sandbox-xero-client", client_secret="sandbox-xero-secret")))
    client.oauth2_token_getter(lambda: stored.get("token"))
    client.oauth2_token_saver(lambda token: stored.update(token=token))
    client.set_oauth2_token(
        {
            "access_token": "expired",
            "refresh_token": "sandbox-xero-refresh-0",
            "expires_in": 0,
            "token_type": "Bearer",
            "scope": ["projects"],
        }
    )
    assert client.refresh_oauth2_token() and stored["token"]["refresh_token"] != "sandbox-xero-refresh-0"

    accounting = AccountingApi(client, base_url=f"{sandbox.url}/xero/api.xro/2.0")
    assert accounting.get_organisations(TENANT).organisations[0].base_currency.value == "EUR"
    contact = accounting.get_contacts(TENANT, page=1).contacts[0]
    item = accounting.get_items(TENANT).items[0]
    assert {r.name for r in accounting.get_tax_rates(TENANT).tax_rates} >= {"VAT 21%"}
    invoice = Invoice(
        type="ACCREC",
        contact=Contact(contact_id=contact.contact_id),
        date=date(2026, 10, 31),
        due_date=date(2026, 11, 30),
        invoice_number="CONTRACT-X1",
        status="AUTHORISED",
        line_items=[LineItem(description="2.5 h", quantity=2.5, unit_amount=100, account_code="4000", item_code=item.code)],
    )
    first = accounting.create_invoices(TENANT, invoices=Invoices(invoices=[invoice]), idempotency_key="contract-x1").invoices[0]
    replay = accounting.create_invoices(TENANT, invoices=Invoices(invoices=[invoice]), idempotency_key="contract-x1").invoices[0]
    assert first.invoice_id == replay.invoice_id and Decimal(str(first.sub_total)) == Decimal("250")
    found = accounting.get_invoices(TENANT, invoice_numbers=["CONTRACT-X1"], if_modified_since=datetime(2026, 1, 1, tzinfo=UTC))
    assert [i.invoice_id for i in found.invoices] == [first.invoice_id]
    voided = accounting.update_invoice(TENANT, first.invoice_id, invoices=Invoices(invoices=[Invoice(status="VOIDED")]))
    assert voided.invoices[0].status == "VOIDED"
    assert isinstance(accounting.get_payments(TENANT).payments, list)

    projects = ProjectApi(client, base_url=f"{sandbox.url}/xero/projects.xro/2.0")
    user = projects.get_project_users(TENANT).items[0]
    project = projects.create_project(TENANT, ProjectCreateOrUpdate(contact_id=contact.contact_id, name="Contract", estimate_amount=1000))
    task = projects.create_task(
        TENANT,
        project.project_id,
        TaskCreateOrUpdate(name="CONSULT", rate=Amount(currency=CurrencyCode.EUR, value=100), charge_type=ChargeType.TIME),
    )
    worked = datetime(2026, 10, 30, 9, tzinfo=UTC)
    entry = projects.create_time_entry(
        TENANT,
        project.project_id,
        TimeEntry(user_id=user.user_id, task_id=task.task_id, date_utc=worked, duration=150, description="TE-1:v1"),
    )
    projects.update_time_entry(
        TENANT,
        project.project_id,
        entry.time_entry_id,
        TimeEntry(user_id=user.user_id, task_id=task.task_id, date_utc=worked, duration=180, description="TE-1:v2"),
    )
    assert [(e.time_entry_id, e.duration) for e in projects.get_time_entries(TENANT, project.project_id).items] == [
        (entry.time_entry_id, 180)
    ]
    projects.delete_time_entry(TENANT, project.project_id, entry.time_entry_id)
    assert not projects.get_time_entries(TENANT, project.project_id).items


def test_bamboohr_client_reads_the_directory_reports_changes_and_time_off(sandbox, vendor_hosts):
    """BambooHR as the roster flow uses it, through ``PyBambooHR`` and the documented base URL
    ``https://api.bamboohr.com/api/gateway.php/{companyDomain}/v1/`` (the sandbox also serves
    ``https://{companyDomain}.bamboohr.com/api/v1/``, which our hook calls): the API key as the Basic
    user name with any password, the directory, a custom report, changed employees and table rows
    since a moment, and approved time-off requests."""
    from datetime import datetime

    from PyBambooHR.PyBambooHR import PyBambooHR

    vendor_hosts["https://api.bamboohr.com"] = f"{sandbox.url}/bamboohr"
    bamboo = PyBambooHR(subdomain="ourfirm", api_key="sandbox-token")
    directory = bamboo.get_employee_directory()
    assert directory and all(e["id"] and "workEmail" in e for e in directory)
    report = bamboo.request_custom_report(
        field_list=["firstName", "lastName", "workEmail", "hireDate"], report_format="json", title="roster"
    )
    assert {e["id"] for e in report["employees"]} >= {e["id"] for e in directory}
    since = datetime(2020, 1, 1)
    assert bamboo.get_employee_changes(since=since)["employees"]
    assert bamboo.get_employee_changed_table("jobInfo", since=since)["employees"]
    time_off = bamboo.get_time_off_requests(start_date="2026-10-01", end_date="2026-12-31", status="approved")
    assert time_off and all(r["status"]["status"] == "approved" for r in time_off)
