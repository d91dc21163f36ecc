"""Load the data dictionary (``include/backbone/dictionary/*.yaml``) into typed objects."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any

import yaml

DICTIONARY_DIR = Path(__file__).parent / "dictionary"

# What each dictionary type means on the wire: vendors send values as strings, so a type is
# checked as a pattern on the text before the value is cast for loading.
TYPE_PATTERNS: dict[str, str] = {
    "integer": r"^-?\d+$",
    "decimal": r"^-?\d+(\.\d+)?$",
    "date": r"^\d{4}-\d{2}-\d{2}$",
    "datetime": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$",
    "email": r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
    "url": r"^https?://\S+$",
}
NUMERIC_TYPES = frozenset({"integer", "decimal"})


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str
    required: bool = False
    unique: bool = False
    pattern: str | None = None
    allowed_values: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    exclusive_min: bool = False
    """``min`` itself is not allowed (e.g. hours must be more than 0)."""
    max_length: int | None = None
    max_age_days: int | None = None
    """For dates: how many days before the end of the run's interval the value may lie (plausibility:
    a work date of 0001-01-01 is a typo, not history)."""
    description: str = ""
    sources: dict[str, str | None] = field(default_factory=dict)

    @property
    def type_pattern(self) -> str | None:
        return TYPE_PATTERNS.get(self.type)

    @property
    def is_numeric(self) -> bool:
        return self.type in NUMERIC_TYPES


@dataclass(frozen=True)
class EntitySpec:
    name: str
    key: str
    description: str
    fields: dict[str, FieldSpec]

    @property
    def field_names(self) -> list[str]:
        return list(self.fields)

    def source_field(self, field_name: str, system: str) -> str | None:
        return self.fields[field_name].sources.get(system)


FIELD_KEYS = frozenset(f.name for f in fields(FieldSpec)) - {"name"}
"""The properties a dictionary field may state: every ``FieldSpec`` attribute but its name."""
KNOWN_TYPES = frozenset({*TYPE_PATTERNS, "string", "enum", "boolean"})


class DictionaryError(ValueError):
    """A dictionary file says something the loader cannot use; the message names the file and field."""


def _field(name: str, raw: Any, path: Path) -> FieldSpec:
    where = f"{path.name}: field {name!r}"
    if not isinstance(raw, dict):
        raise DictionaryError(f"{where} must be a mapping of properties (type, required, ...), not {type(raw).__name__}")
    if "type" not in raw:
        raise DictionaryError(f"{where} has no type; give one of {', '.join(sorted(KNOWN_TYPES))}")
    if raw["type"] not in KNOWN_TYPES:
        raise DictionaryError(f"{where} has the unknown type {raw['type']!r}; use one of {', '.join(sorted(KNOWN_TYPES))}")
    if unknown := set(raw) - FIELD_KEYS:
        raise DictionaryError(f"{where} has unknown properties {sorted(unknown)}; known: {', '.join(sorted(FIELD_KEYS))}")
    for number in ("min", "max", "max_length", "max_age_days"):
        if raw.get(number) is not None and (isinstance(raw[number], bool) or not isinstance(raw[number], int | float)):
            raise DictionaryError(f"{where}: {number} must be a number, not {raw[number]!r}")
    allowed = raw.get("allowed_values")
    return FieldSpec(
        name=name,
        type=raw["type"],
        required=bool(raw.get("required", False)),
        unique=bool(raw.get("unique", False)),
        pattern=raw.get("pattern"),
        allowed_values=tuple(str(v) for v in allowed) if allowed else None,
        min=raw.get("min"),
        max=raw.get("max"),
        exclusive_min=bool(raw.get("exclusive_min", False)),
        max_length=raw.get("max_length"),
        max_age_days=raw.get("max_age_days"),
        description=str(raw.get("description", "")).strip(),
        sources=dict(raw.get("sources") or {}),
    )


@cache
def load_entity(name: str) -> EntitySpec:
    """Return the dictionary entry of one canonical entity (``client``, ``project``, ...)."""
    path = DICTIONARY_DIR / f"{name}.yaml"
    if not path.exists():
        raise KeyError(f"no data dictionary entry for entity {name!r} (looked for {path})")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DictionaryError(f"{path.name} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("fields"), dict) or not raw["fields"]:
        raise DictionaryError(f"{path.name} needs 'entity', 'key' and a mapping of 'fields'")
    for required in ("entity", "key"):
        if not raw.get(required):
            raise DictionaryError(f"{path.name} has no {required!r}")
    fields = {str(fname): _field(str(fname), fraw, path) for fname, fraw in raw["fields"].items()}
    if raw["key"] not in fields:
        raise DictionaryError(f"{path.name}: key {raw['key']!r} is not one of its fields")
    return EntitySpec(name=raw["entity"], key=raw["key"], description=raw.get("description", ""), fields=fields)


NOT_ENTITIES = frozenset({"glossary", "accounting_mapping", "crm_mapping", "cost_rates"})


def entity_names() -> list[str]:
    return sorted(p.stem for p in DICTIONARY_DIR.glob("*.yaml") if p.stem not in NOT_ENTITIES)
