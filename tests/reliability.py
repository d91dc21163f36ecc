"""What the fault suite injected and what it saw afterwards, printed at the end of ``make test``."""

from __future__ import annotations

REPORT = {
    "faults injected": 0,
    "survived": 0,
    "duplicates": 0,
    "lost rows": 0,
    "rows compared": 0,
    "generated payloads": 0,
    "poison quarantined": 0,
    "valid delivered": 0,
    "valid expected": 0,
    "races": 0,
    "races stopped cleanly": 0,
    "silent empty runs": 0,
    "token faults survived": 0,
}


def count(**increments: int) -> None:
    for key, value in increments.items():
        REPORT[key.replace("_", " ")] += value


def summary() -> str:
    r = REPORT
    lines = [
        ", ".join(
            f"{key}: {r[key]}" for key in ("faults injected", "survived", "duplicates", "lost rows", "rows compared", "generated payloads")
        ),
        f"poison records: {r['poison quarantined']} quarantined, valid delivered: {r['valid delivered']} of {r['valid expected']}",
        f"races: {r['races']} ({r['races stopped cleanly']} stopped cleanly), silent empty runs: {r['silent empty runs']}",
        f"token faults survived: {r['token faults survived']}",
    ]
    return "\n".join(lines)
