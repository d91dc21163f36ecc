"""``backbone.warehouse.db.copy_upsert``: the volume path keeps every value exactly, hostile text included."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from backbone.warehouse.db import copy_text_rows, json_for_database, json_from_database

HOSTILE = [
    "plain",
    "",
    "\\N",
    "a\\Nb",
    "tab\there",
    "line\nbreak",
    "carriage\rreturn",
    "back\\slash\\",
    'quote " and, comma',
    "emoji 🚀 and ümlaut",
    "\\\t\n\r",
]


def test_text_rows_escape_what_copy_reads_specially_and_only_null_is_backslash_n():
    body = copy_text_rows([{"a": value, "b": None} for value in HOSTILE], ["a", "b"])
    lines = body.split("\n")
    assert lines[-1] == "" and len(lines) == len(HOSTILE) + 1  # one line per row: no newline survived unescaped
    assert all(line.count("\t") == 1 and line.endswith("\t\\N") for line in lines[:-1])
    assert lines[2] == "\\\\N\t\\N" and lines[1] == "\t\\N"  # a literal \N and an empty string are not NULL
    assert lines[-2] == "\\\\\\t\\n\\r\t\\N"


def test_text_rows_write_values_as_postgresql_reads_them():
    row = {"id": "1", "amount": Decimal("12.50"), "flag": True, "payload": {"k": 'v "q" \\'}, "at": datetime(2026, 10, 30, 14, tzinfo=UTC)}
    assert copy_text_rows([row], list(row)) == '1\t12.50\tTrue\t{"k": "v \\\\"q\\\\" \\\\\\\\"}\t2026-10-30 14:00:00+00:00\n'
    assert copy_text_rows([{"only": None}], ["only"]) == "\\N\n"


@pytest.mark.parametrize(
    "document",
    [
        '{"hours": "7.5", "user": {"id": "EMP-1"}, "tags": [1, 2.5, null, true]}',
        '"\\u00e9 \\ud83d\\ude80"',
        "123456789012345678901234567890",
        "1e400",
    ],
)
def test_json_from_the_database_reads_as_json_loads_does(document):
    """msgspec decodes staged payloads; a number only ``jsonb`` can hold (beyond a float) still reads, as json.loads reads it."""
    assert json_from_database(document) == json.loads(document)
    assert json_from_database(document.encode()) == json.loads(document)


def test_json_for_the_database_is_the_document_json_dumps_writes():
    value = {"entry_id": "TE-1", "minutes": 465, "billable": True, "notes": None, "text": 'q " \\ é 🚀 \n'}
    assert json.loads(json_for_database(value)) == value


@pytest.mark.db
def test_hostile_text_round_trips_through_copy_upsert_and_an_update_rewrites_only_changed_rows(psa_warehouse):
    from sqlalchemy import Boolean, Column, MetaData, Numeric, Table, Text, text
    from sqlalchemy.dialects.postgresql import JSONB

    from backbone.warehouse.db import copy_upsert

    table = Table(
        "copy_roundtrip",
        MetaData(),
        Column("id", Text, primary_key=True),
        Column("note", Text),
        Column("payload", JSONB),
        Column("amount", Numeric(12, 2)),
        Column("flag", Boolean),
        Column("last_run_id", Text),
    )
    rows = [
        {"id": str(n), "note": value, "payload": {"note": value}, "amount": Decimal("1.25"), "flag": n % 2 == 0, "last_run_id": "r1"}
        for n, value in enumerate(HOSTILE)
    ]
    rows.append({"id": "null", "note": None, "payload": None, "amount": None, "flag": None, "last_run_id": "r1"})
    with psa_warehouse.connect() as connection, connection.begin():
        connection.execute(
            text(
                "CREATE TEMP TABLE copy_roundtrip (id text PRIMARY KEY, note text, payload jsonb, amount numeric(12, 2), "
                "flag boolean, last_run_id text) ON COMMIT DROP"
            )
        )
        assert copy_upsert(connection, table, rows, key=["id"]) == len(rows)
        stored = {r.id: r for r in connection.execute(text("SELECT * FROM copy_roundtrip"))}
        for row in rows:
            held = stored[row["id"]]
            assert (held.note, held.payload, held.amount, held.flag) == (row["note"], row["payload"], row["amount"], row["flag"])
        changed = [{**rows[0], "note": "changed", "last_run_id": "r2"}, *({**r, "last_run_id": "r2"} for r in rows[1:])]
        assert copy_upsert(connection, table, changed, key=["id"]) == 1  # bookkeeping alone changes nothing
        assert connection.execute(text("SELECT note FROM copy_roundtrip WHERE id = '0'")).scalar() == "changed"


def test_new_keys_are_copied_straight_in_and_a_batch_meeting_a_present_or_repeated_key_is_upserted(psa_warehouse):
    from sqlalchemy import Column, Integer, MetaData, Table, Text, text

    from backbone.warehouse.db import copy_upsert

    table = Table(
        "copy_versions",
        MetaData(),
        Column("id", Text, primary_key=True),
        Column("version", Integer, primary_key=True),
        Column("note", Text),
    )
    with psa_warehouse.connect() as connection, connection.begin():
        connection.execute(
            text("CREATE TEMP TABLE copy_versions (id text, version int, note text, PRIMARY KEY (id, version)) ON COMMIT DROP")
        )

        def held() -> list[tuple]:
            return [tuple(r) for r in connection.execute(text("SELECT id, version, note FROM copy_versions ORDER BY id, version"))]

        first = [{"id": "a", "version": 1, "note": "one"}, {"id": "b", "version": 1, "note": "one"}]
        assert copy_upsert(connection, table, first, key=["id", "version"]) == 2  # no key there: straight in
        assert held() == [("a", 1, "one"), ("b", 1, "one")]

        mixed = [{"id": "a", "version": 1, "note": "edited"}, {"id": "a", "version": 2, "note": "two"}]
        assert copy_upsert(connection, table, mixed, key=["id", "version"]) == 2  # ("a", 1) is there: upserted
        assert held() == [("a", 1, "edited"), ("a", 2, "two"), ("b", 1, "one")]

        as_text = [{"id": "a", "version": "2", "note": "two, as text"}]  # COPY reads text: the key check types it too
        assert copy_upsert(connection, table, as_text, key=["id", "version"]) == 1
        assert held() == [("a", 1, "edited"), ("a", 2, "two, as text"), ("b", 1, "one")]

        twice = [{"id": "c", "version": 1, "note": "first"}, {"id": "c", "version": 1, "note": "again"}]
        assert copy_upsert(connection, table, twice, key=["id", "version"], insert_only=True) == 1  # the copy failed, upsert kept one
        assert held() == [("a", 1, "edited"), ("a", 2, "two, as text"), ("b", 1, "one"), ("c", 1, "first")]
