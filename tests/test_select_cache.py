"""The shared read-only connections (zooql.storage.hub.SharedReads) that SELECT and the
other reads use between statements: kept while statements come, handed back when idle,
never stale after a write by this or another process; SELECT's ATTACH waits out a
writer's commit window; the sandbox's fences hold on the shared sandbox; REPL completion of
model names runs LIMITed prefix queries, never loads every name."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

import zooql
from zooql.core import select, sqlcheck
from zooql.errors import BindError
from zooql.storage import hub as H

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def hub(tmp_path):
    h = zooql.connect(tmp_path / "hub")
    h.execute("ADD MODEL 'hf:org/a' AS a")
    yield h
    h.store.shared.close()


def count(h) -> int:
    return h.execute("SELECT count(*) AS n FROM models").rows[0][0]


def _spawn(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_connections_are_kept_between_statements_and_handed_back_when_idle(hub, monkeypatch):
    monkeypatch.setattr(H, "READ_IDLE_S", 0.3)
    hub.store.shared.close()
    before = hub.store.shared.opened
    for _ in range(5):
        assert count(hub) == 1
    assert hub.store.shared.opened - before == 2          # the catalog and the sandbox, once each
    assert set(hub.store.shared.cons) == {"catalog", "sandbox"}
    deadline = time.monotonic() + 5
    while hub.store.shared.cons and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not hub.store.shared.cons                       # idle: the file is handed back


def test_no_stale_read_after_a_write_in_this_process(hub, tmp_path):
    assert count(hub) == 1 and hub.store.shared.cons
    other = zooql.connect(tmp_path / "hub")
    other.execute("ADD MODEL 'hf:org/b' AS b")
    assert count(hub) == 2
    hub.execute("CREATE VIEW v AS SELECT name FROM models")   # the writing hub reads again at once
    assert hub.execute("SELECT count(*) FROM v").rows == [(2,)]


def test_no_stale_read_after_a_write_by_another_process(hub, tmp_path):
    assert count(hub) == 1 and hub.store.shared.cons        # held open by this process
    writer = _spawn(f"""
        import time, zooql
        h = zooql.connect({str(tmp_path / 'hub')!r})
        t0 = time.perf_counter()
        h.execute("ADD MODEL 'hf:org/b' AS b")
        print(round(time.perf_counter() - t0, 3))
        """)
    seen = []
    deadline = time.monotonic() + 60
    while writer.poll() is None and time.monotonic() < deadline:   # a busy reader: statements back to back
        seen.append(count(hub))
    out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    assert count(hub) == 2                                   # the committed write is seen at once
    assert set(seen) <= {1, 2} and seen == sorted(seen)       # never a step back
    assert float(out.split()[-1]) < H.WRITE_OPEN_S


def test_select_waits_out_a_commit_window(hub, tmp_path):
    hub.store.shared.close()
    holder = _spawn(f"""
        import time, duckdb
        con = duckdb.connect({str(hub.store.catalog_path)!r})
        con.execute("BEGIN")
        con.execute("INSERT INTO models (name, source, loadable) VALUES ('w', 'hf:org/w', false)")
        print("HOLD", flush=True)
        time.sleep(0.8)
        con.execute("COMMIT")
        con.close()
        """)
    assert holder.stdout.readline().strip() == "HOLD"
    t0 = time.perf_counter()
    con = select.sandbox(hub.store, [("models", sqlcheck.qualified("SELECT name FROM models"))], [])
    try:
        waited = time.perf_counter() - t0
        assert con.execute("SELECT count(*) FROM models").fetchone()[0] == 2   # after the commit
    finally:
        con.close()
    assert waited > 0.2
    holder.wait(timeout=30)
    holder = _spawn(holder.args[2].replace("'w'", "'w2'").replace("hf:org/w", "hf:org/w2"))
    assert holder.stdout.readline().strip() == "HOLD"
    assert count(hub) == 3                                    # the statement waits and answers
    holder.wait(timeout=30)


def test_sandbox_fences_hold_on_the_shared_sandbox(hub, tmp_path):
    (tmp_path / "x.csv").write_text("a\n1\n")
    rel = [("models", sqlcheck.qualified("SELECT name FROM models"))]
    with select.shared_sandbox(hub.store, rel) as cur:
        assert cur is not None
        with pytest.raises(BindError, match="refused"):
            select.run_sql(cur, f"SELECT * FROM read_csv('{tmp_path / 'x.csv'}')", {})
        for sql in ("SET enable_external_access = true", "CREATE VIEW models2 AS SELECT 1 AS x",
                    "SELECT 1 AS x; CREATE VIEW models2 AS SELECT 1 AS x"):
            with pytest.raises(BindError, match="only queries run in the sandbox"):
                select.run_sql(cur, sql, {})    # were the check bypassed: DuckDB's parser says no
        with pytest.raises(duckdb.Error, match="enable_external_access"):
            cur.execute("SET enable_external_access = true")     # and the configuration is locked
        cur.register("leftover", hub.execute("SELECT 1 AS x").to_arrow())
    with select.shared_sandbox(hub.store, rel) as cur:       # nothing a query did is left
        for name in ("models2", "leftover"):
            with pytest.raises(BindError):
                select.run_sql(cur, f"SELECT * FROM {name}", {})
    assert hub.store.shared.cons


def test_repl_completion_of_model_names_uses_limited_prefix_queries(hub, monkeypatch):
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    from zooql.repl import completer as RC
    from zooql.storage import catalog as C

    with hub.store.write() as con:
        con.execute("INSERT INTO models (name, source, loadable) SELECT 'm' || i, 'hf:org/m' || i, false "
                    "FROM range(300) r(i)")
    calls = []
    real = C.model_names_with_prefix

    def spy(con, prefix, limit):
        calls.append((prefix, limit))
        return real(con, prefix, limit)

    def every_name(con):
        raise AssertionError("completion loaded every model name")

    monkeypatch.setattr(C, "model_names_with_prefix", spy)
    monkeypatch.setattr(C, "model_names", every_name)
    comp = RC.ZooQLCompleter(hub)
    event = CompleteEvent(completion_requested=True)

    def offered(text):
        return [c.display_text for c in comp.get_completions(Document(text), event)]

    got = offered("DESCRIBE MODEL m1")
    assert calls == [("m1", RC.MODEL_LIMIT)] and len(got) == RC.MODEL_LIMIT
    assert got == sorted(got) and all(g.startswith("m1") for g in got)
    assert offered("DESCRIBE MODEL M11") == ["m11"] + [f"m11{i}" for i in range(10)]   # case-insensitive
    assert calls[-1] == ("M11", RC.MODEL_LIMIT)
    assert offered("DESCRIBE MODEL m115") == ["m115"] and len(calls) == 2  # refined locally: complete answer
    assert hub.complete_names("models", "m_", 5) == []                     # _ is not a wildcard


def test_unknown_model_suggestions_on_a_large_catalog(hub, monkeypatch):
    from zooql.errors import BindError as BE
    from zooql.storage import catalog as C

    monkeypatch.setattr(C, "SUGGEST_SCAN", 0)        # as if the catalog were large
    monkeypatch.setattr(C, "model_names", lambda con: (_ for _ in ()).throw(AssertionError("all names")))
    with pytest.raises(BE, match=r"unknown model 'aa' \(did you mean 'a'\?\)"):
        hub.execute("DESCRIBE MODEL aa")
    assert hub.execute("DESCRIBE MODEL a").rows[0] == ("name", "a")


def test_statement_cache_is_used_again_and_invalidated_by_any_catalog_change(hub):
    c = select.CACHE
    c.clear()
    q = "SELECT name FROM models ORDER BY name"
    names = lambda: [r[0] for r in hub.execute(q)]     # noqa: E731
    assert names() == ["a"] and (c.hits, c.misses) == (0, 1)
    assert names() == ["a"] and (c.hits, c.misses) == (1, 1)    # bound once, like a prepared statement
    before = hub.store.generation()
    hub.execute("ADD MODEL 'hf:org/b' AS b")
    assert hub.store.generation() != before
    assert names() == ["a", "b"] and (c.hits, c.misses) == (1, 2)   # a new generation: bound again
    assert names() == ["a", "b"] and c.hits == 2
    # parameter values are bound on every use, never kept with the statement
    p = "SELECT name FROM models WHERE name = ?"
    assert [r[0] for r in hub.execute(p, ["a"])] == ["a"]
    assert [r[0] for r in hub.execute(p, ["b"])] == ["b"] and c.hits == 3
    # a relation that did not exist: the error is not kept; after CREATE VIEW the same text runs
    with pytest.raises(BindError, match="unknown relation 'v'"):
        hub.execute("SELECT * FROM v")
    hub.execute("CREATE VIEW v AS SELECT name FROM models WHERE name = 'a'")
    assert [r[0] for r in hub.execute("SELECT * FROM v")] == ["a"]
    hub.execute("DROP VIEW v")
    hub.execute("CREATE VIEW v AS SELECT name FROM models WHERE name = 'b'")
    assert [r[0] for r in hub.execute("SELECT * FROM v")] == ["b"]      # the view's new text is seen
    hub.execute("DROP VIEW v")
    with pytest.raises(BindError, match="unknown relation 'v'"):
        hub.execute("SELECT * FROM v")
    assert all(key[0].sql != "SELECT * FROM v" for key in c.entries)     # views are never cached


def test_statement_cache_sees_a_change_made_by_another_process(hub, tmp_path):
    select.CACHE.clear()
    q = "SELECT count(*) FROM models"
    assert hub.execute(q).rows == [(1,)] and hub.execute(q).rows == [(1,)]
    hub.store.shared.close()
    code = (f"import zooql; h = zooql.connect({str(hub.path)!r}, create=False); "
            "h.execute(\"ADD MODEL 'hf:org/c' AS c\")")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)
    misses = select.CACHE.misses
    assert hub.execute(q).rows == [(2,)] and select.CACHE.misses == misses + 1


def test_statement_cache_is_bounded_least_recently_used_first():
    c = select.StatementCache(size=2)
    c.put("a", 1, "A")
    c.put("b", 1, "B")
    assert c.get("a", 1) == "A"           # a is now the most recently used
    c.put("c", 1, "C")
    assert list(c.entries) == ["a", "c"] and c.get("b", 1) is None
    assert c.get("a", 2) is None          # another generation: not valid
