"""Issue 19 items 2 and 3: HELP from the grammar and the docs, the first-token error, and
SHOW / DESCRIBE of every named object kind (declared by the core and by each method)."""
import io
import json
import sys
import types

import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

import zooql
from zooql.core import help as H
from zooql.core.kinds import ObjectKind
from zooql.errors import BindError, ParseError
from zooql.lang import grammar_help as G
from zooql.methods import registry
from zooql.methods.registry import Method


def _grammar():
    return registry.parser().grammar


def test_help_lists_every_statement_with_a_parsing_docs_example(hub):
    res = hub.execute("HELP")
    heads = [r[0] for r in res.rows]
    assert heads == [s.head for s in G.statements(_grammar())] and len(heads) >= 30
    for expected in ("FIND", "CREATE PROBE SET", "DISCOVER BEST", "SHOW TASKS", "DESCRIBE PROBE SET",
                     "SHOW SEMANTIC GRAPHS", "HELP", "CREATE [OR REPLACE] SEMANTIC GRAPH"):
        assert expected in heads
    missing = [h for h, ex in res.rows if ex is None]
    assert missing == [], missing
    for head, ex in res.rows:
        if ex is not None:
            stmt = registry.parse_one(ex)        # every example parses: the docs cannot drift
            assert stmt is not None, head


def test_every_declared_method_statement_is_a_grammar_statement():
    heads = [" ".join(s.words) for s in G.statements(_grammar())]
    for m in registry.methods():
        for st in m.statements:
            assert any(h.startswith(st) or st.startswith(h) for h in heads), (m.name, st)


def test_help_find_shows_syntax_from_the_grammar_and_docs_example(hub):
    res = hub.execute("HELP FIND")
    lines = [r[0] for r in res.rows]
    assert lines[0] == "FIND" and lines[1] == "  syntax:"
    assert "    FIND find_target find_query [find_tail ...]" in lines
    assert ("    find_query: RECOGNIZING value | LIKE IMAGES value | LIKE name '.' name '[' value ']' "
            "| LIKE name_or_string") in lines
    assert "    aligner_clause: USING ALIGNER name_or_string (':' name_or_string)?" in lines
    assert "  example (docs/find.md):" in lines
    assert lines[-1].strip().startswith("FIND LOGITS LIKE efficientnet_lite0.logit['beagle']")
    assert res.message == "1 statement matching FIND"
    shows = [r[0] for r in hub.execute("HELP show").rows if r[0] and not r[0].startswith(" ")]
    assert shows == ["SHOW MODELS", "SHOW TREES", "SHOW DATASETS", "SHOW TASKS", "SHOW PROBE SETS",
                     "SHOW SEMANTIC GRAPHS"]
    with pytest.raises(BindError, match="no statement starts with FROBNICATE") as exc:
        hub.execute("HELP frobnicate")
    assert "CREATE PROBE SET" in exc.value.hint


def test_bad_first_token_lists_the_statements():
    with pytest.raises(ParseError) as exc:
        registry.parse("SHOW MODELS; fnd LOGITS")
    msg = str(exc.value)
    assert "unexpected 'fnd' (did you mean FIND?); a statement starts with one of ADD, ALTER, CHECK" in msg
    assert "HELP lists the statements" in msg and exc.value.column == 14


def test_repl_dot_help_statement(hub):
    from zooql.repl.repl import run_repl

    out, err = io.StringIO(), io.StringIO()
    with create_pipe_input() as inp:
        inp.send_text(".help FIND\r.help .mode\r.help\r\x04")
        rc = run_repl(hub, input=inp, output=DummyOutput(), stdout=out, stderr=err, history_path="")
    text = out.getvalue()
    assert rc == 0, err.getvalue()
    assert "FIND find_target find_query" in text and "example (docs/find.md)" in text
    assert ".mode [" in text and "HELP; lists the statements" in text


def test_show_and_describe_tasks_and_probe_sets(hub, tmp_path):
    import numpy as np

    (tmp_path / "q.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "input": str(i), "target": str(i)}) + "\n"
                                              for i in range(3)))
    hub.execute(f"CREATE TASK arith FROM '{tmp_path}/q.jsonl' EVALUATOR 'exact_match'")
    res = hub.execute("SHOW TASKS")
    assert res.columns == ["name", "kind", "queries", "evaluator", "path", "created_at"]
    assert [r[:4] for r in res.rows] == [("arith", "queries", 3, "exact_match")] and res.message == "1 task"
    d = dict(hub.execute("DESCRIBE TASK arith").rows)
    assert d["name"] == "arith" and d["queries"] == "3" and d["evaluator"] == "exact_match"
    with pytest.raises(BindError, match="unknown task 'arth'.*arith"):
        hub.execute("DESCRIBE TASK arth")
    np.save(tmp_path / "p.npy", np.zeros((4, 8, 8), np.uint8) + np.arange(4)[:, None, None].astype(np.uint8))
    hub.execute(f"CREATE PROBE SET ps FROM '{tmp_path}/p.npy'")
    hub.execute("SET probe_set = 'ps'")
    rows = hub.execute("SHOW PROBE SETS").rows
    assert [r[:3] + r[4:6] for r in rows] == [("ps", 4, "[8, 8]", 0, 0)]
    d = dict(hub.execute('DESCRIBE PROBE SET "ps"').rows)
    assert d["probes"] == "4" and d["hub_default"] == "true" and d["probed_models"] == "0"
    assert hub.execute("SHOW SEMANTIC GRAPHS").rows == []
    with pytest.raises(BindError, match="unknown semantic graph 'g'"):
        hub.execute("DESCRIBE SEMANTIC GRAPH g")
    assert hub.explain("DESCRIBE PROBE SET ps") == "DescribeObject: kind='probe set' name=ps"


def test_show_describe_semantic_graph(hub, tmp_path):
    pytest.importorskip("PIL")
    from PIL import Image

    graph = [{"id": "animal", "name": "animal", "definition": "a living organism", "parent": None},
             {"id": "cat", "name": "cat", "definition": "a small feline", "parent": "animal"}]
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "graph.json").write_text(json.dumps(graph))
    for node in ("animal", "cat"):
        (tmp_path / "g" / node).mkdir()
        Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / "g" / node / "0.png")
    hub.execute(f"CREATE SEMANTIC GRAPH gr FROM '{tmp_path}/g'")
    rows = hub.execute("SHOW SEMANTIC GRAPHS").rows
    assert [r[:5] for r in rows] == [("gr", 2, "graph.json", None, 0)]
    d = dict(hub.execute("DESCRIBE SEMANTIC GRAPH gr").rows)
    assert d["nodes"] == "2" and d["images"] == "2" and d["labelled_models"] == "0"


def test_a_plugin_declares_its_own_object_kind(tmp_path):
    mod = types.ModuleType("zooql_toyobj.objects")
    mod.describe = lambda con, name: [("name", name), ("answer", 42)]
    sys.modules.update({"zooql_toyobj": types.ModuleType("zooql_toyobj"), "zooql_toyobj.objects": mod})
    registry.register(Method(name="toyobj", package="zooql_toyobj", grammar=None, syntax=None, modules=(),
                             schema=None, objects=(ObjectKind("widget", "widgets",
                                                              "SELECT name FROM models ORDER BY name",
                                                              "objects:describe"),)))
    try:
        with zooql.connect(tmp_path / "hub") as hub:
            hub.execute("ADD MODEL 'hf:a/b' AS w1")
            assert hub.execute("SHOW WIDGETS").rows == [("w1",)]
            assert dict(hub.execute("DESCRIBE WIDGET w1").rows) == {"name": "w1", "answer": "42"}
            assert "SHOW WIDGETS" in [r[0] for r in hub.execute("HELP SHOW").rows]
        with pytest.raises(zooql.ZooQLError, match="already declared"):
            registry.register(Method(name="toyobj2", package="x", grammar=None, syntax=None, modules=(),
                                     schema=None, objects=(ObjectKind("task", "tasks", "SELECT 1", "m:f"),)))
            registry.objects()
    finally:
        registry.unregister("toyobj")
        registry.unregister("toyobj2")
        for k in ("zooql_toyobj", "zooql_toyobj.objects"):
            sys.modules.pop(k, None)


def test_doc_statements_parse_docs_blocks():
    stmts = H.doc_statements()
    assert ("SHOW TASKS;", "language.md") in stmts
    assert all(s.endswith(";") for s, _ in stmts)
