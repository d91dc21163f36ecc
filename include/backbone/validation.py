"""Great Expectations suites generated from the data dictionary, and row-level verdicts.

Vendors send values as text, so a field's type is checked as a pattern on its text; numeric
ranges are checked on a parsed shadow column (``<field>__number``). Each expectation carries
``meta.rule`` (e.g. ``project.contract_value.type``) and ``meta.reason`` so a failed row can
be quarantined with a sentence a person understands.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from backbone.data_dictionary import EntitySpec, load_entity
from backbone.expectations import dictionary_expectation

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


def build_suite(entity_name: str, columns: frozenset[str] | None = None) -> gx.ExpectationSuite:
    """The entity's expectation suite, generated from its dictionary entry (once per process);
    with ``columns``, only the expectations on those frame columns (a part of the suite). However
    it is called, one suite name is built once and then reused by every run in the process."""
    return _suite(entity_name, columns)


@cache
def _suite(entity_name: str, columns: frozenset[str] | None) -> gx.ExpectationSuite:
    import great_expectations as gx

    context = _context()
    suite = gx.ExpectationSuite(name=_suite_name(entity_name, columns))
    for order, (class_name, kwargs, rule, reason) in enumerate(_expectation_specs(load_entity(entity_name))):
        if columns is None or kwargs["column"] in columns:
            expectation = dictionary_expectation(class_name)(**kwargs, meta={"rule": rule, "reason": reason, "order": order})
            suite.add_expectation(expectation)
    return context.suites.add_or_update(suite)


def _suite_name(entity_name: str, columns: frozenset[str] | None) -> str:
    if columns is None:
        return f"{entity_name}_suite"
    return f"{entity_name}_suite_" + hashlib.sha1("|".join(sorted(columns)).encode()).hexdigest()[:12]


@cache
def _batch_definition() -> gx.core.batch_definition.BatchDefinition:
    """Where every frame is handed to GE: one whole-dataframe batch definition, whatever its entity
    or columns (the suite a run checks is given with the batch, not kept beside it)."""
    source = _context().data_sources.add_or_update_pandas("frames")
    return source.add_dataframe_asset("frame").add_batch_definition_whole_dataframe("batch")


def _clean(value: Any) -> str | None:
    """A vendor value as the suite checks it: its text, stripped; None and blank text are None."""
    return None if value is None else (str(value).strip() or None)


def to_frame(entity: EntitySpec, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows of canonical text values → the frame the suite checks (with numeric shadows).

    Built column by column: each value becomes its text, stripped; None and blank text become None."""
    import pandas as pd

    columns: dict[str, pd.Series] = {}
    for name in entity.field_names:
        columns[name] = pd.Series([_clean(row.get(name)) for row in rows], dtype=object)
    frame = pd.DataFrame(columns, columns=entity.field_names)
    for f in entity.fields.values():
        if f.is_numeric:
            frame[f.name + NUMBER_SUFFIX] = pd.to_numeric(frame[f.name], errors="coerce")
    return frame


def as_dict(value: Any) -> dict[str, Any]:
    """A vendor's nested object, or an empty one when the vendor sent something else there."""
    return value if isinstance(value, dict) else {}


VERDICT_CACHE_LIMIT = 20_000
"""Distinct values per field whose verdicts are remembered (then the field's memory starts over).
At 200,000 the weekly flow at 1M entries (100,000 people) remembered 683,000 values and its peak
went from 335 MB after extraction to 588 MB in validation; at 20,000 it remembers at most about
105,000, peaks at 493 MB, and validates in the same time (144.6 s against 141.0 s)."""

Failed = tuple[tuple[int, str, str], ...]
"""The expectations one value fails: (position in the suite, rule, reason) each."""
_verdicts: dict[tuple[str, str, str], dict[str | None, Failed]] = {}
"""(entity, field, the field's rules) → cleaned value → what it fails. A column expectation's
verdict on a value depends on the value and the rule alone (``unique`` is a property of rows and
never cached), so a value once judged by the same rules is not sent to GE again; a dictionary
changed in the process (new rules) starts afresh."""


def _rules_of(entity: EntitySpec) -> dict[str, str]:
    """Field → a fingerprint of the expectations on it (and its numeric shadow), with their positions."""
    found: dict[str, list[str]] = defaultdict(list)
    for order, (class_name, kwargs, rule, _) in enumerate(_expectation_specs(entity)):
        found[str(kwargs["column"]).removesuffix(NUMBER_SUFFIX)].append(f"{order}:{class_name}:{rule}:{sorted(kwargs.items())!r}")
    return {name: hashlib.sha1("|".join(specs).encode()).hexdigest() for name, specs in found.items()}


def validate_rows(entity_name: str, rows: list[dict[str, Any]], *, compact: bool = True) -> ValidationOutcome:
    """Validate canonical rows of one entity against its generated suite.

    Every rule is one Great Expectations expectation, run by GE. A batch is judged in two parts:
    each field whose values repeat (a billing code, a date, hours: a few dozen values in 5,000 rows)
    on its distinct values only, and only on those not judged before in this process; the ``unique``
    fields and fields of mostly distinct values on every row. A failed value fails every row holding
    it. ``compact=False`` runs the whole suite on every row instead: the same verdicts (a property
    test holds them equal), at about 3 times the cost once the repeating values are known (160-200 ms
    against 50 ms for a chunk of 40-500 time entries; the first chunk of a process costs the same
    either way)."""
    entity = load_entity(entity_name)
    outcome = ValidationOutcome(entity=entity_name, row_count=len(rows))
    if not rows:
        return outcome
    found = _judge_compact(entity, rows) if compact else _run_suite(entity_name, None, to_frame(entity, rows))
    for _, failure, indexes in sorted(found, key=lambda f: f[0]):  # the suite's order, as one run reports it
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


def _run_suite(entity_name: str, columns: frozenset[str] | None, frame: pd.DataFrame) -> list[tuple[int, RuleFailure, list[int]]]:
    """GE's verdict on a frame: (position in the suite, failure, failed frame positions) per failed expectation.

    The suite runs on the frame's batch (``Batch.validate``), not through a ``ValidationDefinition``:
    that would also serialise every result into the context's results store, which the ephemeral
    context keeps in memory for the life of the process (a fifth of a run's time, and memory that
    grows with every chunk). The outcome, with the failed rows and their reasons, is the record."""
    batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
    result = batch.validate(build_suite(entity_name, columns), result_format={"result_format": "COMPLETE"})
    found = []
    for expectation_result in result.results:
        if expectation_result.success:
            continue
        meta = expectation_result.expectation_config.meta or {}
        if expectation_result.exception_info and expectation_result.exception_info.get("raised_exception"):
            raise RuntimeError(
                f"expectation {meta.get('rule')} could not run: {expectation_result.exception_info.get('exception_message')}"
            )
        indexes = [int(i) for i in expectation_result.result.get("unexpected_index_list") or []]
        found.append((int(meta["order"]), RuleFailure(rule=meta["rule"], reason=meta["reason"]), indexes))
    return found


def _judge_compact(entity: EntitySpec, rows: list[dict[str, Any]]) -> list[tuple[int, RuleFailure, list[int]]]:
    import pandas as pd

    distinct: dict[str, tuple[Any, list[str | None]]] = {}
    whole: dict[str, list[str | None]] = {}
    for f in entity.fields.values():
        column = pd.Series([row.get(f.name) for row in rows], dtype=object).to_numpy()
        if not f.unique:
            codes, values = _factorized(column)
            if len(values) * 2 <= len(rows):
                distinct[f.name] = (codes, values)
                continue
        whole[f.name] = [_clean(v) for v in column]
    found: list[tuple[int, RuleFailure, list[int]]] = []
    if whole:
        found += _run_suite(entity.name, _frame_columns(entity, whole), _frame(entity, whole, len(rows)))
    if distinct:
        found += _judge_distinct(entity, distinct)
    return found


def _factorized(column: Any) -> tuple[Any, list[str | None]]:
    """(row → position, distinct cleaned values) of a column of raw values."""
    import numpy as np
    import pandas as pd

    if _distinct_as_sent(column):
        codes, values = pd.factorize(column, use_na_sentinel=False)
        return codes, [None if _is_missing(v) else _clean(v) for v in values]
    # Mixed types (1 and True are one key to pandas, not to the suite): distinct by their text.
    codes, values = pd.factorize(np.array([_clean(v) for v in column], dtype=object), use_na_sentinel=False)
    return codes, [None if _is_missing(v) else v for v in values]


def _judge_distinct(entity: EntitySpec, distinct: dict[str, tuple[Any, list[str | None]]]) -> list[tuple[int, RuleFailure, list[int]]]:
    """Failures of the repeating fields: values not judged before go to GE (their fields' part of
    the suite), then each row takes the verdict of its value."""
    import numpy as np

    rules = _rules_of(entity)
    new: dict[str, list[str | None]] = {}
    for name, (_, values) in distinct.items():
        known = _verdicts.setdefault((entity.name, name, rules.get(name, "")), {})
        if len(known) > VERDICT_CACHE_LIMIT:
            known.clear()
        unseen = list(dict.fromkeys(v for v in values if v not in known))
        if unseen:
            new[name] = unseen
    if new:
        length = max(len(v) for v in new.values())
        judged: dict[str, dict[str | None, list[tuple[int, str, str]]]] = {name: {v: [] for v in values} for name, values in new.items()}
        for order, failure, positions in _run_suite(entity.name, _frame_columns(entity, new), _frame(entity, new, length)):
            name = _field_of(failure.rule, entity)
            values = new[name]
            for position in positions:
                if position < len(values):  # beyond: padding, the first value again
                    judged[name][values[position]].append((order, failure.rule, failure.reason))
        for name, verdicts in judged.items():
            known = _verdicts[(entity.name, name, rules.get(name, ""))]
            for value, fails in verdicts.items():
                known[value] = tuple(dict.fromkeys(fails))
    by_expectation: dict[tuple[int, str, str], list[Any]] = {}
    for name, (codes, values) in distinct.items():
        known = _verdicts[(entity.name, name, rules.get(name, ""))]
        failing = [(position, known[value]) for position, value in enumerate(values) if known[value]]
        if not failing:
            continue
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(values) + 1))
        for position, fails in failing:
            for fail in fails:
                by_expectation.setdefault(fail, []).append(order[bounds[position] : bounds[position + 1]])
    return [
        (order, RuleFailure(rule=rule, reason=reason), sorted(int(i) for i in np.concatenate(parts)))
        for (order, rule, reason), parts in by_expectation.items()
    ]


def _field_of(rule: str, entity: EntitySpec) -> str:
    """The field a rule id (``<entity>.<field>.<kind>``) is about."""
    return rule.removeprefix(f"{entity.name}.").rsplit(".", 1)[0]


def _frame_columns(entity: EntitySpec, fields: dict[str, Any]) -> frozenset[str]:
    return frozenset(fields) | {f.name + NUMBER_SUFFIX for f in entity.fields.values() if f.is_numeric and f.name in fields}


def _frame(entity: EntitySpec, fields: dict[str, list[str | None]], length: int) -> pd.DataFrame:
    """The fields' cleaned values as a frame of ``length`` rows (a shorter list padded with its first
    value, which passes or fails as it does), with the numeric shadows of numeric fields."""
    import pandas as pd

    frame = pd.DataFrame(
        {name: pd.Series([*values, *([values[0]] * (length - len(values)))], dtype=object) for name, values in fields.items()}
    )
    for f in entity.fields.values():
        if f.is_numeric and f.name in fields:
            frame[f.name + NUMBER_SUFFIX] = pd.to_numeric(frame[f.name], errors="coerce")
    return frame


def _distinct_as_sent(column: Any) -> bool:
    """Can the column's raw values be told apart by hashing? Yes when all are text, or all integers,
    with None for missing ones (a float NaN would merge with None, and 1 with True or 1.0)."""
    import pandas as pd

    if pd.api.types.infer_dtype(column, skipna=True) not in ("string", "integer", "empty"):
        return False
    return all(v is None for v in column[pd.isna(column)])


def _is_missing(value: Any) -> bool:
    """factorize gives NaN for the rows' missing values."""
    return value is None or (isinstance(value, float) and value != value)


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
