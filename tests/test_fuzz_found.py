"""Regressions for what the long fuzz run (benchmarks/fuzz.py, issue 18) found: an
AttributeError formatting the parse error of a statement that starts with "(", a
RecursionError in sqlglot for a query with ~1,000 NOTs, and ZooQL errors that carried
DuckDB's own text (a surrogate in an ALTER DATASET key)."""
from __future__ import annotations

import pytest

import zooql
from zooql.errors import BindError, ParseError
from zooql.testing.fuzz import ENGINE_TEXT, _engine_text


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    h = zooql.connect(tmp_path_factory.mktemp("found") / "hub")
    yield h
    h.close()


@pytest.mark.parametrize("text", ["( SHOW TREES ) TO 'trees.csv' ;",
                                  "( SELECT * FROM models WHERE tree IS NOT NULL ) TO 'x.csv'",
                                  "( MODELS FOR DATASET birds OPTIONS RECOMMEND include_observed = false ) 0.0"])
def test_statement_starting_with_a_parenthesis_is_a_parse_error(hub, text):
    with pytest.raises(ParseError, match=r"syntax error at line 1, column 1: unexpected '\('"):
        hub.execute(text)


def test_deeply_nested_query_is_a_parse_error(hub):
    q = "SELECT name FROM models WHERE " + "NOT " * 1500 + "true"
    with pytest.raises(ParseError, match="nested too deeply"):
        hub.execute(q)


def test_surrogate_in_an_alter_dataset_key_is_a_bind_error(hub):
    with pytest.raises(BindError, match="option name at line 1, column 31 is not valid Unicode") as ei:
        hub.execute("ALTER DATASET 'brain-mri' SET \"\ud800\" = 'MRI scans'")
    assert not ENGINE_TEXT.search(str(ei.value))


def test_engine_text_detector():
    # DuckDB's words are a leak; a name the statement itself used (catalog.duckdb) is not
    assert _engine_text("catalog error: Conversion Error: Malformed JSON", "ALTER DATASET x SET a = 1")
    assert not _engine_text("unknown dataset 'catalog.duckdb'", 'DESCRIBE DATASET "catalog.duckdb"')
    assert not _engine_text("unknown column 'x'", "SHOW MODELS WHERE x = 1")


@pytest.mark.parametrize("text, params, error, where", [
    ("SELECT", None, "SELECT needs at least one column", "line 1, column 1"),
    ("SELECT name, CASE WHEN downloads >= 1000 THEN 'popular' ELSE 'niche' END AS kind,\n"
     "       rank() OVER (ORDER BY downloads DESC) AS pos FROM models WHERE tree IS NOT NULL_ ;", None,
     "unknown column 'NULL_'", "line 2, column 83"),
    ("WITH r AS (RECOMMEND MODELS FOR DATASET 'gsm8k' USING avg_rank TOP 10)\n"
     "  SELECT model, predicted_score, rank() OVER (ORDER BY predicted_score DESC) AS pos FROM r ?", ["x"],
     "unexpected '?'", "line 2, column 92"),
    ("SHOW MODELS WHERE name", None, "name is text, not a condition", "line 1, column 19"),
    ("SHOW MODELS WHERE loadable = tags.license OR NOT tree", None, "tree is text, not a condition",
     "line 1, column 50"),
])
def test_duckdb_parser_and_conversion_errors_are_zooql_errors(hub, text, params, error, where):
    with pytest.raises((ParseError, BindError)) as ei:
        hub.execute(text, params)
    msg = str(ei.value)
    assert error in msg and where in msg.splitlines()[0] and not ENGINE_TEXT.search(msg), msg
    assert "$p_" not in msg and "__sub" not in msg      # the caret shows the query as written


def test_tags_compared_with_a_bool_or_a_time_or_used_as_a_condition_do_not_fail_while_running(hub):
    hub.execute("ADD MODEL 'hf:org/tagged' AS tagged WITH (license = 'mit', ok = 'true')")
    for where in ("tags.license", "loadable = tags.license", "added_at = tags.license", "added_at > license",
                  "loadable BETWEEN tags.a AND tags.b", "tags.license = loadable OR tags.n > 3"):
        assert hub.execute(f"SHOW MODELS WHERE {where}").rows == [], where
    assert [r[0] for r in hub.execute("SHOW MODELS WHERE tags.ok")] == ["tagged"]
    assert [r[0] for r in hub.execute("SHOW MODELS WHERE tags.ok = TRUE AND tags.ok != loadable")] == ["tagged"]


def test_lone_surrogate_in_a_query_is_a_bind_error(hub):
    with pytest.raises(BindError, match="line 2, column 23 that is not valid Unicode"):
        hub.execute("WITH r AS (SHOW MODELS)\n  SELECT name FROM r '\ud800'")


@pytest.mark.parametrize("text, word", [("SELECT name FROM models LIMIT 'x' OFFSET 2147483648", "LIMIT"),
                                        ("SELECT name FROM models LIMIT 3 OFFSET 'two'", "OFFSET")])
def test_text_limit_or_offset_is_a_bind_error(hub, text, word):
    # found by the 100,000-text fuzz run: DuckDB's Conversion Error escaped as an ExecutionError
    with pytest.raises(BindError, match=f"{word} takes a whole number of rows, not the text") as ei:
        hub.execute(text)
    assert not ENGINE_TEXT.search(str(ei.value))
