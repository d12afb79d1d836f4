"""WHERE values DuckDB would refuse only while running (issue 18, found by benchmarks/fuzz.py):
a text compared with a time column is a BindError pointing at the value (caret included),
integer arithmetic stays exact and its overflow is an ExecutionError in ZooQL's words,
``x % 0`` / ``x / 0`` are NULL, LIKE on a
time matches its text, and an option name that is not valid Unicode is a BindError. None of
these messages carries DuckDB's own words."""
from __future__ import annotations

import datetime

import pytest

import zooql
from zooql.errors import BindError, ExecutionError, ZooQLError
from zooql.testing.fuzz import ENGINE_TEXT

INT64_MAX = 9223372036854775807


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    h = zooql.connect(tmp_path_factory.mktemp("where") / "hub")
    h.execute("ADD MODEL 'hf:org/a' AS a WITH (downloads = 10, tree = 't')")
    h.execute("ADD MODEL 'hf:org/b' AS b WITH (downloads = 3)")
    h.execute("ADD MODEL 'hf:org/c' AS c")
    yield h
    h.close()


def names(hub, where, params=None):
    return sorted(r["name"] for r in hub.execute(f"SHOW MODELS WHERE {where}", params).to_dicts())


@pytest.mark.parametrize("query, params, column, value", [
    ("SHOW MODELS WHERE added_at > 'yesterday'", None, 30, "'yesterday'"),
    ("SHOW MODELS WHERE tree = 't' AND\n  added_at = 'x'", None, 14, "'x'"),
    ("SHOW MODELS WHERE added_at BETWEEN '2024-01-01' AND 'later'", None, 53, "'later'"),
    ("SHOW MODELS WHERE added_at IN ('2024-01-01', 'never')", None, 46, "'never'"),
    ("SHOW MODELS WHERE 'soon' < added_at", None, 19, "'soon'"),
    ("SHOW MODELS WHERE added_at = ?", ["tomorrow"], 30, "'tomorrow'"),
])
def test_text_that_is_no_time_is_a_bind_error_with_a_caret(hub, query, params, column, value):
    with pytest.raises(BindError) as ei:
        hub.execute(query, params)
    exc = ei.value
    line = query.count("\n") + 1
    assert exc.message == (f"value at line {line}, column {column}: {value} is not a time, but added_at is one "
                           "(write a time as 'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM[:SS]')")
    src = query.splitlines()[line - 1]
    assert str(exc).splitlines()[1:] == [f"  {line} | {src}", f"    | {' ' * (column - 1)}^"]
    assert not ENGINE_TEXT.search(str(exc))
    # EXPLAIN binds the same way
    with pytest.raises(BindError, match="is not a time"):
        hub.explain(query, params)


def test_times_that_read_as_times_compare(hub):
    assert names(hub, "added_at > '2000-01-01'") == ["a", "b", "c"]
    assert names(hub, "added_at > '2000-01-01 10:00' AND added_at < '2999-12-31T23:59:59'") == ["a", "b", "c"]
    assert names(hub, "added_at < ?", [datetime.date(2000, 1, 1).isoformat()]) == []
    year = str(datetime.datetime.now(datetime.timezone.utc).year)
    # LIKE on a time matches its text (it used to be DuckDB's Binder Error)
    assert names(hub, f"added_at LIKE '{year}-%'") == ["a", "b", "c"]
    assert names(hub, "added_at NOT LIKE '19%'") == ["a", "b", "c"]


def test_arithmetic_is_exact_overflow_is_a_zooql_error_division_by_zero_is_null(hub):
    # exact 64-bit integer arithmetic (a double would round INT64_MAX + 10 down to INT64_MAX + 1)
    assert names(hub, f"downloads + {INT64_MAX - 10} = {INT64_MAX}") == ["a"]
    assert names(hub, f"downloads - {INT64_MAX} - 1 = -{INT64_MAX - 9}") == ["a"]
    # in floating point when one number is written with a decimal point
    assert names(hub, f"downloads * {INT64_MAX}.0 > {INT64_MAX}") == ["a", "b"]
    # an integer overflow (DuckDB's "Out of Range Error" before) in ZooQL's words
    for where, expr in ((f"downloads * {INT64_MAX} > 1", f"10 * {INT64_MAX}"),
                        (f"-downloads * {INT64_MAX} > 1", f"-10 * {INT64_MAX}")):
        with pytest.raises(ExecutionError) as ei:
            names(hub, where)
        assert str(ei.value) == (f"arithmetic overflow: {expr} (multiplication) does not fit in a 64-bit integer; "
                                 "write one of its numbers with a decimal point (e.g. 2.0) to compute in "
                                 "floating point")
    with pytest.raises(ExecutionError, match=r"arithmetic overflow: 10 \* 4611686018427387904"):
        names(hub, "downloads * ? > 1", [2 ** 62])
    with pytest.raises(ExecutionError, match="arithmetic overflow"):
        hub.execute(f"SHOW MODELS WHERE downloads IS NOT NULL ORDER BY downloads * {INT64_MAX} DESC")
    # % 0 was DuckDB's "Division by zero" error; x / 0 and x % 0 are NULL (no row matches either way)
    assert names(hub, "downloads % 0 = 1") == []
    assert names(hub, "downloads % 0 IS NULL") == ["a", "b", "c"]
    assert names(hub, "downloads / 0 IS NULL") == ["a", "b", "c"]
    # the ordinary arithmetic is unchanged
    assert names(hub, "downloads % 3 = 1") == ["a"]
    assert names(hub, "downloads / 2 = 1.5") == ["b"]
    assert names(hub, "downloads * 2 - 1 = 19") == ["a"]
    assert names(hub, "-downloads = -3") == ["b"]


def test_option_name_that_is_not_unicode_is_a_bind_error(hub):
    q = "ALTER DATASET 'd' SET \"\ud800\" = 'x'"
    with pytest.raises(BindError, match=r"option name at line 1, column 23 is not valid Unicode text") as ei:
        hub.execute(q)
    # the caret line shows the character escaped, so a terminal can print the message
    text = str(ei.value)
    text.encode("utf-8")
    assert text.splitlines()[1:] == ["  1 | ALTER DATASET 'd' SET \"\\ud800\" = 'x'", "    | " + " " * 22 + "^"]


def test_no_where_message_carries_engine_text(hub):
    bad = ["added_at > 'x'", "added_at BETWEEN 'a' AND 'b'", f"downloads * {INT64_MAX} * {INT64_MAX} > 0",
           "downloads % 0 > 0", "tags.x * 3 > 1", "added_at LIKE 5"]
    for where in bad:
        try:
            hub.execute(f"SHOW MODELS WHERE {where}")
        except ZooQLError as exc:
            assert not ENGINE_TEXT.search(str(exc)), (where, str(exc))
