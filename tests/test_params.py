"""Issue 18, defects 4 and 6: parameters follow the sqlite3 convention and every value a
statement carries is checked before it reaches DuckDB (BindError, never a DuckDB error)."""
import pytest

from zooql.errors import BindError


@pytest.fixture
def h(hub):
    hub.execute("ADD MODEL 'hf:org/a' AS a WITH (tree = 'llama-3-8b', downloads = 5)")
    hub.execute("ADD MODEL 'hf:org/b' AS b WITH (tree = 'llama-3-8b')")
    return hub


def test_positional_and_named_parameters_bind(h):
    assert len(h.execute("SHOW MODELS WHERE tree = ?", ["llama-3-8b"])) == 2
    assert len(h.execute("SHOW MODELS WHERE tree = ?", ("llama-3-8b",))) == 2
    assert len(h.execute("SHOW MODELS WHERE tree = :t AND downloads = :d", {"t": "llama-3-8b", "d": 5})) == 1
    # as in sqlite3 a mapping may hold names the statement does not use (the CLI's -p values)
    assert len(h.execute("SHOW MODELS WHERE tree = :t", {"t": "llama-3-8b", "unused": 1})) == 2
    assert len(h.execute("SHOW MODELS WHERE name IN (?, ?)", ["a", "b"])) == 2
    # positions count over the whole query text, one list for every statement in it
    res = h.execute("ALTER MODEL a SET family = ?; SHOW MODELS WHERE family = ?", ["x", "x"])
    assert [r[0] for r in res.rows] == ["a"]


@pytest.mark.parametrize("query, params, message", [
    ("SHOW MODELS WHERE tree = ?", "llama-3-8b", "not a str; wrap a single value in a list"),
    ("SHOW MODELS WHERE tree = ?", b"x", "not a bytes"),
    ("SHOW MODELS WHERE tree = ?", ["llama-3-8b", 3], "uses 1 parameter, but 2 were given"),
    ("SHOW MODELS WHERE tree = ? AND name = ?", ["x"], "uses 2 parameters, but 1 was given"),
    ("SHOW MODELS WHERE tree = ?", None, "uses 1 parameter, but 0 were given"),
    ("SHOW MODELS", [1], "uses 0 parameters, but 1 was given"),
    ("SHOW MODELS WHERE tree = ?", {"t": 1}, "positional parameter"),
    ("SHOW MODELS WHERE tree = :t", ["x"], "named parameters (:t) but a sequence"),
    ("SHOW MODELS WHERE tree = :t", {}, "no value given for parameter :t"),
    ("SHOW MODELS WHERE tree = ?", 5, "not int"),
    ("SHOW MODELS WHERE tree = ?", {1, 2}, "not set"),
    ("SHOW MODELS WHERE tree = ?", [object()], "parameter ? #1 has unsupported type object"),
    ("SHOW MODELS WHERE tree = ?", [b"x"], "unsupported type bytes"),
    ("SHOW MODELS WHERE tree = ?", [{"a": 1}], "unsupported type dict"),
    ("ADD MODEL ? AS z WITH (x = ?)", ["hf:z", [object()]], "parameter ? #2 has unsupported type object"),
    ("SHOW MODELS WHERE tree = ?", ["\ud800"], "not valid Unicode"),
    ("SHOW MODELS WHERE downloads = ?", [2 ** 70], "out of range"),
])
def test_parameter_errors(h, query, params, message):
    with pytest.raises(BindError) as exc:
        h.execute(query, params)
    assert message in str(exc.value)


@pytest.mark.parametrize("query, message", [
    ("SHOW MODELS WHERE tree = '\ud800'", "not valid Unicode"),
    ('DESCRIBE MODEL "\udcff"', "not valid Unicode"),
    ("SHOW MODELS WHERE tree = -1", "cannot compare tree (text) = -1 (number)"),
    ("SHOW MODELS WHERE downloads = 'many'", "cannot compare downloads (number) = 'many' (text)"),
    ("SHOW MODELS WHERE tree IN (1, 2)", "cannot compare tree (text) IN 1 (number)"),
    ("SHOW MODELS WHERE downloads BETWEEN 'a' AND 'b'", "BETWEEN"),
    ("SHOW MODELS WHERE tree + 1 > 2", "'+' needs numbers, but tree is text"),
    ("SHOW MODELS WHERE downloads LIKE 'a%'", "LIKE needs text, but downloads is number"),
    ("SHOW MODELS WHERE loadable = 'yes'", "cannot compare loadable (bool)"),
    ("SHOW MODELS WHERE tree = name", None),
])
def test_values_are_checked_at_bind(h, query, message):
    if message is None:
        assert h.execute(query).rows == []
        return
    with pytest.raises(BindError) as exc:
        h.execute(query)
    assert message in str(exc.value)


def test_tags_compare_with_anything(h):
    h.execute("ALTER MODEL a SET tags.size = 7")
    assert [r[0] for r in h.execute("SHOW MODELS WHERE tags.size = 7").rows] == ["a"]
    assert h.execute("SHOW MODELS WHERE tags.size = 'big'").rows == []
