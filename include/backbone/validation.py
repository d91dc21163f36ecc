"""Great Expectations suites generated from the data dictionary, and row-level verdicts.

Vendors send values as text, so a field's type is checked as a pattern on its text; numeric
ranges are checked on a parsed shadow column (``<field>__number``). Each expectation carries
``meta.rule`` (e.g. ``project.contract_value.type``) and ``meta.reason`` so a failed row can
be quarantined with a sentence a person understands.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from backbone.data_dictionary import EntitySpec, load_entity

if TYPE_CHECKING:
    import great_expectations as gx
    import pandas as pd

log = logging.getLogger(__name__)
logging.getLogger("great_expectations").setLevel(logging.WARNING)
# GE matches with pandas' str.contains, which warns about groups in the dictionary's patterns; harmless.
warnings.filterwarnings("ignore", message="This pattern is interpreted as a regular expression, and has match groups")

NUMBER_SUFFIX = "__number"


@dataclass(frozen=True)
class RuleFailure:
    rule: str
    reason: str


@dataclass
class ValidationOutcome:
    """Verdict on one batch: which rows passed, and why each failed row failed."""

    entity: str
    row_count: int
    failures: dict[int, list[RuleFailure]] = field(default_factory=dict)
    failed_rules: dict[str, int] = field(default_factory=dict)
    """Rule id → number of rows that broke it: the run's summary of failed expectations."""

    @property
    def valid_indexes(self) -> list[int]:
        return [i for i in range(self.row_count) if i not in self.failures]

    def is_valid(self, index: int) -> bool:
        return index not in self.failures


def _expectation_specs(entity: EntitySpec) -> list[tuple[str, dict[str, Any], str, str]]:
    """(expectation class name, kwargs, rule id, reason) for every rule the dictionary states."""
    specs: list[tuple[str, dict[str, Any], str, str]] = []
    for f in entity.fields.values():
        rule = f"{entity.name}.{f.name}"
        if f.required:
            specs.append(("ExpectColumnValuesToNotBeNull", {"column": f.name}, f"{rule}.required", f"{f.name} is missing"))
        if f.type_pattern:
            specs.append(
                (
                    "ExpectColumnValuesToMatchRegex",
                    {"column": f.name, "regex": f.type_pattern},
                    f"{rule}.type",
                    f"{f.name} is not a valid {f.type}",
                )
            )
        if f.pattern:
            specs.append(
                (
                    "ExpectColumnValuesToMatchRegex",
                    {"column": f.name, "regex": f.pattern},
                    f"{rule}.pattern",
                    f"{f.name} does not match {f.pattern}",
                )
            )
        if f.allowed_values:
            specs.append(
                (
                    "ExpectColumnValuesToBeInSet",
                    {"column": f.name, "value_set": list(f.allowed_values)},
                    f"{rule}.allowed_values",
                    f"{f.name} is not one of {', '.join(f.allowed_values)}",
                )
            )
        if f.is_numeric and (f.min is not None or f.max is not None):
            specs.append(
                (
                    "ExpectColumnValuesToBeBetween",
                    {"column": f.name + NUMBER_SUFFIX, "min_value": f.min, "max_value": f.max, "strict_min": f.exclusive_min},
                    f"{rule}.range",
                    f"{f.name} is outside {'(' if f.exclusive_min else '['}{f.min}, {f.max}]",
                )
            )
        if f.max_length:
            specs.append(
                (
                    "ExpectColumnValueLengthsToBeBetween",
                    {"column": f.name, "max_value": f.max_length},
                    f"{rule}.max_length",
                    f"{f.name} is longer than {f.max_length} characters",
                )
            )
        if f.unique:
            specs.append(("ExpectColumnValuesToBeUnique", {"column": f.name}, f"{rule}.unique", f"{f.name} appears more than once"))
    return specs


@cache
def _context() -> gx.data_context.AbstractDataContext:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


@cache
def build_suite(entity_name: str) -> gx.ExpectationSuite:
    """The entity's expectation suite, generated from its dictionary entry (once per process)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    context = _context()
    suite = gx.ExpectationSuite(name=f"{entity_name}_suite")
    for class_name, kwargs, rule, reason in _expectation_specs(load_entity(entity_name)):
        suite.add_expectation(getattr(gxe, class_name)(**kwargs, meta={"rule": rule, "reason": reason}))
    return context.suites.add_or_update(suite)


@cache
def _validation_definition(entity_name: str) -> gx.ValidationDefinition:
    import great_expectations as gx

    context = _context()
    source = context.data_sources.add_or_update_pandas(f"{entity_name}_frames")
    asset = source.add_dataframe_asset(entity_name)
    batch = asset.add_batch_definition_whole_dataframe("batch")
    return context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=f"{entity_name}_validation", data=batch, suite=build_suite(entity_name))
    )


def to_frame(entity: EntitySpec, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows of canonical text values → the frame the suite checks (with numeric shadows).

    Built column by column: each value becomes its text, stripped; None and blank text become None."""
    import pandas as pd

    columns: dict[str, pd.Series] = {}
    for name in entity.field_names:
        values = (row.get(name) for row in rows)
        columns[name] = pd.Series([None if value is None else (str(value).strip() or None) for value in values], dtype=object)
    frame = pd.DataFrame(columns, columns=entity.field_names)
    for f in entity.fields.values():
        if f.is_numeric:
            frame[f.name + NUMBER_SUFFIX] = pd.to_numeric(frame[f.name], errors="coerce")
    return frame


def as_dict(value: Any) -> dict[str, Any]:
    """A vendor's nested object, or an empty one when the vendor sent something else there."""
    return value if isinstance(value, dict) else {}


def validate_rows(entity_name: str, rows: list[dict[str, Any]]) -> ValidationOutcome:
    """Validate canonical rows of one entity against its generated suite."""
    entity = load_entity(entity_name)
    outcome = ValidationOutcome(entity=entity_name, row_count=len(rows))
    if not rows:
        return outcome
    frame = to_frame(entity, rows)
    result = _validation_definition(entity_name).run(batch_parameters={"dataframe": frame}, result_format={"result_format": "COMPLETE"})
    for expectation_result in result.results:
        if expectation_result.success:
            continue
        meta = expectation_result.expectation_config.meta or {}
        if expectation_result.exception_info and expectation_result.exception_info.get("raised_exception"):
            raise RuntimeError(
                f"expectation {meta.get('rule')} could not run: {expectation_result.exception_info.get('exception_message')}"
            )
        indexes = expectation_result.result.get("unexpected_index_list") or []
        failure = RuleFailure(rule=meta["rule"], reason=meta["reason"])
        outcome.failed_rules[failure.rule] = len(indexes)
        for index in indexes:
            outcome.failures.setdefault(int(index), []).append(failure)
    if outcome.failures:
        log.info(
            "%s: %d of %d rows failed validation: %s",
            entity_name,
            len(outcome.failures),
            len(rows),
            ", ".join(f"{rule} ({n})" for rule, n in sorted(outcome.failed_rules.items())),
        )
    return outcome


class SchemaDrift:
    """Fields a vendor sends that we do not know (ignored, reported) or no longer sends (its rows fail
    their ``required`` rules, so they are quarantined with a reason instead of failing the run)."""

    def __init__(self, known_fields: frozenset[str]):
        self.known = known_fields
        self.new_fields: dict[str, int] = {}
        self.missing_fields: dict[str, int] = {}

    def observe(self, payload: dict[str, Any]) -> None:
        keys = set(payload)
        for name in keys - self.known:
            self.new_fields[name] = self.new_fields.get(name, 0) + 1
        for name in self.known - keys:
            self.missing_fields[name] = self.missing_fields.get(name, 0) + 1

    def report(self) -> dict[str, dict[str, int]]:
        return {"new_fields": dict(sorted(self.new_fields.items())), "missing_fields": dict(sorted(self.missing_fields.items()))}

    def __bool__(self) -> bool:
        return bool(self.new_fields or self.missing_fields)
