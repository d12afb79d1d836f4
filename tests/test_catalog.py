"""Hub storage and catalog statements: golden EXPLAIN and bind errors, persistence across
processes, atomicity, locking, format version, imports, WHERE compilation."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

import zooql
from conftest import ROOT
from zooql.plan.nodes import DETAILS, OPERATORS
from zooql.errors import BindError, ExecutionError, StorageError, ZooQLError


@pytest.fixture
def small_hub(hub, tmp_path):
    hub.execute("ADD MODEL 'hf:org/base' AS base WITH (tree = 'llama-3-8b', downloads = 5000, license = 'mit')")
    hub.execute("ADD MODEL 'hf:org/ft-a' AS ft_a WITH (tree = 'llama-3-8b', parent = 'base', downloads = 10)")
    hub.execute("ADD MODEL 'hf:org/ft-b' AS ft_b WITH (tree = 'llama-3-8b', parent = 'base', downloads = 300, license = 'apache-2.0')")
    hub.execute("ADD MODEL 'hf:org/other' AS other WITH (tree = 'mistral-7b', downloads = 7)")
    (tmp_path / "evals.csv").write_text("model,dataset,metric,score\nbase,gsm8k,acc,0.5\nft_a,gsm8k,acc,0.6\n")
    hub.execute("IMPORT EVALUATIONS FROM 'evals.csv'", base_dir=str(tmp_path))
    return hub


def test_every_operator_has_a_printer():
    import importlib
    import pkgutil

    import zooql

    for info in pkgutil.walk_packages(zooql.__path__, "zooql."):
        if not info.name.startswith(("zooql.repl", "zooql.demo", "zooql.__main__")):
            importlib.import_module(info.name)   # every module of every method is loaded
    assert len(OPERATORS) >= 30 and DETAILS
    for name, cls in DETAILS.items():
        assert "explain_params" in cls.__dict__, f"plan detail {name} has no printer"
    for name, cls in OPERATORS.items():
        assert "explain_params" in cls.__dict__, f"operator {name} has no printer"
        assert "run" in cls.__dict__, f"operator {name} cannot run"


def test_explain_analyze_reports_rows(small_hub):
    lines = [r[0] for r in small_hub.execute("EXPLAIN ANALYZE SHOW MODELS WHERE tree = 'llama-3-8b'")]
    assert lines[0].startswith("CatalogScan: table=models filter=(tree = 'llama-3-8b') rows=3 elapsed=")


def test_show_models_filters_and_order(small_hub):
    res = small_hub.execute("SHOW MODELS WHERE tags.license = 'mit' OR downloads < 100 ORDER BY downloads DESC")
    assert [r[0] for r in res] == ["base", "ft_a", "other"]
    res = small_hub.execute("SHOW MODELS WHERE license IN ('mit', 'apache-2.0') ORDER BY name LIMIT 1")
    assert [r[0] for r in res] == ["base"]
    res = small_hub.execute("SHOW MODELS WHERE downloads * 2 BETWEEN 20 AND 700 AND parent IS NOT NULL")
    assert sorted(r[0] for r in res) == ["ft_a", "ft_b"]
    res = small_hub.execute("SHOW MODELS WHERE name LIKE 'ft%' AND NOT downloads > 100")
    assert [r[0] for r in res] == ["ft_a"]


def test_parameters_are_bound_not_spliced(small_hub):
    evil = "x'; DROP TABLE models; --"
    assert small_hub.execute("SHOW MODELS WHERE name = ?", [evil]).rows == []
    assert small_hub.execute("SHOW MODELS WHERE name = :n", {"n": "base"}).rows[0][0] == "base"
    assert small_hub.execute(f"SHOW MODELS WHERE name = '{evil.replace(chr(39), chr(39) * 2)}'").rows == []
    assert len(small_hub.execute("SHOW MODELS").rows) == 4


def test_show_trees_and_datasets(small_hub):
    trees = small_hub.execute("SHOW TREES").rows
    assert trees[0] == ("llama-3-8b", 3, "base", 5000)
    ds = small_hub.execute("SHOW DATASETS").to_dicts()
    assert ds[0]["dataset"] == "gsm8k" and ds[0]["evaluations"] == 2
    d = dict(small_hub.execute("DESCRIBE DATASET gsm8k").rows)
    assert d["evaluated_models"] == "2" and d["metrics"] == "acc"
    small_hub.execute("ALTER DATASET gsm8k SET description = 'grade school math', domain = 'math'")
    assert dict(small_hub.execute("DESCRIBE DATASET gsm8k").rows)["description"] == "grade school math"


def test_show_trees_lists_the_first_roots_then_how_many_more(tmp_path):
    """A tree's roots are its models whose parent is not in the tree (no parent, or one
    elsewhere); SHOW TREES names the first five by name, then counts the rest."""
    h = zooql.connect(tmp_path / "hub")
    for name in ["base"] + [f"r{i}" for i in range(8)]:
        h.execute(f"ADD MODEL 'hf:a/{name}' AS {name}")
    with h.store.write() as con:
        con.execute("UPDATE models SET tree = 't1', downloads = 7")
        con.execute("UPDATE models SET parent = 'base' WHERE name IN ('r0', 'r1')")
        con.execute("UPDATE models SET parent = 'elsewhere' WHERE name = 'r2'")     # not in the tree: a root
        con.execute("UPDATE models SET tree = 't2', parent = 'r3' WHERE name = 'r7'")   # its parent is in t1
    assert h.execute("SHOW TREES").rows == [("t1", 8, "base, r2, r3, r4, r5, ... (+1 more)", 7),
                                            ("t2", 1, "r7", 7)]
    with h.store.write() as con:
        con.execute("UPDATE models SET tree = 't1' WHERE name = 'r7'")
        con.execute("DELETE FROM models WHERE name IN ('r4', 'r5', 'r6')")
    assert h.execute("SHOW TREES").rows == [("t1", 6, "base, r2, r3", 7)]


def test_alter_describe_drop(small_hub):
    small_hub.execute("ALTER MODEL ft_a SET downloads = 42, tags.license = 'bsd', tree = 'llama-3-8b'")
    d = dict(small_hub.execute("DESCRIBE MODEL ft_a").rows)
    assert d["downloads"] == "42" and json.loads(d["tags"]) == {"license": "bsd"}
    assert small_hub.execute("DROP MODEL ft_a").message == "dropped model ft_a"
    with pytest.raises(BindError, match="unknown model 'ft_a'"):
        small_hub.execute("DESCRIBE MODEL ft_a")
    assert "nothing dropped" in small_hub.execute("DROP MODEL IF EXISTS ft_a").message


def test_persistence_across_processes(tmp_path):
    path = tmp_path / "hub"
    code = textwrap.dedent(f"""
        import zooql
        h = zooql.connect({str(path)!r})
        h.execute("ADD MODEL 'hf:a/b' AS m1 WITH (tree = 't', downloads = 3)")
    """)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    h = zooql.connect(path)
    assert h.execute("SHOW MODELS").rows[0][:5] == ("m1", "hf:a/b", "t", None, 3)


def test_failed_statement_changes_nothing(small_hub, tmp_path):
    # row 2 collides with an existing model after row 1 was inserted: the whole bulk ADD rolls back
    (tmp_path / "models.csv").write_text("name,source,tree\nnew1,hf:x/new1,t\nbase,hf:x/dup,t\n")
    with pytest.raises(ExecutionError, match="already exists"):
        small_hub.execute("ADD MODELS FROM 'models.csv'", base_dir=str(tmp_path))
    assert small_hub.execute("SHOW MODELS WHERE name = 'new1'").rows == []
    (tmp_path / "bad.csv").write_text("model,dataset,score\na,b,1\n")
    with pytest.raises(ExecutionError, match="lacks column"):
        small_hub.execute("IMPORT EVALUATIONS FROM 'bad.csv'", base_dir=str(tmp_path))
    with pytest.raises(ExecutionError, match="not found"):
        small_hub.execute("IMPORT OUTCOMES FROM 'missing.csv'", base_dir=str(tmp_path))
    assert dict(small_hub.execute("DESCRIBE DATASET gsm8k").rows)["evaluations"] == "2"


def test_bulk_add_csv_and_jsonl(hub, tmp_path):
    (tmp_path / "m.csv").write_text("name,source,tree,parent,downloads,license\n"
                                    "a,hf:o/a,t,,100,mit\nb,hf:o/b,t,a,5,\n")
    hub.execute("ADD MODELS FROM 'm.csv'", base_dir=str(tmp_path))
    (tmp_path / "m.jsonl").write_text('{"name": "c", "source": "hf:o/c", "tree": "t", "parent": "b"}\n')
    assert hub.execute("ADD MODELS FROM 'm.jsonl'", base_dir=str(tmp_path)).message == "added model c"
    rows = hub.execute("SHOW MODELS ORDER BY name").rows
    assert [(r[0], r[2], r[3], r[4]) for r in rows] == [("a", "t", None, 100), ("b", "t", "a", 5), ("c", "t", "b", None)]
    assert hub.execute("SHOW MODELS WHERE license = 'mit'").rows[0][0] == "a"


def test_killed_bulk_add_leaves_hub_openable(tmp_path):
    path = tmp_path / "hub"
    zooql.connect(path).execute("ADD MODEL 'hf:o/keep' AS keep")
    (tmp_path / "m.csv").write_text("name,source\n" + "".join(f"m{i},hf:o/m{i}\n" for i in range(200)))
    code = textwrap.dedent(f"""
        import os, signal, zooql
        from zooql.core import ops as O
        orig = O.InsertModels.run
        def run(self, ctx, inputs):
            out = orig(self, ctx, inputs)          # every row inserted, transaction not committed
            os.kill(os.getpid(), signal.SIGKILL)
        O.InsertModels.run = run
        zooql.connect({str(path)!r}).execute("ADD MODELS FROM 'm.csv'", base_dir={str(tmp_path)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT)
    assert proc.returncode == -9
    h = zooql.connect(path)
    assert [r[0] for r in h.execute("SHOW MODELS").rows] == ["keep"]
    h.execute("ADD MODEL 'hf:o/after' AS after")  # lock released by the dead process
    assert len(h.execute("SHOW MODELS").rows) == 2


def test_second_writer_gets_lock_error(tmp_path):
    path = tmp_path / "hub"
    h = zooql.connect(path)
    with h.store.writer():
        other = zooql.connect(path)
        with pytest.raises(StorageError, match="locked by another writer.*hub.lock"):
            other.store.__class__(path).writer().__enter__()
        # readers are not blocked by the lock file
    assert h.execute("SHOW MODELS").rows == []


def test_format_version_checked(tmp_path):
    path = tmp_path / "hub"
    zooql.connect(path)
    (path / "zooql_hub.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(StorageError, match="format version 99"):
        zooql.connect(path)
    other = tmp_path / "notahub"
    other.mkdir()
    (other / "data.txt").write_text("x")
    with pytest.raises(StorageError, match="not a ZooQL hub"):
        zooql.connect(other)


def test_result_api(small_hub):
    res = small_hub.execute("SHOW MODELS ORDER BY name LIMIT 2")
    assert res.columns[0] == "name" and len(res) == 2
    assert list(res)[0] == res.fetchall()[0] == res.fetchone()
    tbl = res.to_arrow()
    assert tbl.num_rows == 2 and tbl.column("name").to_pylist() == ["base", "ft_a"]
    assert small_hub.explain("SHOW TREES").startswith("CatalogScan: table=models")
    with zooql.connect(small_hub.path) as h2:
        assert len(h2.execute("SHOW MODELS")) == 4
    h2.close()
    with pytest.raises(ZooQLError, match="closed"):
        h2.execute("SHOW MODELS")
