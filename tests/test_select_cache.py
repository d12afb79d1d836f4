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

import pytest

import zooql
from zooql.core import select, sqlcheck
from zooql.errors import BindError, ExecutionError
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
            select.run_sql(cur, f"SELECT * FROM read_csv('{tmp_path / 'x.csv'}')", {}, rollback=True)
        with pytest.raises(ExecutionError, match="enable_external_access"):
            select.run_sql(cur, "SET enable_external_access = true", {}, rollback=True)
        try:    # DDL, were the check bypassed: rolled back with the query's transaction
            select.run_sql(cur, "CREATE VIEW models2 AS SELECT 1 AS x", {}, rollback=True)
        except BindError:
            pass
        cur.register("leftover", hub.execute("SELECT 1 AS x").to_arrow())
    with select.shared_sandbox(hub.store, rel) as cur:       # nothing a query did is left
        for name in ("models2", "leftover"):
            with pytest.raises(BindError):
                select.run_sql(cur, f"SELECT * FROM {name}", {}, rollback=True)
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
