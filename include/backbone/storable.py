"""Can a vendor's record be stored at all? One bad record must never stop the others.

PostgreSQL refuses some values that JSON and Python accept: the NUL character and lone UTF-16
surrogates (in ``text`` and ``jsonb``), ``NaN`` and infinities (in ``jsonb``), and integers beyond
64 bits where a typed column or an ``int[]`` reads them. Python's own JSON encoder gives up on
very deep nesting. Each of these, left alone, makes a whole insert fail, so the whole run fails
and every retry meets the same record.

:func:`unstorable_reason` says what is wrong with one record (``None`` when it can be stored);
:func:`safe_key` and :func:`safe_raw` give a form of the key and payload that can always be stored,
so the record is quarantined with its evidence instead of dropped. Nothing here recurses: a
payload nested 5,000 deep is judged, not crashed on.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

MAX_DEPTH = 32
"""Deepest nesting of objects and arrays a record may have (vendor records use fewer than 6)."""
MAX_TEXT_CHARS = 1_000_000
"""Longest single text value; a longer one is a broken or hostile record, not data."""
MAX_KEY_CHARS = 100
"""``ops.staged_record.source_key`` and ``ops.quarantine.source_key`` are ``varchar(100)``."""
INT64 = 2**63
MAX_RAW_CHARS = 20_000
"""How much of an unstorable record's text is kept as evidence."""


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character, which PostgreSQL cannot store"
    if len(text) > MAX_TEXT_CHARS:
        return f"has a text of {len(text):,} characters (at most {MAX_TEXT_CHARS:,})"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone UTF-16 surrogate, which is not valid UTF-8"
    return None


def _scalar_problem(value: Any) -> str | None:
    if isinstance(value, str):
        return _text_problem(value)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return None if -INT64 <= value < INT64 else f"has the integer {str(value)[:40]}, beyond any 64-bit column"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"has the non-finite number {value!r} (bare NaN or Infinity in the JSON)"
    return f"has a value of type {type(value).__name__}, which is not JSON"


def unstorable_reason(key: str, payload: Any) -> str | None:
    """Why this record cannot go into the warehouse as it is, or None when it can."""
    if problem := _text_problem(key):
        return f"its key {problem}"
    if len(key) > MAX_KEY_CHARS:
        return f"its key has {len(key)} characters (at most {MAX_KEY_CHARS})"
    stack: list[tuple[Any, int, str]] = [(payload, 0, "$")]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, dict):
            if depth >= MAX_DEPTH:
                return f"is nested deeper than {MAX_DEPTH} levels at {path}"
            for name, item in value.items():
                if not isinstance(name, str):
                    return f"has a non-text field name at {path}"
                if problem := _text_problem(name):
                    return f"has a field name that {problem.removeprefix('has ').removeprefix('contains ')} at {path}"
                stack.append((item, depth + 1, f"{path}.{_short(name)}"))
        elif isinstance(value, list | tuple):
            if depth >= MAX_DEPTH:
                return f"is nested deeper than {MAX_DEPTH} levels at {path}"
            stack.extend((item, depth + 1, f"{path}[{i}]") for i, item in enumerate(value))
        elif problem := _scalar_problem(value):
            return f"{problem} at {path}"
    return None


def _short(text: str, limit: int = 40) -> str:
    return json.dumps(text[:limit], ensure_ascii=True)[1:-1]


def safe_key(key: str) -> str:
    """The key as it can be stored: control characters escaped, long keys cut and made unique by a hash."""
    escaped = json.dumps(key, ensure_ascii=True)[1:-1]
    if len(escaped) <= MAX_KEY_CHARS and escaped == key:
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{escaped[: MAX_KEY_CHARS - 19]}…#{digest}"


def _clip(value: Any, depth: int = 0) -> Any:
    """A copy that json.dumps can always write: deep subtrees replaced by a marker (iterative in depth,
    bounded by MAX_DEPTH, so the recursion here never goes deeper than that)."""
    if isinstance(value, dict | list | tuple) and depth >= MAX_DEPTH:
        return f"<nested deeper than {MAX_DEPTH} levels>"
    if isinstance(value, dict):
        return {str(k): _clip(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clip(v, depth + 1) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -INT64 <= value < INT64:
        return str(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return repr(value)


def safe_raw(payload: Any, reason: str) -> dict[str, Any]:
    """Evidence of an unstorable record that PostgreSQL accepts: its JSON as ASCII text (NUL shown as
    ``\\u0000``, NaN as ``NaN``), cut at ``MAX_RAW_CHARS``, with the reason."""
    text = json.dumps(_clip(payload), ensure_ascii=True, allow_nan=True, default=repr)
    if len(text) > MAX_RAW_CHARS:
        text = text[:MAX_RAW_CHARS] + f"… ({len(text):,} characters in all)"
    return {"unstorable": reason, "payload_json": text}
