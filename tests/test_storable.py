"""What PostgreSQL cannot store is named per record (backbone.storable), and the dictionary loader
names the file and field of a mistake."""

from __future__ import annotations

import json

import pytest

from backbone.storable import MAX_KEY_CHARS, safe_key, safe_raw, unstorable_reason


def _deep(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ({"notes": "a\x00b"}, "NUL"),
        ({"hours": float("nan")}, "non-finite"),
        ({"hours": float("inf")}, "non-finite"),
        ({"version": 10**30}, "64-bit"),
        ({"notes": _deep(5000)}, "nested deeper"),
        ({"notes": "x\ud800y"}, "surrogate"),
        ({"a\x00": 1}, "field name"),
        ({"notes": "x" * 1_000_001}, "characters"),
    ],
)
def test_each_unstorable_value_is_named(payload, words):
    reason = unstorable_reason("TE-1:v1", payload)
    assert reason and words in reason


def test_storable_records_pass_and_keys_are_bounded():
    assert unstorable_reason("TE-1:v1", {"id": "TE-1", "hours": "2.5", "nested": {"a": [1, 2.5, None, True]}, "big": 2**62}) is None
    assert "key has" in unstorable_reason("K" * 101, {})
    assert len(safe_key("K" * 500)) <= MAX_KEY_CHARS and safe_key("K" * 500) != safe_key("K" * 499)
    assert "\x00" not in safe_key("a\x00b") and safe_key("TE-1:v1") == "TE-1:v1"


def test_safe_raw_is_always_json_postgresql_accepts():
    for payload in ({"notes": "a\x00b"}, {"n": float("nan")}, {"deep": _deep(5000)}, {"s": "x\ud800"}, {"v": 10**30}):
        raw = safe_raw(payload, "because")
        text = json.dumps(raw, allow_nan=False)  # raises on NaN; PostgreSQL refuses \\u0000 in jsonb
        assert "\\u0000" not in text.replace("\\\\u0000", "") and raw["unstorable"] == "because"


def test_dictionary_mistakes_name_the_file_and_field(tmp_path, monkeypatch):
    from backbone import data_dictionary

    monkeypatch.setattr(data_dictionary, "DICTIONARY_DIR", tmp_path)
    data_dictionary.load_entity.cache_clear()
    (tmp_path / "thing.yaml").write_text("entity: thing\nkey: id\nfields:\n  id: {required: true}\n")
    with pytest.raises(data_dictionary.DictionaryError, match=r"thing.yaml: field 'id' has no type"):
        data_dictionary.load_entity("thing")
    (tmp_path / "other.yaml").write_text("entity: other\nkey: id\nfields:\n  id: {type: string, maxlength: 3}\n")
    with pytest.raises(data_dictionary.DictionaryError, match=r"other.yaml: field 'id' has unknown properties \['maxlength'\]"):
        data_dictionary.load_entity("other")
    data_dictionary.load_entity.cache_clear()
