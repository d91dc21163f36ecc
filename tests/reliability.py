"""What the fault suite injected and what it saw afterwards, printed at the end of ``make test``."""

from __future__ import annotations

REPORT = {"faults injected": 0, "survived": 0, "duplicates": 0, "lost rows": 0, "rows compared": 0, "generated payloads": 0}


def count(**increments: int) -> None:
    for key, value in increments.items():
        REPORT[key.replace("_", " ")] += value


def summary() -> str:
    return ", ".join(f"{key}: {value}" for key, value in REPORT.items())
