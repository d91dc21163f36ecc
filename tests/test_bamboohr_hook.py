"""BambooHRHook against the sandbox, and the sandbox's answers against BambooHR's OpenAPI document."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import jsonschema
import pytest
import requests
import yaml

from backbone.hooks.bamboohr import BambooHRHook
from backbone.http import FatalApiError
from backbone_sandbox.faults import FaultRule

SPEC = Path(__file__).resolve().parent / "specs" / "bamboohr" / "public.yaml"


@pytest.fixture
def hook(sandbox) -> BambooHRHook:
    return BambooHRHook()


def test_report_changes_tables_and_time_off(hook, sandbox):
    hr = sandbox.state.hr
    everyone = hook.employees_report()
    assert {e["id"] for e in everyone} == set(hr.employees)
    assert hook.employees_report([hr.cases["rehire"]])[0]["originalHireDate"] == "2022-01-03"
    changes = hook.changed_employees(datetime(2026, 10, 31, tzinfo=UTC))
    assert changes[hr.cases["deleted"]]["action"] == "Deleted"
    skills = hook.changed_table("customSkills", datetime(1970, 1, 1, tzinfo=UTC))
    assert set(skills) == set(hr.employees)
    requests_ = hook.time_off_requests(date(2026, 10, 1), date(2027, 3, 1))
    assert {str(r["id"]) for r in requests_} == {str(r["id"]) for r in hr.requests}


def test_a_wrong_api_key_fails_at_once(sandbox, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_BAMBOOHR_DEFAULT", f'{{"conn_type": "bamboohr", "host": "{sandbox.url}/bamboohr", "password": "wrong"}}'
    )
    with pytest.raises(FatalApiError, match="401"):
        BambooHRHook().employees_report()


def test_503_today_and_429_with_retry_after_later_are_both_retried(hook, sandbox):
    sandbox.state.faults.arm(
        [
            FaultRule(kind="status", status=503, path_contains="/time_off", times=2),
            FaultRule(kind="status", status=429, retry_after=1, path_contains="/time_off", times=1),
        ]
    )
    assert hook.time_off_requests(date(2026, 10, 1), date(2026, 12, 1))
    assert sandbox.state.faults.fired["status"] == 3


def _schema(spec: dict, path: str, method: str) -> dict:
    schema = spec["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
    return {**schema, "components": spec.get("components", {})}


def test_sandbox_answers_match_the_bamboohr_spec(sandbox):
    spec = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    auth = ("sandbox-token", "x")
    base = f"{sandbox.url}/bamboohr/api/v1"
    checks = [
        ("/api/v1/employees/directory", "get", requests.get(f"{base}/employees/directory", auth=auth, timeout=10)),
        (
            "/api/v1/reports/custom",
            "post",
            requests.post(
                f"{base}/reports/custom", params={"format": "json"}, json={"fields": ["firstName", "hireDate"]}, auth=auth, timeout=10
            ),
        ),
        (
            "/api/v1/employees/changed",
            "get",
            requests.get(f"{base}/employees/changed", params={"since": "2026-01-01T00:00:00Z"}, auth=auth, timeout=10),
        ),
        (
            "/api/v1/employees/changed/tables/{table}",
            "get",
            requests.get(f"{base}/employees/changed/tables/jobInfo", params={"since": "2026-01-01T00:00:00Z"}, auth=auth, timeout=10),
        ),
        (
            "/api/v1/time_off/requests",
            "get",
            requests.get(f"{base}/time_off/requests", params={"start": "2026-10-01", "end": "2027-01-31"}, auth=auth, timeout=10),
        ),
    ]
    for path, method, answer in checks:
        assert answer.status_code == 200, (path, answer.text)
        jsonschema.validate(answer.json(), _schema(spec, path, method))
    bad = requests.get(f"{base}/employees/changed", params={"since": "yesterday"}, auth=auth, timeout=10)
    assert bad.status_code == 400


def test_every_request_the_hook_sends_follows_the_bamboohr_spec(hook, sandbox, monkeypatch):
    """What BambooHRHook sends (paths, query parameters, the report body) validated with openapi-core
    against BambooHR's own OpenAPI document, as if sent to ``https://{companyDomain}.bamboohr.com``."""
    from openapi_core import Config, OpenAPI
    from openapi_core.contrib.requests import RequestsOpenAPIRequest

    spec = OpenAPI.from_dict(yaml.safe_load(SPEC.read_text(encoding="utf-8")), config=Config(spec_validator_cls=None))
    sent: list[str] = []
    send = requests.Session.send

    def checked(self, request, **kwargs):  # noqa: ANN001, ANN003, ANN202 - requests' signature
        as_sent = request.copy()
        as_sent.url = request.url.replace(f"{sandbox.url}/bamboohr", "https://companySubDomain.bamboohr.com")
        spec.validate_request(RequestsOpenAPIRequest(as_sent))
        sent.append(f"{request.method} {request.path_url.split('?')[0]}")
        return send(self, request, **kwargs)

    monkeypatch.setattr(requests.Session, "send", checked)
    hook.employees_report()
    hook.employees_report(["101"])
    hook.changed_employees(datetime(2026, 10, 31, tzinfo=UTC))
    hook.changed_table("customSkills", datetime(1970, 1, 1, tzinfo=UTC))
    hook.time_off_requests(date(2026, 10, 1), date(2027, 3, 1))
    assert {s.removeprefix("POST ").removeprefix("GET ").removeprefix("/bamboohr") for s in sent} >= {
        "/api/v1/reports/custom",
        "/api/v1/employees/changed",
        "/api/v1/employees/changed/tables/customSkills",
        "/api/v1/time_off/requests",
    }


@pytest.mark.parametrize("empty", ["", "0000-00-00", "0000-00-00 00:00:00", None])
def test_bamboohrs_empty_and_zero_dates_mean_no_date(empty):
    """BambooHR answers "no termination date" as ``0000-00-00`` (the MySQL zero date) or an empty
    string; connectors for it treat both as empty (faros-ai/airbyte-connectors#592, "BambooHR: Handle
    unsupported date formats"). A person never terminated is not an invalid record."""
    from backbone.hooks.bamboohr import BambooHRRecords

    records = BambooHRRecords()
    person = records.person({"id": "7", "hireDate": "2024-01-08", "originalHireDate": empty, "terminationDate": empty})
    assert (person["hire_date"], person["original_hire_date"], person["termination_date"]) == ("2024-01-08", None, None)
    assert records.certification({"employeeId": 7, "customCertification": "AWS", "customExpirationDate": empty})["expires_on"] is None
    assert records.history({"date": empty})["effective_date"] is None
