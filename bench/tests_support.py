"""Synthetic PSA time-entry payloads for the validation benchmark (the PSA API's wire shape)."""

from __future__ import annotations


def entry_payloads(n: int) -> list[dict]:
    return [
        {
            "id": f"TE-{i:09d}",
            "version": 1,
            "spent_date": f"2026-10-{26 + i % 5}",
            "hours": ["1.25", "2.5", "4", "7.75"][i % 4],
            "billable": True,
            "billable_rate": "110.00",
            "currency": "EUR",
            "approval_status": "approved",
            "approved_at": "2026-10-30T14:00:00.000Z",
            "updated_at": "2026-10-30T13:00:00.000Z",
            "notes": "Work",
            "user": {"id": f"EMP-{i % 2000:05d}", "name": "Ann Smith", "email": f"p{i % 2000}@people.example", "type": "employee"},
            "client": {"id": f"CL-{i % 120:05d}", "name": "Acme"},
            "project": {"id": f"PJ-{i % 300:05d}", "name": "Data platform"},
            "task": {"id": "TK-CONSULT", "name": "Consulting", "billing_code": "CONSULT"},
        }
        for i in range(n)
    ]
