"""Readers are never blocked by a writer (issue 18, defect 1), with real processes: N reader
processes during a long PROBE and during a long bulk ADD MODELS each answer every one of 20
tries in under a second and see only committed data; a second writer gets the hub-lock
error at once, or waits with SET lock_timeout."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

import zooql
from zooql.errors import StorageError
from zooql.testing import readers as RW

pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")

ROOT = Path(__file__).resolve().parent.parent
TRIES = 20
N_READERS = 3

COUNTS = {"runs": "SELECT count(*) FROM probe_runs", "cols": "SELECT count(*) FROM descriptor_columns",
          "logits": "SELECT count(*) FROM logits"}


def _start_writer(hub, step, seconds, stmt, base, until=None):
    return RW.start_writer(hub, step, seconds, stmt, base, until=until, cwd=ROOT, timeout=30)


def _readers(hub, tmp_path, start_writer, during=None, counts=COUNTS, release=None):
    """Start the reader processes, then the writer (``start_writer()``), then let them read
    (and call ``during(writer)`` meanwhile); when they are done, create ``release`` (the
    file a gated writer waits for)."""
    go = tmp_path / "go"
    procs = RW.start_readers(hub, go, counts, n=N_READERS, tries=TRIES, cwd=ROOT)
    w = start_writer()
    go.write_text("")
    try:
        if during is not None:
            during(w)
        outs = RW.collect(procs, timeout=120)
    except BaseException:
        if release is not None:
            Path(release).write_text("")
        _finish(w)
        raise
    if release is not None:
        Path(release).write_text("")
    return w, outs


def _check_reads(outs, what):
    return RW.check_reads(outs, what, n=N_READERS, tries=TRIES)


def _finish(w):
    return RW.finish(w, timeout=120)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    from zooql.testing.zoo import build_zoo

    return build_zoo(tmp_path_factory.mktemp("zoo"), n_models=24)


def test_readers_during_long_probe_and_second_writer(tmp_path, zoo):
    hub = tmp_path / "hub"
    h = zooql.connect(hub)
    h.execute(f"ADD MODELS FROM '{zoo['models_csv']}'")
    h.execute(f"CREATE PROBE SET ps FROM '{zoo['probes']}'")
    h.close()
    def second_writer(w):  # fails at once with the hub-lock message naming the holder
        t0 = time.perf_counter()
        other = zooql.connect(hub)
        with pytest.raises(StorageError, match=rf"hub .* is locked by another writer \(lock file .*hub\.lock, "
                                               rf"held by pid {w.pid}\)"):
            other.execute("ADD MODEL 'hf:org/late' AS late")
        assert time.perf_counter() - t0 < 1.5

    w, outs = _readers(hub, tmp_path, lambda: _start_writer(hub, "forward", 0.4, "PROBE WITH ps", tmp_path),
                       during=second_writer)
    _finish(w)
    tries = _check_reads(outs, "PROBE")
    # only committed data: every committed run has all its 4 descriptor columns, runs only grow
    assert all(t["cols"] == 4 * t["runs"] for t in tries)
    for out in outs:
        runs = [t["runs"] for t in out]
        assert runs == sorted(runs)
    assert max(t["runs"] for t in tries) > min(t["runs"] for t in tries), "the reads must see PROBE progress"
    h = zooql.connect(hub)
    assert len(h.execute("SHOW MODELS").rows) == 24
    with h.store.read() as con:
        assert con.execute("SELECT count(*) FROM probe_runs").fetchone()[0] == 24
    assert h.execute("ADD MODEL 'hf:org/late' AS late").rows == [("late",)]   # lock released


def test_readers_during_bulk_add_see_all_or_nothing(tmp_path, zoo):
    hub = tmp_path / "hub"
    zooql.connect(hub).execute("ADD MODEL 'hf:org/first' AS first")
    w, outs = _readers(hub, tmp_path, lambda: _start_writer(hub, "inspect", 0.4, f"ADD MODELS FROM "
                                                            f"'{zoo['models_csv']}'", tmp_path))
    _finish(w)
    tries = _check_reads(outs, "ADD MODELS")
    assert {t["models"] for t in tries} == {1}          # one transaction at the end: nothing before it
    assert {t["logits"] for t in tries} == {0}
    h = zooql.connect(hub)
    assert len(h.execute("SHOW MODELS").rows) == 25
    with h.store.read() as con:
        assert con.execute("SELECT count(*) FROM logits").fetchone()[0] == 24 * 4


def test_second_writer_waits_with_lock_timeout(tmp_path, zoo):
    hub = tmp_path / "hub"
    h = zooql.connect(hub)
    h.close()
    w = _start_writer(hub, "inspect", 0.25, f"ADD MODELS FROM '{zoo['models_csv']}'", tmp_path)  # ~6 s
    try:
        other = zooql.connect(hub)
        other.execute("SET lock_timeout = 60")       # a setting of this connection: takes no lock
        t0 = time.perf_counter()
        assert other.execute("ADD MODEL 'hf:org/late' AS late").rows == [("late",)]
        waited = time.perf_counter() - t0
        assert w.poll() is not None or waited > 1.0
    finally:
        _finish(w)
    assert waited > 1.0
    assert len(zooql.connect(hub).execute("SHOW MODELS").rows) == 25
    other.execute("SET lock_timeout = 0.2")
    with other.store.writer():
        third = zooql.connect(hub)
        third.execute("SET lock_timeout = 0.3")
        t0 = time.perf_counter()
        with pytest.raises(StorageError, match=r"locked by another writer.*waited 0.3 s"):
            third.execute("DROP MODEL late")
        assert 0.3 <= time.perf_counter() - t0 < 1.5


def test_readers_during_create_task_and_query_full(tmp_path, zoo):
    """CREATE TASK (reading and copying an .npz) and FIND ... OPTIONS (query = 'full') (the
    query model's forward pass on its unobserved probes) write in one short commit at the
    end: readers answer in < 1 s meanwhile and see the state before or after, never half."""
    import numpy as np

    hub = tmp_path / "hub"
    h = zooql.connect(hub)
    h.execute(f"ADD MODELS FROM '{zoo['models_csv']}'")
    h.execute(f"CREATE PROBE SET ps FROM '{zoo['probes']}'")
    h.execute("PROBE MODELS WHERE name IN ('m00', 'm01', 'm02') WITH ps")   # fully probed anchors
    h.execute("PROBE WITH ps SAMPLE 50 PERCENT SEED 1")                     # the other 21: sampled
    h.close()
    masked = ("SELECT count(*) FROM probe_masks k JOIN models m ON m.id = k.model_id WHERE m.name = 'm05'")
    counts = {"masks": "SELECT count(*) FROM probe_masks", "cols": "SELECT count(*) FROM descriptor_columns",
              "m05": masked, "tasks": "SELECT count(*) FROM tasks", "queries": "SELECT count(*) FROM task_queries"}
    release = tmp_path / "release-find"
    stmt = "FIND LOGITS LIKE m05.logit[0] TOP 3 OPTIONS (query = 'full')"
    w, outs = _readers(hub, tmp_path, lambda: _start_writer(hub, "forward", 120, stmt, tmp_path, until=release),
                       counts=counts, release=release)
    _finish(w)
    tries = _check_reads(outs, "FIND ... query = 'full'")
    assert {(t["masks"], t["m05"], t["cols"]) for t in tries} == {(21, 1, 24 * 4)}   # nothing before the commit
    h = zooql.connect(hub)
    with h.store.read() as con:
        assert con.execute(masked).fetchone()[0] == 0 and con.execute(counts["cols"]).fetchone()[0] == 24 * 4
    assert h.execute("CHECK HUB").rows == []
    h.close()

    npz = tmp_path / "t.npz"
    rng = np.random.default_rng(0)
    np.savez(npz, images=rng.integers(0, 256, (30, 8, 8), dtype=np.uint8), labels=np.arange(30) % 4)
    release = tmp_path / "release-task"
    w, outs = _readers(hub, tmp_path, lambda: _start_writer(hub, "task", 120, f"CREATE TASK digits FROM '{npz}'",
                                                            tmp_path, until=release),
                       counts=counts, release=release)
    _finish(w)
    tries = _check_reads(outs, "CREATE TASK")
    assert {(t["tasks"], t["queries"]) for t in tries} == {(0, 0)}
    h = zooql.connect(hub)
    with h.store.read() as con:
        assert con.execute("SELECT count(*) FROM task_queries").fetchone()[0] == 30
    assert h.execute("CHECK HUB").rows == []


def test_failed_create_task_commit_leaves_nothing(tmp_path, monkeypatch):
    """CREATE TASK copies its .npz into the hub before the short commit; a failed commit
    removes it again, so the failed statement leaves no row and no file."""
    import os

    import numpy as np

    from zooql.errors import ExecutionError
    from zooql.plan.nodes import ExecContext

    npz = tmp_path / "t.npz"
    np.savez(npz, images=np.zeros((4, 8, 8), np.uint8), labels=np.arange(4))
    h = zooql.connect(tmp_path / "hub")

    def fail(self):
        raise ExecutionError("planted commit failure")

    monkeypatch.setattr(ExecContext, "commit", fail)
    with pytest.raises(ExecutionError, match="planted commit failure"):
        h.execute(f"CREATE TASK t FROM '{npz}'")
    monkeypatch.undo()
    with h.store.read() as con:
        assert con.execute("SELECT count(*) FROM tasks").fetchone()[0] == 0
    folder = tmp_path / "hub" / "tasks"
    assert not folder.exists() or os.listdir(folder) == []
    assert h.execute(f"CREATE TASK t FROM '{npz}'").rows[0][2] == 4
    assert len(os.listdir(folder)) == 1 and h.execute("CHECK HUB").rows == []
