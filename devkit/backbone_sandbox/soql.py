"""The part of SOQL the sandbox answers: SELECT fields FROM object [WHERE ...] [ORDER BY ...] [LIMIT n].

WHERE takes AND, OR, NOT and parentheses over ``field op value`` and ``field [NOT] IN (...)``;
values are quoted strings, numbers, true/false/null, dates and datetimes. Relationship fields
(``Account.Name``) are read through nested records. Anything else is a MALFORMED_QUERY.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<op><=|>=|!=|<>|=|<|>|\(|\)|,)"
    r"|(?P<lit>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))?|-?\d+(?:\.\d+)?)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)
KEYWORDS = {
    "SELECT",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "IN",
    "ORDER",
    "BY",
    "ASC",
    "DESC",
    "LIMIT",
    "OFFSET",
    "TRUE",
    "FALSE",
    "NULL",
    "NULLS",
    "FIRST",
    "LAST",
}


class SoqlError(ValueError):
    """The query is not SOQL this sandbox understands (Salesforce: MALFORMED_QUERY)."""


@dataclass
class Query:
    fields: list[str]
    sobject: str
    where: Any = None
    order_by: list[tuple[str, bool]] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise SoqlError(f"unexpected token at position {pos}: {text[pos : pos + 20]!r}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "word" and value.upper() in KEYWORDS:
            kind, value = "kw", value.upper()
        tokens.append((kind, value))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str):
        self.tokens = tokenize(text)
        self.pos = 0

    def peek(self, offset: int = 0) -> tuple[str, str]:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else ("end", "")

    def take(self, kind: str, value: str | None = None) -> str:
        got_kind, got = self.peek()
        if got_kind != kind or (value is not None and got != value):
            raise SoqlError(f"expected {value or kind}, found {got or 'end of query'!r}")
        self.pos += 1
        return got

    def accept(self, kind: str, value: str) -> bool:
        if self.peek() == (kind, value):
            self.pos += 1
            return True
        return False

    def query(self) -> Query:
        self.take("kw", "SELECT")
        fields = [self.take("word")]
        while self.accept("op", ","):
            fields.append(self.take("word"))
        self.take("kw", "FROM")
        query = Query(fields=fields, sobject=self.take("word"))
        if self.accept("kw", "WHERE"):
            query.where = self.disjunction()
        if self.accept("kw", "ORDER"):
            self.take("kw", "BY")
            while True:
                name = self.take("word")
                descending = self.accept("kw", "DESC")
                if not descending:
                    self.accept("kw", "ASC")
                query.order_by.append((name, descending))
                if not self.accept("op", ","):
                    break
        if self.accept("kw", "LIMIT"):
            query.limit = int(self.take("lit"))
        if self.accept("kw", "OFFSET"):
            query.offset = int(self.take("lit"))
        if self.peek()[0] != "end":
            raise SoqlError(f"unexpected {self.peek()[1]!r} after the query")
        return query

    def disjunction(self) -> Any:
        terms = [self.conjunction()]
        while self.accept("kw", "OR"):
            terms.append(self.conjunction())
        return ("or", terms) if len(terms) > 1 else terms[0]

    def conjunction(self) -> Any:
        factors = [self.factor()]
        while self.accept("kw", "AND"):
            factors.append(self.factor())
        return ("and", factors) if len(factors) > 1 else factors[0]

    def factor(self) -> Any:
        if self.accept("kw", "NOT"):
            return ("not", self.factor())
        if self.accept("op", "("):
            inner = self.disjunction()
            self.take("op", ")")
            return inner
        name = self.take("word")
        negated = self.accept("kw", "NOT")
        if self.accept("kw", "IN"):
            self.take("op", "(")
            values = [self.value()]
            while self.accept("op", ","):
                values.append(self.value())
            self.take("op", ")")
            return ("in", name, values, negated)
        if negated:
            raise SoqlError("NOT must be followed by IN here")
        return ("cmp", name, self.take("op"), self.value())

    def value(self) -> Any:
        kind, text = self.peek()
        self.pos += 1
        if kind == "str":
            return text[1:-1].replace("\\'", "'").replace("\\\\", "\\")
        if kind == "kw" and text in ("TRUE", "FALSE"):
            return text == "TRUE"
        if kind == "kw" and text == "NULL":
            return None
        if kind == "lit":
            return literal(text)
        raise SoqlError(f"expected a value, found {text!r}")


def literal(text: str) -> Any:
    if "T" in text:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    if text.count("-") == 2 and not text.startswith("-"):
        return date.fromisoformat(text)
    return float(text)


def parse(text: str) -> Query:
    return _Parser(text).query()


def read_field(record: dict[str, Any], name: str) -> Any:
    value: Any = record
    for step in name.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return value


def _comparable(value: Any, like: Any) -> Any:
    """A record value in the type of the literal it is compared with."""
    if value is None or like is None:
        return value
    if isinstance(like, datetime):
        return salesforce_datetime(value) if isinstance(value, str) else value
    if isinstance(like, date):
        return date.fromisoformat(value[:10]) if isinstance(value, str) else value
    if isinstance(like, float) and not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    return value


def salesforce_datetime(text: str) -> datetime:
    """``2026-11-27T10:00:00.000+0000`` (Salesforce's form) or any ISO datetime."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def matches(record: dict[str, Any], condition: Any) -> bool:
    if condition is None:
        return True
    kind = condition[0]
    if kind == "and":
        return all(matches(record, c) for c in condition[1])
    if kind == "or":
        return any(matches(record, c) for c in condition[1])
    if kind == "not":
        return not matches(record, condition[1])
    if kind == "in":
        _, name, values, negated = condition
        value = read_field(record, name)
        found = any(_comparable(value, v) == v for v in values)
        return found != negated
    _, name, op, literal_value = condition
    value = _comparable(read_field(record, name), literal_value)
    if op == "=":
        return value == literal_value
    if op in ("!=", "<>"):
        return value != literal_value
    if value is None or literal_value is None:
        return False
    try:
        return {"<": value < literal_value, "<=": value <= literal_value, ">": value > literal_value, ">=": value >= literal_value}[op]
    except TypeError:
        return False


def run(query: Query, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Filter, sort and cut records as the query says (fields are picked by the caller)."""
    chosen = [r for r in records if matches(r, query.where)]
    for name, descending in reversed(query.order_by):
        chosen.sort(key=lambda r: (read_field(r, name) is not None, _sort_key(read_field(r, name))), reverse=descending)
    chosen = chosen[query.offset :]
    return chosen[: query.limit] if query.limit is not None else chosen


def _sort_key(value: Any) -> Any:
    if isinstance(value, str) and re.match(r"\d{4}-\d{2}-\d{2}T", value):
        return salesforce_datetime(value).timestamp()
    return value if value is not None else 0
