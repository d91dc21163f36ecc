"""The cross-system data audit: what in the CRM, the PSA, accounting and HR does not line up, read
from the systems themselves (read-only), before anything is synced and on any day after.

``backbone audit`` (``python -m backbone audit``) prints the findings as a table, CSV or JSON. What
it compares:

- **client names** across CRM companies, PSA clients and accounting customers, after
  normalisation (case, spacing, punctuation and legal suffixes such as Corp, Inc, B.V. dropped):
  a PSA client whose accounting customer is not found the way ``accounting_mapping.yaml`` finds it
  (by name, or an override) gets the closest accounting customer as a suggestion, with its score
  (``rapidfuzz``'s token-set ratio, 0–100); a CRM company spelled differently from its PSA client
  likewise;
- **duplicate customers** in accounting (two customers with one normalised name);
- **billing codes** in use in the PSA or offered on its billing-code list without a mapping, and
  mapped items accounting does not have;
- **people**: PSA people without an HR record (by e-mail) and without an accounting employee or vendor.

``backbone audit --accept`` writes the suggested client matches (score at or above
``--min-score``) into ``accounting_mapping.yaml``'s ``clients.overrides``; it prints the diff and
writes only with ``--yes``, so a person reviews it first.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import logging
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from backbone.accounting_mapping import AccountingMapping, normalise

log = logging.getLogger(__name__)

COLUMNS = ["check", "system", "subject", "detail", "suggestion", "score"]
SUGGESTION_MIN_SCORE = 80.0
"""Below this a fuzzy match is noise, not a suggestion."""
LEGAL_SUFFIXES = frozenset(
    {"ag", "bv", "co", "company", "corp", "corporation", "gmbh", "inc", "incorporated", "limited", "llc", "ltd", "nv", "plc", "sa", "sarl"}
)


def comparable_name(name: Any) -> str:
    """A company name as the audit compares it: case, accents kept, punctuation and legal suffixes
    dropped ("ACME Corporation" and "Acme Corp." are both "acme")."""
    text = re.sub(r"[.'’]", "", str(name or "").casefold())  # B.V. is bv, O'Neil is oneil
    words = re.sub(r"[^\w\s]", " ", text).split()
    while len(words) > 1 and words[-1] in LEGAL_SUFFIXES:
        words.pop()
    return " ".join(words)


@dataclass(frozen=True)
class Finding:
    check: str
    system: str
    subject: str
    detail: str
    suggestion: str = ""
    score: float | None = None
    subject_id: str = ""
    """The subject's id in its system (a PSA client id for ``--accept``)."""


@dataclass
class Snapshot:
    """What the audit reads from the four systems: ids → names, and the codes and people in use."""

    crm_companies: dict[str, str] = field(default_factory=dict)
    psa_clients: dict[str, str] = field(default_factory=dict)
    accounting_customers: dict[str, str] = field(default_factory=dict)
    accounting_items: set[str] = field(default_factory=set)
    accounting_people: set[str] = field(default_factory=set)
    """Match keys (normalised e-mail addresses) of accounting employees and vendors."""
    psa_billing_codes: set[str] = field(default_factory=set)
    """Billing codes on the PSA's approved time."""
    psa_offered_codes: set[str] = field(default_factory=set)
    """Billing codes the PSA offers on tasks (its billing-code list), used or not."""
    psa_people: dict[str, str] = field(default_factory=dict)
    """PSA person id → e-mail address."""
    hr_people: set[str] = field(default_factory=set)
    """Normalised e-mail addresses of HR's people, current and former."""


def _best(name: str, choices: dict[str, str]) -> tuple[str, float] | None:
    """The choice most like ``name`` (compared as ``comparable_name``), with its score, when it is a suggestion."""
    from rapidfuzz import fuzz, process

    if not choices:
        return None
    names = list(choices.values())
    found = process.extractOne(comparable_name(name), [comparable_name(n) for n in names], scorer=fuzz.token_set_ratio)
    if found is None or found[1] < SUGGESTION_MIN_SCORE:
        return None
    return names[found[2]], round(float(found[1]), 1)


def audit(snapshot: Snapshot, mapping: AccountingMapping) -> list[Finding]:
    """Every inconsistency in ``snapshot``, in a stable order."""
    return [
        *_duplicate_customers(snapshot),
        *_clients_without_customer(snapshot, mapping),
        *_crm_names_that_differ(snapshot),
        *_billing_codes(snapshot, mapping),
        *_people(snapshot, mapping),
    ]


def _duplicate_customers(snapshot: Snapshot) -> Iterable[Finding]:
    groups: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for ref_id, name in snapshot.accounting_customers.items():
        groups[comparable_name(name)].append((ref_id, name))
    for _, members in sorted(groups.items()):
        if len(members) > 1:
            listed = ", ".join(f"{name!r} ({ref_id})" for ref_id, name in sorted(members))
            yield Finding("duplicate_customer", "accounting", members[0][1], f"{len(members)} customers are one company: {listed}")


def _clients_without_customer(snapshot: Snapshot, mapping: AccountingMapping) -> Iterable[Finding]:
    customers = {normalise(name) for name in snapshot.accounting_customers.values()}
    for client_id, name in sorted(snapshot.psa_clients.items(), key=lambda item: item[1]):
        if mapping.customer_key(client_id, name) in customers:
            continue
        best = _best(name, snapshot.accounting_customers)
        yield Finding(
            "client_without_customer",
            "psa",
            name,
            f"PSA client {client_id} has no accounting customer named {name!r} (its time and invoices become exceptions)",
            suggestion=best[0] if best else "",
            score=best[1] if best else None,
            subject_id=client_id,
        )


def _crm_names_that_differ(snapshot: Snapshot) -> Iterable[Finding]:
    exact = {normalise(name) for name in snapshot.psa_clients.values()}
    for company_id, name in sorted(snapshot.crm_companies.items(), key=lambda item: item[1]):
        if normalise(name) in exact:
            continue
        best = _best(name, snapshot.psa_clients)
        if best is not None:  # a company with no PSA client at all is a deal not yet won, not a mismatch
            yield Finding(
                "client_name_differs",
                "crm",
                name,
                f"CRM company {company_id} is {name!r}; the PSA client looks like the same company under another name",
                suggestion=best[0],
                score=best[1],
                subject_id=company_id,
            )


def _billing_codes(snapshot: Snapshot, mapping: AccountingMapping) -> Iterable[Finding]:
    for code in sorted(snapshot.psa_billing_codes - set(mapping.billing_codes)):
        yield Finding(
            "billing_code_unmapped", "psa", code, f"billing code {code} is in use in the PSA and has no accounting item in the mapping"
        )
    for code in sorted(snapshot.psa_offered_codes - snapshot.psa_billing_codes - set(mapping.billing_codes)):
        yield Finding(
            "billing_code_unmapped",
            "psa",
            code,
            f"billing code {code} is offered in the PSA and has no accounting item in the mapping: time booked on it would be held",
        )
    items = {normalise(name) for name in snapshot.accounting_items}
    for code, target in sorted(mapping.billing_codes.items()):
        if normalise(target.item) not in items:
            yield Finding(
                "item_missing",
                "accounting",
                target.item,
                f"billing code {code} maps to item {target.item!r}, which accounting does not have",
            )


def _people(snapshot: Snapshot, mapping: AccountingMapping) -> Iterable[Finding]:
    for person_id, email in sorted(snapshot.psa_people.items(), key=lambda item: item[1] or ""):
        if normalise(email or "") not in snapshot.hr_people:
            yield Finding(
                "person_without_hr", "psa", email or person_id, f"PSA person {person_id} has no HR record with this e-mail address"
            )
        if mapping.person_key(person_id, email) not in snapshot.accounting_people:
            yield Finding(
                "person_without_accounting", "psa", email or person_id, f"PSA person {person_id} is no accounting employee or vendor"
            )


# --- reading the systems (read-only) ---------------------------------------------------------------


def read_snapshot(crm: Any, psa: Any, accounting: Any, hr: Any, *, since: datetime, until: datetime) -> Snapshot:
    """Read the four systems: accounting's customers, items and people; the PSA's clients, people
    and billing codes from its approved time of ``[since, until)``; the companies of the CRM's deals
    won in that window; HR's whole roster. Nothing is written anywhere."""
    from backbone.flows.closed_won import map_bundle
    from backbone.flows.timesheets import map_entry

    snapshot = Snapshot()
    for record in accounting.reference_records():
        if record.entity == "Customer":
            snapshot.accounting_customers[record.ref_id] = record.name
        elif record.entity == "Item":
            snapshot.accounting_items.add(record.name)
        elif record.entity in ("Employee", "Vendor", "User"):
            snapshot.accounting_people.add(record.match_key)
    for page in psa.iter_approved_time_entries(since, until):
        for payload in page:
            row = map_entry(payload)
            if row.get("client_id"):
                snapshot.psa_clients[str(row["client_id"])] = str(row.get("client_name") or "")
            if row.get("person_id"):
                snapshot.psa_people[str(row["person_id"])] = str(row.get("person_email") or "")
            if row.get("billing_code"):
                snapshot.psa_billing_codes.add(str(row["billing_code"]))
    snapshot.psa_offered_codes = _offered_codes(psa)
    for page in crm.won_deal_pages(since, until):
        for bundle in page:
            client = map_bundle(bundle)[0]
            if client and client.get("crm_company_id") and client.get("client_name"):
                snapshot.crm_companies[str(client["crm_company_id"])] = str(client["client_name"])
    for raw in hr.employees_report():
        email = hr.records.person(raw).get("email")
        if email:
            snapshot.hr_people.add(normalise(email))
    return snapshot


def _offered_codes(psa: Any) -> set[str]:
    """The PSA's billing-code list; a PSA without one (Kantata): none, only the codes in use are audited."""
    from backbone.hooks.psa import PsaCapabilityMissing

    try:
        return {str(c["code"]) for c in psa.billing_codes() if c.get("code")}
    except PsaCapabilityMissing:
        log.info("the PSA keeps no billing-code list; only the codes on its approved time are audited")
        return set()


def read_systems(*, days: int, until: datetime) -> Snapshot:
    """The snapshot through the Connections the flows use (``BACKBONE_*_CONN_ID``)."""
    from backbone.hooks.bamboohr import BambooHRHook
    from backbone.hooks.vendors import accounting_hook, crm_hook, psa_hook
    from backbone.settings import load_settings

    settings = load_settings()
    return read_snapshot(
        crm_hook(settings.crm_conn_id),
        psa_hook(settings.psa_conn_id),
        accounting_hook(settings.accounting_conn_id),
        BambooHRHook(settings.hr_conn_id),
        since=until - timedelta(days=days),
        until=until,
    )


# --- output and accepting matches --------------------------------------------------------------------


def as_rows(findings: Iterable[Finding]) -> list[dict[str, Any]]:
    return [{k: ("" if v is None else v) for k, v in asdict(f).items() if k in COLUMNS} for f in findings]


def to_csv_text(findings: Iterable[Finding]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(as_rows(findings))
    return out.getvalue()


def to_json_text(findings: Iterable[Finding]) -> str:
    return json.dumps(as_rows(findings), ensure_ascii=False, indent=2)


def summary(findings: list[Finding]) -> str:
    counts: dict[str, int] = defaultdict(int)
    for f in findings:
        counts[f.check] += 1
    if not counts:
        return "audit: the four systems line up (no findings)"
    return f"audit: {len(findings)} findings — " + ", ".join(f"{check} {n}" for check, n in sorted(counts.items()))


def accepted_overrides(findings: Iterable[Finding], *, min_score: float) -> dict[str, str]:
    """PSA client id → accounting customer name, for the suggestions good enough to accept."""
    return {
        f.subject_id: f.suggestion
        for f in findings
        if f.check == "client_without_customer" and f.suggestion and f.score is not None and f.score >= min_score
    }


def with_overrides(mapping_text: str, overrides: dict[str, str]) -> str:
    """``accounting_mapping.yaml``'s text with ``overrides`` added to ``clients.overrides`` (comments
    and layout elsewhere kept; existing overrides stay, a new one for the same client replaces it)."""
    import yaml

    match = re.search(r"(?m)^clients:\n(?:[ \t].*\n|\n)*?([ \t]+)overrides:[^\n]*\n((?:\1[ \t]+.*\n)*)", mapping_text)
    if match is None:
        raise ValueError("accounting_mapping.yaml has no clients.overrides to add to")
    current = (yaml.safe_load(mapping_text).get("clients") or {}).get("overrides") or {}
    merged = {**{str(k): str(v) for k, v in current.items()}, **overrides}
    indent = match.group(1)
    line = match.group(0)[match.group(0).index(f"{indent}overrides:") :].splitlines()[0]
    note = f"{indent}{line[line.index('#') :]}\n" if "#" in line else ""  # the line's comment, kept above the block
    block = (
        note
        + f"{indent}overrides:\n"
        + "".join(f"{indent}  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}\n" for k, v in sorted(merged.items()))
    )
    if not merged:
        block = note + f"{indent}overrides: {{}}\n"
    start = match.start(0) + match.group(0).index(f"{indent}overrides:")
    return mapping_text[:start] + block + mapping_text[match.end(0) :]


def save_findings(connection: Any, findings: list[Finding], *, run_id: str, found_at: datetime) -> int:
    """Replace the stored audit (``psa.audit_finding``) with ``findings``, in the caller's transaction."""
    from backbone.warehouse.tables import audit_finding

    connection.execute(audit_finding.delete())
    rows = [
        {
            "position": n,
            "check": f.check,
            "system": f.system,
            "subject": f.subject[:300],
            "detail": f.detail,
            "suggestion": f.suggestion[:300] or None,
            "score": f.score,
            "subject_id": f.subject_id or None,
            "run_id": run_id,
            "found_at": found_at,
        }
        for n, f in enumerate(findings, start=1)
    ]
    if rows:
        connection.execute(audit_finding.insert(), rows)
    return len(rows)


def mapping_diff(path: Path, new_text: str) -> str:
    old = path.read_text(encoding="utf-8")
    return "".join(difflib.unified_diff(old.splitlines(True), new_text.splitlines(True), str(path), f"{path} (accepted)"))
