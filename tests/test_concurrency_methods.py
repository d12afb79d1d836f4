"""Readers are never blocked by the methods' long statements (issue 18, defect 1): while
CREATE SEMANTIC GRAPH reads a folder, LABEL MODELS embeds images, SELECT MODELS ... USING
LABELS embeds texts, CLASSIFY runs its ensemble and TRAIN RECOMMENDER fits, reader processes
answer every one of 20 tries in under a second and see only committed data (each statement
writes in one short transaction at the end). A statement that fails midway writes nothing.

The writer runs in its own process with its heavy step held (:func:`zooql.testing.zoo.slow_down`
with ``until``) until the readers are done, so the statement lasts as long as the reads need and
no longer, on any machine."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import zooql
from zooql.errors import ExecutionError
from zooql.testing import readers as RW

pytest.importorskip("torch")
pytest.importorskip("open_clip")
from test_mll import make_graph_folder, write_png  # noqa: E402
import test_mll_lang  # noqa: E402
from test_mll_lang import add  # noqa: E402

ckpts = test_mll_lang.ckpts   # module fixture: tiny open_clip checkpoints

ROOT = Path(__file__).resolve().parent.parent
TRIES = 20
N_READERS = 2

PRELUDE = "import open_clip\nopen_clip.add_model_config({cfg!r})"


def _during(hub, tmp_path, cfg, step, seconds, stmt, counts: dict[str, str], gate: bool = True) -> list[dict]:
    """Run ``stmt`` in a writer process with reader processes timing SHOW MODELS and reading
    ``counts`` (name -> SQL count) meanwhile. The writer's ``step`` waits (at most ``seconds``)
    until the readers are done, so the statement lasts exactly as long as the reads need."""
    go = tmp_path / f"go-{step}"
    release = tmp_path / f"release-{step}"
    cwd = ROOT / "tests"
    readers = RW.start_readers(hub, go, counts, n=N_READERS, tries=TRIES, cwd=cwd)
    try:
        w = RW.start_writer(hub, step, seconds, stmt, tmp_path, until=release if gate else None,
                            prelude=PRELUDE.format(cfg=cfg), cwd=cwd)
    except BaseException:
        for p in readers:
            p.kill()
            p.communicate()
        raise
    try:
        go.write_text("")
        outs = RW.collect(readers)
    finally:
        release.write_text("")
        RW.finish(w)
    return RW.check_reads(outs, stmt[:40], n=N_READERS, tries=TRIES)


@pytest.fixture(scope="module")
def mll_hub(tmp_path_factory, ckpts):
    tmp = tmp_path_factory.mktemp("mllc")
    folder = make_graph_folder(tmp / "g", nodes=("dog", "cat", "car"), per_node=2)
    hub = tmp / "hub"
    h = zooql.connect(hub)
    h.execute(f"CREATE SEMANTIC GRAPH g FROM '{folder}'")
    add(h, ckpts, "a")
    add(h, ckpts, "b")
    h.close()
    return hub, tmp, str(Path(ckpts["a"]).parent / "cfg")


def test_readers_during_mll_statements(mll_hub, tmp_path):
    hub, tmp, cfg = mll_hub
    n = {"nodes": "SELECT count(*) FROM mll_nodes", "labels": "SELECT count(*) FROM mll_labels",
         "runs": "SELECT count(*) FROM mll_label_runs", "embs": "SELECT count(*) FROM mll_embeddings",
         "tasks": "SELECT count(*) FROM mll_tasks",
         "sentences": "SELECT count(*) FROM mll_nodes WHERE sentence_emb IS NOT NULL"}
    # CREATE OR REPLACE SEMANTIC GRAPH on a folder of 4 nodes: the readers see the 3 old
    # nodes until the commit, then the 4 new ones, never a half-written graph
    bigger = make_graph_folder(tmp / "g4", nodes=("dog", "cat", "car", "truck"), per_node=2)
    tries = _during(hub, tmp_path, cfg, "graph", 120, f"CREATE OR REPLACE SEMANTIC GRAPH g FROM '{bigger}'", n)
    seen = [t["nodes"] for t in tries]
    assert set(seen) <= {3, 4} and 3 in seen
    # LABEL MODELS (2 models x 4 nodes of image embeddings): nothing, then every label
    tries = _during(hub, tmp_path, cfg, "embed", 120, "LABEL MODELS ON GRAPH g", n)
    assert {(t["labels"], t["runs"], t["embs"]) for t in tries} <= {(0, 0, 0), (8, 2, 8)}
    assert (0, 0, 0) in {(t["labels"], t["runs"], t["embs"]) for t in tries}
    # SELECT MODELS ... USING LABELS (MiniLM texts): the task and the node sentence cache together
    tries = _during(hub, tmp_path, cfg, "text", 4.0,   # fixed: texts may also be embedded before the lock
                    "SELECT MODELS FOR TASK t CLASSES ('dog', 'car') USING LABELS TOP 2", n, gate=False)
    assert {(t["tasks"], t["sentences"]) for t in tries} <= {(0, 0), (1, 4)}
    assert (0, 0) in {(t["tasks"], t["sentences"]) for t in tries}
    # CLASSIFY (2 models' zero-shot passes): its task row only at the end
    test_dir = tmp / "test"
    for c in ("dog", "car"):
        write_png(str(test_dir / c / "x.png"), 60)
    tries = _during(hub, tmp_path, cfg, "classify", 120,
                    f"CLASSIFY '{test_dir}' FOR TASK t2 CLASSES ('dog', 'car') USING LABELS ENSEMBLE 2", n)
    assert {t["tasks"] for t in tries} <= {1, 2} and 1 in {t["tasks"] for t in tries}
    h = zooql.connect(hub)
    with h.store.read() as con:
        assert con.execute("SELECT count(*) FROM mll_nodes").fetchone()[0] == 4
        assert con.execute("SELECT count(*) FROM mll_labels").fetchone()[0] == 8
        assert sorted(r[0] for r in con.execute("SELECT name FROM mll_tasks").fetchall()) == ["t", "t2"]
    assert h.execute("ADD MODEL 'hf:org/late' AS late").rows == [("late",)]   # lock released


def _evals(folder: Path) -> Path:
    import numpy as np

    rng = np.random.default_rng(0)
    lines = ["model,dataset,metric,score"]
    for m in range(12):
        for d in range(6):
            lines.append(f"m{m},d{d},top1,{rng.uniform(20, 90):.3f}")
    path = folder / "evals.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_readers_during_train_recommender(tmp_path, ckpts):
    hub = tmp_path / "hub"
    h = zooql.connect(hub)
    h.execute(f"IMPORT EVALUATIONS FROM '{_evals(tmp_path)}'")
    h.close()
    n = {"recs": "SELECT count(*) FROM recommenders",
         "files": "SELECT count(*) FROM recommenders WHERE file IS NOT NULL"}
    tries = _during(hub, tmp_path, str(Path(ckpts["a"]).parent / "cfg"), "train", 120,
                    "TRAIN RECOMMENDER WITH (dim = 4, epochs = 5, val_epochs = 5)", n)
    assert {t["recs"] for t in tries} <= {0, 1} and 0 in {t["recs"] for t in tries}
    h = zooql.connect(hub)
    with h.store.read() as con:
        fname, size, sha = con.execute("SELECT file, size, sha256 FROM recommenders").fetchone()
    path = hub / "recommender" / fname
    assert path.stat().st_size == size and len(sha) == 64
    assert h.execute("CHECK HUB").rows == []


# ---- a failed statement writes nothing ---------------------------------------------------------

def _mll_state(h):
    with h.store.read() as con:
        return [con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in
                ("mll_graphs", "mll_nodes", "mll_embeddings", "mll_labels", "mll_label_runs", "mll_tasks")] + [
            con.execute("SELECT count(*) FROM mll_nodes WHERE sentence_emb IS NOT NULL").fetchone()[0]]


def test_failed_mll_statements_write_nothing(tmp_path, ckpts, monkeypatch):
    from zooql.methods.mll import labels as mll
    from zooql.methods.mll import semantic_graph

    folder = make_graph_folder(tmp_path / "g", nodes=("dog", "cat"), per_node=1)
    h = zooql.connect(tmp_path / "hub")
    h.execute(f"CREATE SEMANTIC GRAPH g FROM '{folder}'")
    add(h, ckpts, "a")
    add(h, ckpts, "b")
    before = _mll_state(h)

    calls = []

    def fail_second(orig):
        def f(*a, **kw):
            calls.append(1)
            if len(calls) >= 2:
                raise ExecutionError("planted failure")
            return orig(*a, **kw)
        return f

    monkeypatch.setattr(semantic_graph, "hash_files", fail_second(semantic_graph.hash_files))
    other = make_graph_folder(tmp_path / "g2", nodes=("dog", "car", "truck"), per_node=1)
    with pytest.raises(ExecutionError, match="planted failure"):
        h.execute(f"CREATE OR REPLACE SEMANTIC GRAPH g FROM '{other}'")
    assert _mll_state(h) == before
    monkeypatch.undo()

    calls.clear()
    monkeypatch.setattr(mll, "embed_node_images", fail_second(mll.embed_node_images))
    with pytest.raises(ExecutionError, match="planted failure"):
        h.execute("LABEL MODELS ON GRAPH g")
    assert _mll_state(h) == before
    monkeypatch.undo()
    h.execute("LABEL MODELS ON GRAPH g")
    before = _mll_state(h)

    calls.clear()
    monkeypatch.setattr(mll, "zero_shot", fail_second(mll.zero_shot))
    test_dir = tmp_path / "test"
    for c in ("dog", "cat"):
        write_png(str(test_dir / c / "x.png"), 60)
    with pytest.raises(ExecutionError, match="planted failure"):
        h.execute(f"CLASSIFY '{test_dir}' FOR TASK t CLASSES ('dog', 'cat') USING LABELS ENSEMBLE 2")
    assert _mll_state(h) == before     # neither the task nor the MiniLM sentence cache
    monkeypatch.undo()
    res = h.execute(f"CLASSIFY '{test_dir}' FOR TASK t CLASSES ('dog', 'cat') USING LABELS ENSEMBLE 2")
    assert len(res.rows) == 2
    after = _mll_state(h)
    assert after[5] == before[5] + 1 and after[6] == 2


def test_failed_train_recommender_writes_nothing(tmp_path, monkeypatch):
    from zooql.plan.nodes import ExecContext

    hub = tmp_path / "hub"
    h = zooql.connect(hub)
    h.execute(f"IMPORT EVALUATIONS FROM '{_evals(tmp_path)}'")

    def fail(self):
        raise ExecutionError("planted commit failure")

    monkeypatch.setattr(ExecContext, "commit", fail)
    with pytest.raises(ExecutionError, match="planted commit failure"):
        h.execute("TRAIN RECOMMENDER WITH (dim = 4, epochs = 3, validate = false)")
    monkeypatch.undo()
    with h.store.read() as con:
        assert con.execute("SELECT count(*) FROM recommenders").fetchone()[0] == 0
    folder = hub / "recommender"
    assert not folder.exists() or os.listdir(folder) == []     # the new .npz was removed
    out = h.execute("TRAIN RECOMMENDER WITH (dim = 4, epochs = 3, validate = false)")
    assert out.rows[0][5] is False and len(os.listdir(folder)) == 1
