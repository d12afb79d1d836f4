"""Parser: golden parse trees, golden error messages, spans, keywords, completeness."""
import json

import pytest

from conftest import GOLDEN, golden_compare
from zooql.errors import ParseError
from zooql.lang import ast as A
from zooql.repl.lexer import statement_complete
from zooql.methods.registry import keywords, parse

KEYWORDS = keywords()


def _cases(name):
    text = (GOLDEN / name).read_text()
    return [c.strip() for c in text.split("\n\n") if c.strip()]


def test_parse_trees_golden():
    out = []
    for case in _cases("parse_cases.zql"):
        trees = [s.to_tree() for s in parse(case)]
        out.append(case + "\n=> " + json.dumps(trees, sort_keys=True))
    golden_compare("parse_cases.out", "\n\n".join(out) + "\n")


def test_parse_errors_golden():
    out = []
    for case in _cases("error_cases.zql"):
        with pytest.raises(ParseError) as exc:
            parse(case)
        out.append(case + "\n=> " + str(exc.value))
    golden_compare("error_cases.out", "\n\n".join(out) + "\n")


def test_keywords_case_insensitive_and_identifiers():
    a = parse("show models where tree = 'x' limit 1")[0]
    b = parse("SHOW MODELS WHERE tree = 'x' LIMIT 1")[0]
    assert a == b
    s = parse('DESCRIBE MODEL "SHOW"')[0]
    assert s.name == A.Name("SHOW", True)
    s = parse("DESCRIBE MODEL llama-3-8b-instruct")[0]
    assert s.name.value == "llama-3-8b-instruct"


def test_source_spans_point_into_text():
    text = "SHOW MODELS\nWHERE downloads > 10"
    stmt = parse(text)[0]
    cmp_ = stmt.where
    start, end, line, col = cmp_.span
    assert text[start:end] == "downloads > 10"
    assert (line, col) == (2, 7)


def test_error_has_line_column_caret():
    with pytest.raises(ParseError) as exc:
        parse("SHOW MODELS\nWHERE name = = 'x'")
    e = exc.value
    assert (e.line, e.column) == (2, 14)
    assert str(e).splitlines()[-1].index("^") == str(e).splitlines()[-2].index("= 'x'")


def test_expected_tokens_listed_only_when_few():
    with pytest.raises(ParseError) as exc:
        parse("FROBNICATE")
    assert "(expected" not in str(exc.value)  # many statements could start here: they are listed instead
    assert "a statement starts with one of ADD, ALTER" in str(exc.value) and "HELP lists" in str(exc.value)
    with pytest.raises(ParseError) as exc:
        parse("SHOW NOTHING")
    assert "expected DATASETS, MODELS, PROBE, SEMANTIC, TASKS, TREES" in str(exc.value)


def test_params_and_comments():
    stmt = parse("-- hello\nSHOW MODELS WHERE a = ? AND b = :bee AND c = ?; -- bye")[0]
    params = [x.right.key for x in stmt.where.items]
    assert params == [0, "bee", 1]


def test_empty_and_multiple_statements():
    assert parse("") == []
    assert parse(" ;; -- nothing\n") == []
    assert len(parse("SHOW TREES; SHOW DATASETS;")) == 2


def test_statement_complete():
    assert statement_complete("SHOW MODELS;")
    assert not statement_complete("SHOW MODELS")
    assert not statement_complete("SHOW MODELS WHERE name = 'a;")
    assert not statement_complete("SHOW MODELS -- ;")
    assert statement_complete("SHOW MODELS WHERE name = 'a;';  ")
    assert not statement_complete('DESCRIBE MODEL "a;')


def test_keywords_from_grammar():
    for kw in ("ADD", "MODEL", "SHOW", "WHERE", "EXPLAIN", "ANALYZE", "IMPORT"):
        assert kw in KEYWORDS
    assert KEYWORDS == sorted(KEYWORDS)
