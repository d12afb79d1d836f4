"""SELECT over the catalog and method results: parameters, COPY, the DuckDB sandbox, method
sub-statements and signal fusion (tests/golden/select.slt has results, plans and errors)."""
import json
import os

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import zooql
from zooql.errors import BindError, ExecutionError, ParseError

MODELS = ("name,source,tree,parent,downloads,license\n"
          "base,hf:org/base,llama,,90000,apache-2.0\ngem,hf:org/gem,llama,base,12,apache-2.0\n"
          "ft1,hf:org/ft1,llama,base,300,mit\nft2,hf:org/ft2,llama,ft1,40,\n")
# gem answers every query, ft2 most, base half, ft1 almost none (DISCOVER's planted order)
RATES = {"gem": 12, "ft2": 9, "base": 6, "ft1": 1}
# RECOMMEND USING avg_rank: gem best on 'cars', then base, ft2, ft1
EVALS = {"gem": 0.9, "base": 0.5, "ft2": 0.3, "ft1": 0.1}


@pytest.fixture()
def hub(tmp_path):
    (tmp_path / "models.csv").write_text(MODELS)
    (tmp_path / "outcomes.csv").write_text("model,dataset,query_id,score\n" + "".join(
        f"{m},gsm8k,q{i:02d},{1.0 if i < k else 0.0}\n" for m, k in RATES.items() for i in range(12)))
    (tmp_path / "evals.csv").write_text("model,dataset,metric,score\n" + "".join(
        f"{m},cars,acc,{s}\n{m},pets,acc,{1 - s}\n" for m, s in EVALS.items()))
    h = zooql.connect(tmp_path / "hub")
    h.execute("ADD MODELS FROM 'models.csv'; IMPORT OUTCOMES FROM 'outcomes.csv'; "
              "IMPORT EVALUATIONS FROM 'evals.csv'", base_dir=str(tmp_path))
    h.folder = tmp_path
    return h


def test_result_is_arrow(hub):
    res = hub.execute("SELECT name, downloads FROM models WHERE tree = 'llama' ORDER BY downloads DESC LIMIT 2")
    table = res.to_arrow()
    assert isinstance(table, pa.Table) and table.column_names == ["name", "downloads"]
    assert table.column("name").to_pylist() == ["base", "ft1"]


def test_parameters_are_bound_not_spliced(hub):
    res = hub.execute("SELECT name FROM models WHERE downloads > ? AND name <> ? ORDER BY name", [20, "ft1"])
    assert [r[0] for r in res] == ["base", "ft2"]
    res = hub.execute("SELECT name FROM models WHERE name = :n", {"n": "gem' OR '1'='1"})
    assert res.rows == []
    res = hub.execute("SELECT name FROM models WHERE tags->>'license' = :lic ORDER BY 1", {"lic": "apache-2.0"})
    assert [r[0] for r in res] == ["base", "gem"]
    plan = hub.explain("SELECT name FROM models WHERE name = :n", {"n": "x"})
    assert "params=[p_n]" in plan and "$p_n" in plan and "'x'" not in plan
    with pytest.raises(BindError, match="no value given for parameter :n"):
        hub.execute("SELECT name FROM models WHERE name = :n")


def test_parameters_number_across_sub_statements(hub):
    res = hub.execute("SELECT s.name FROM (SHOW MODELS WHERE downloads > ?) s WHERE s.name <> ? ORDER BY 1",
                      [20, "base"])
    assert [r[0] for r in res] == ["ft1", "ft2"]


def test_copy_writes_each_format_atomically(hub):
    folder = hub.folder
    q = "SELECT name, downloads FROM models WHERE tree IS NOT NULL ORDER BY name"
    (folder / "out").mkdir()
    for ext in ("parquet", "csv", "json"):
        res = hub.execute(f"COPY ({q}) TO 'out/m.{ext}'", base_dir=str(folder))
        assert res.rows == [(4, f"m.{ext}")] and res.message == f"wrote 4 rows to m.{ext}"
    assert pq.read_table(folder / "out" / "m.parquet").column("name").to_pylist() == ["base", "ft1", "ft2", "gem"]
    assert (folder / "out" / "m.csv").read_text().splitlines()[:2] == ["name,downloads", "base,90000"]
    rows = [json.loads(x) for x in (folder / "out" / "m.json").read_text().splitlines()]
    assert rows[0] == {"name": "base", "downloads": 90000}
    assert sorted(os.listdir(folder / "out")) == ["m.csv", "m.json", "m.parquet"]   # no temp files left
    hub.execute("COPY (SHOW TREES) TO 'out/t.data' WITH (format = 'csv')", base_dir=str(folder))
    assert (folder / "out" / "t.data").read_text().startswith("tree,models,roots")


def test_copy_errors_leave_nothing(hub):
    folder = hub.folder
    with pytest.raises(ExecutionError, match="does not exist"):
        hub.execute("COPY (SELECT 1 AS x) TO 'missing/x.csv'", base_dir=str(folder))
    with pytest.raises(BindError, match="COPY writes .parquet, .csv or .json"):
        hub.execute("COPY (SELECT 1 AS x) TO 'x.txt'", base_dir=str(folder))
    with pytest.raises(BindError, match="DropModel changes the catalog"):
        hub.execute("COPY (DROP MODEL gem) TO 'x.csv'", base_dir=str(folder))
    with pytest.raises(BindError, match="unknown relation"):
        hub.execute("COPY (SELECT * FROM nothing) TO 'x.csv'", base_dir=str(folder))
    assert not (folder / "x.csv").exists() and "gem" in {r[0] for r in hub.execute("SHOW MODELS")}


def test_sandbox_refuses_files_even_when_the_check_is_bypassed(hub, tmp_path):
    from zooql.core import select

    out_csv, out_db = tmp_path / "x.csv", tmp_path / "x.duckdb"   # outside the hub

    con = select.sandbox(str(hub.store.catalog_path), [("models", "SELECT name FROM cat.main.models")], [])
    try:
        assert len(select.run_sql(con, "SELECT * FROM models", {})) == 4
        out_csv.write_text("a\n1\n")
        for sql in (f"SELECT * FROM read_csv('{out_csv}')", f"COPY models TO '{tmp_path / 'y.csv'}'",
                    f"ATTACH '{out_db}' AS x"):
            with pytest.raises(BindError, match="refused"):
                select.run_sql(con, sql, {})
        with pytest.raises(BindError, match="only queries run in the sandbox"):
            select.run_sql(con, "SET enable_external_access = true", {})
        with pytest.raises(duckdb.Error, match="enable_external_access"):
            con.execute("SET enable_external_access = true")     # the configuration is locked
    finally:
        con.close()
    assert not (tmp_path / "y.csv").exists() and not out_db.exists()


def test_sub_statement_errors_point_into_the_query(hub):
    with pytest.raises(ParseError) as exc:
        hub.execute("SELECT g.model\n  FROM (DISCOVER BEST 2 IN TREE llama ON gsm8k BUDGT 6) g")
    assert (exc.value.line, exc.value.column) == (2, 48)
    assert "  2 |   FROM (DISCOVER" in str(exc.value) and str(exc.value).splitlines()[-1].endswith("^")
    with pytest.raises(ParseError) as exc:
        hub.execute("SELECT name\nFROM models ORDER downloads")
    assert exc.value.line == 2


def test_discover_and_recommend_fused_by_reciprocal_rank(hub):
    """Reciprocal-rank fusion of two methods' rankings, in plain SQL: gem leads both, ft2 is
    2nd for DISCOVER and 3rd for RECOMMEND, base 3rd and 2nd, ft1 last in both."""
    q = """
    SELECT d.model, 1.0 / (60 + d.rank) + 1.0 / (60 + r.rank) AS rrf, d.rank AS d_rank, r.rank AS r_rank
      FROM (DISCOVER BEST 4 IN TREE llama ON gsm8k BUDGET 12 SEED 0 USING uniform) AS d
      JOIN (RECOMMEND MODELS FOR DATASET 'cars' USING avg_rank TOP 10) AS r ON r.model = d.model
     ORDER BY rrf DESC, d.model"""
    res = hub.execute(q)
    ranks = {r[0]: (r[2], r[3]) for r in res}
    assert ranks == {"gem": (1, 1), "ft2": (2, 3), "base": (3, 2), "ft1": (4, 4)}
    assert [r[0] for r in res] == ["gem", "base", "ft2", "ft1"]   # ties in rrf broken by model
    plan = hub.explain(q)
    assert plan.splitlines()[0].startswith("DuckDBQuery: relations=[__sub1, __sub2]")
    assert "    Discover:" in plan and "    Recommend:" in plan


def test_every_relation_reads_on_a_fresh_hub(tmp_path):
    from zooql.core.sqlcheck import CORE_RELATIONS
    from zooql.methods import registry

    h = zooql.connect(tmp_path / "hub")
    names = set(CORE_RELATIONS) | set(registry.relations())
    assert {"models", "logits", "trees", "datasets", "evaluations", "outcomes", "probe_sets",
            "semantic_graphs", "recommenders"} <= names
    for name in sorted(names):
        assert h.execute(f"SELECT * FROM {name}").rows == []


def test_select_models_for_task_still_parses():
    stmt = zooql.parse("SELECT MODELS FOR TASK t CLASSES ('a', 'b')")[0]
    assert type(stmt).__name__ == "SelectModelsForTask"
    q = zooql.parse("SELECT * FROM (SELECT MODELS FOR TASK t CLASSES ('a')) s")[0]
    assert type(q.subs[0].statement).__name__ == "SelectModelsForTask"
    assert zooql.parse("select models.name from models")[0].sql == "select models.name from models"


def test_views_are_stored_and_re_evaluated_on_use(hub):
    hub.execute("CREATE VIEW popular AS SELECT name, downloads FROM models WHERE downloads > 100")
    hub.execute("CREATE VIEW gems AS SELECT g.model FROM (DISCOVER BEST 1 IN TREE llama ON gsm8k BUDGET 12 "
                "SEED 0 USING uniform) g JOIN popular p ON p.name <> g.model")
    assert [r[0] for r in hub.execute("SELECT name FROM popular ORDER BY 1")] == ["base", "ft1"]
    hub.execute("ALTER MODEL gem SET downloads = 5000")
    assert [r[0] for r in hub.execute("SELECT name FROM popular ORDER BY 1")] == ["base", "ft1", "gem"]
    assert hub.execute("SELECT DISTINCT model FROM gems").rows == [("gem",)]
    plan = hub.explain("SELECT * FROM gems").splitlines()
    assert plan[0] == "DuckDBQuery: relations=[__view_gems] sql=(SELECT * FROM __view_gems AS gems)"
    assert any(x.strip().startswith("Discover:") for x in plan)
    assert any("StatementRelation: relation=__view_popular" in x for x in plan)
    with pytest.raises(BindError, match="already exists"):
        hub.execute("CREATE VIEW popular AS SELECT 1 AS x")
    with pytest.raises(BindError, match="cannot have parameters"):
        hub.execute("CREATE VIEW p2 AS SELECT name FROM models WHERE downloads > ?", [1])
    hub.execute("DROP VIEW popular")
    with pytest.raises(BindError, match="view 'gems' no longer binds: unknown relation 'popular'"):
        hub.execute("SELECT * FROM gems")
    hub.execute("DROP VIEW IF EXISTS popular")
    with pytest.raises(BindError, match="unknown view 'popular'"):
        hub.execute("DROP VIEW popular")


def test_relations_and_the_tables_schema_dot_commands(hub):
    from zooql.repl import dotcommands

    hub.execute("CREATE VIEW popular AS SELECT name FROM models WHERE downloads > 100")
    rels = hub.relations()
    assert rels["trees"] == ["tree", "model", "parent", "root", "depth"]
    assert rels["evaluations"][:4] == ["model", "dataset", "metric", "score"] and rels["popular"] == []
    assert "relations" in hub.completions() and "probe_sets" in hub.completions()["relations"]

    class FakeRepl:
        def __init__(self):
            self.hub, self.shown = hub, []

        def show_rows(self, columns, rows):
            self.shown.append((columns, rows))

    repl = FakeRepl()
    dotcommands.run(repl, ".tables")
    dotcommands.run(repl, ".tables t*")
    dotcommands.run(repl, ".schema logits")
    assert ("popular",) in repl.shown[0][1] and ("models",) in repl.shown[0][1]
    assert repl.shown[1][1] == [("tasks",), ("trees",)]
    assert repl.shown[2] == (["relation", "columns"], [("logits", "model, idx, label")])
    with pytest.raises(dotcommands.DotCommandError, match="unknown relation 'nope'"):
        dotcommands.run(repl, ".schema nope")


def test_unknown_column_points_at_the_name(hub):
    with pytest.raises(BindError) as exc:
        hub.execute("SELECT m.name,\n  m.dwnloads FROM models m")
    assert "dwnloads" in exc.value.message and exc.value.message.endswith("at line 2, column 5")
    assert exc.value.context.splitlines() == ["  2 |   m.dwnloads FROM models m", "    |     ^"]
    with pytest.raises(BindError, match=r"did you mean 'name'.*at line 1, column 8"):
        hub.execute("SELECT nme FROM models")


def test_repl_completes_relations_columns_and_sql_keywords(hub):
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    from zooql.repl.completer import ZooQLCompleter

    comp = ZooQLCompleter(hub)

    def offered(text):
        return [(c.text, c.display_meta_text) for c in comp.get_completions(Document(text), CompleteEvent())]

    assert ("evaluations", "relation") in offered("SELECT * FROM evalu")
    assert offered("SELECT * FROM models JOIN tr")[0] == ("trees", "relation")
    assert ("downloads", "column") in offered("SELECT down")
    assert ("HAVING", "keyword") in offered("SELECT tree FROM models GROUP BY tree HAV")
    from zooql.api import keywords

    assert {"HAVING", "OVER", "PARTITION", "DISTINCT", "VIEW"} <= set(keywords())


def test_parse_tree_of_a_query_with_a_sub_statement_and_parameters():
    q = "SELECT f.model FROM (FIND MODELS RECOGNIZING 'dog' TOP ?) AS f WHERE f.score > :s AND f.label <> ?"
    tree = zooql.parse(q)[0].to_tree()
    assert len("(FIND MODELS RECOGNIZING 'dog' TOP ?)") == 37    # positions after it stay put
    assert tree["node"] == "SqlQuery" and tree["sql"].index("AS f") == q.index("AS f")
    assert tree["sql"] == ("SELECT f.model FROM (SELECT * FROM __sub1)" + " " * (37 - 22) + " AS f "
                           "WHERE f.score > $p_s AND f.label <> $p_1")
    sub = tree["subs"][0]
    assert sub["name"] == "__sub1" and sub["statement"]["node"] == "Find"
    assert sub["statement"]["top"] == {"node": "Param", "key": 0}     # the sub-statement's ? comes first
    assert [p[0] for p in tree["params"]] == ["p_s", "p_1"]
    copy = zooql.parse("COPY (SHOW TREES) TO ? WITH (format = 'csv')")[0].to_tree()
    assert copy["node"] == "Copy" and copy["path"] == {"node": "Param", "key": 0}
    view = zooql.parse("CREATE VIEW v AS SELECT 1 AS x")[0].to_tree()
    assert view["node"] == "CreateView" and view["query"]["sql"] == "SELECT 1 AS x"
