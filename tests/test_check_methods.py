"""CHECK HUB through every method's ``on_check`` hook (issue 18): ModelLens' recommender file
(size, SHA-256, readable, orphans), MLL's stored embeddings and graph images, Hidden Gems'
outcome cache and DCD's conductance vectors. Each test damages one thing, sees CHECK HUB name
it (severity, object, the file, the problem, a fix), and sees the method never answer from
the damaged data: a damaged recommender file is a StorageError naming it, damaged
embeddings, vectors and scores are recomputed instead of used."""
from __future__ import annotations

import os

import numpy as np
import pytest

import zooql
from zooql.errors import StorageError

pytest.importorskip("torch")


def check(h):
    return h.execute("CHECK HUB").rows


def rw(h, sql, params=()):
    with h.store.write() as con:
        con.execute(sql, list(params))


# ---- ModelLens ---------------------------------------------------------------------------------

def _evals(folder):
    rng = np.random.default_rng(0)
    lines = ["model,dataset,metric,score"] + [f"m{m},d{d},top1,{rng.uniform(20, 90):.3f}"
                                              for m in range(10) for d in range(5)]
    (folder / "evals.csv").write_text("\n".join(lines) + "\n")
    return folder / "evals.csv"


TRAIN = "TRAIN RECOMMENDER WITH (dim = 4, epochs = 3, validate = false)"


@pytest.fixture
def trained(tmp_path):
    h = zooql.connect(tmp_path / "hub")
    h.execute(f"IMPORT EVALUATIONS FROM '{_evals(tmp_path)}'")
    out = h.execute(TRAIN)
    path = tmp_path / "hub" / "recommender" / out.rows[0][6]
    assert check(h) == []
    yield h, path
    h.close()


def _forget(path):   # the process caches loaded fits; a damaged file is read from disk
    from zooql.methods.modellens.catalog import _LOADED

    _LOADED.pop(str(path), None)


def test_recommender_overwritten_data_is_named_and_never_used(trained):
    h, path = trained
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = bytes(b ^ 0xFF for b in data[mid:mid + 64])   # same size: the checksum (and CRC) tell
    path.write_bytes(bytes(data))
    _forget(path)
    rows = check(h)
    assert [(r[0], r[1], r[2]) for r in rows] == [("error", "recommender modellens", str(path))]
    assert "SHA-256" in rows[0][3] and "TRAIN RECOMMENDER" in rows[0][4]
    assert h.explain("RECOMMEND MODELS FOR DATASET d0").splitlines()[1].strip() == "TrainRecommender: reuse=true"
    with pytest.raises(StorageError, match=rf"recommender file {path} is damaged: it does not read back"):
        h.execute("RECOMMEND MODELS FOR DATASET d0")
    h.execute(TRAIN)                            # TRAIN RECOMMENDER rebuilds it
    assert check(h) == []
    assert len(h.execute("RECOMMEND MODELS FOR DATASET d0 TOP 3").rows) == 3


def test_recommender_truncated_missing_and_orphan_files(trained):
    h, path = trained
    path.write_bytes(path.read_bytes()[:100])
    _forget(path)
    rows = check(h)
    assert [(r[0], r[2]) for r in rows] == [("error", str(path))] and "the catalog records" in rows[0][3]
    # the cheap size check at plan time: the damaged file is retrained, never loaded
    assert "reason=file_damaged" in h.explain("RECOMMEND MODELS FOR DATASET d0")
    assert len(h.execute("RECOMMEND MODELS FOR DATASET d0 TOP 3").rows) == 3
    assert check(h) == []
    path = path.parent / os.listdir(path.parent)[0]
    path.unlink()
    rows = check(h)
    assert [(r[0], r[2], r[3]) for r in rows] == [("error", str(path), "the recommender's file is missing")]
    h.execute(TRAIN)
    orphan = path.parent / "modellens-0000000000000000-00000000.npz"
    orphan.write_bytes(b"x")
    rows = check(h)
    assert [(r[0], r[2]) for r in rows] == [("warning", str(orphan))] and "interrupted" in rows[0][3]


# ---- MLL ---------------------------------------------------------------------------------------

@pytest.fixture
def labelled(tmp_path, ckpts):
    from test_mll import make_graph_folder
    from test_mll_lang import add

    folder = make_graph_folder(tmp_path / "g", nodes=("dog", "cat", "car"), per_node=2)
    h = zooql.connect(tmp_path / "hub")
    h.execute(f"CREATE SEMANTIC GRAPH g FROM '{folder}'")
    add(h, ckpts, "a")
    h.execute("LABEL MODELS ON GRAPH g")
    assert check(h) == []
    yield h, folder
    h.close()


pytest.importorskip("open_clip")
import test_mll_lang  # noqa: E402

ckpts = test_mll_lang.ckpts   # module fixture: tiny open_clip checkpoints


def test_mll_damaged_embeddings_are_named_and_recomputed(labelled):
    h, folder = labelled
    rw(h, "UPDATE mll_embeddings SET image_emb = ?::BLOB WHERE node = 'dog'", [b"\x00\x01\x02"])
    rows = check(h)
    assert [(r[0], r[1], r[2]) for r in rows] == [("error", "semantic graph g", str(h.store.catalog_path))]
    assert "embeddings of model clipa on node dog are damaged" in rows[0][3] and "LABEL MODELS" in rows[0][4]
    with pytest.raises(StorageError, match="embeddings of model id .* on node dog are damaged"):
        h.execute("SELECT MODELS FOR TASK t CLASSES ('dog') USING LABELS OPTIONS (nodes_per_class = 3)")
    # LABEL counts the damaged node as missing and recomputes it
    assert "new_nodes={clipa: 1}" in h.explain("LABEL MODELS ON GRAPH g")
    out = h.execute("LABEL MODELS ON GRAPH g").to_dicts()
    assert out[0]["new_nodes"] == 1
    assert check(h) == []


def test_mll_changed_and_missing_images_are_named(labelled):
    from test_mll import write_png

    h, folder = labelled
    write_png(os.path.join(folder, "cat", "00.png"), 250)
    os.remove(os.path.join(folder, "car", "01.png"))
    rows = check(h)
    assert [(r[0], r[2]) for r in rows] == [("warning", os.path.join(folder, "car", "01.png")),
                                            ("warning", os.path.join(folder, "cat"))]
    assert "node car: 1 image(s) missing" in rows[0][3] and "node cat: its images changed" in rows[1][3]
    assert all("CREATE OR REPLACE SEMANTIC GRAPH g" in r[4] for r in rows)
    h.execute(f"CREATE OR REPLACE SEMANTIC GRAPH g FROM '{folder}'")
    assert check(h) == []


# ---- Hidden Gems and DCD (catalog rows) ------------------------------------------------------------

@pytest.fixture
def discovered(tmp_path):
    from zooql.testing.zoo import build_zoo

    zoo = build_zoo(tmp_path / "zoo", n_models=4, n_queries=20)
    h = zooql.connect(tmp_path / "hub")
    h.execute(f"ADD MODELS FROM '{zoo['models_csv']}'")
    h.execute(f"IMPORT OUTCOMES FROM '{zoo['outcomes_csv']}'")
    h.execute("DISCOVER BEST IN TREE zoo ON bench BUDGET 40 SEED 1")
    assert check(h) == []
    yield h
    h.close()


def test_discover_cache_damaged_scores_and_orphans(discovered):
    from zooql.methods.hidden_gems.ops import _load_cache

    h = discovered
    with h.store.read() as con:
        task, fp, mid, qid = con.execute("SELECT task, fingerprint, model_id, query_id FROM discover_cache "
                                         "ORDER BY model_id, query_id LIMIT 1").fetchone()
    rw(h, "UPDATE discover_cache SET score = 'nan'::DOUBLE WHERE model_id = ? AND query_id = ?", [mid, qid])
    rw(h, "INSERT INTO discover_cache (task, fingerprint, model_id, model, query_id, score) "
          "VALUES (?, ?, 999, 'gone', 'q000', 1.0)", [task, fp])
    rows = check(h)
    catalog = str(h.store.catalog_path)
    assert [(r[0], r[1], r[2]) for r in rows] == [("error", f"task {task}", catalog),
                                                  ("warning", "discover_cache", catalog)]
    assert "1 cached evaluations have a score that is not a finite number" in rows[0][3]
    assert "1 cached evaluations name no registered model" in rows[1][3]

    class Src:
        pass
    src = Src()
    src.task, src.fingerprint, src.query_ids = task, fp, [qid]
    with h.store.read() as con:
        assert _load_cache(con, src, [{"id": mid}], 1) == {}     # the NaN score is never replayed


def test_conductance_vectors_damaged_are_named_and_not_cached(tmp_path):
    from zooql.methods.dcd.ops import cached_fingerprints

    h = zooql.connect(tmp_path / "hub")
    h.execute("ADD MODEL 'hf:org/a' AS a")
    h.execute("ADD MODEL 'hf:org/b' AS b")
    rows = [("a", "fp", 2, ["s1", "s2"], [0.5, 0.25]),           # fine (its task is gone: a warning)
            ("b", "fp", 2, ["s1", "s2"], [0.5]),                 # one value for two blocks
            ("gone", "fp", 2, ["s1"], [float("nan")])]           # no model, a NaN
    for m, fp, n, blocks, vec in rows:
        rw(h, "INSERT INTO dcd_vectors (model, task, fingerprint, n_images, steps, blocks, vector) "
              "VALUES (?, 't', ?, ?, 5, ?, ?)", [m, fp, n, blocks, vec])
    out = check(h)
    catalog = str(h.store.catalog_path)
    assert [(r[0], r[1], r[2]) for r in out] == [
        ("error", "conductance vector b/t", catalog), ("error", "conductance vector gone/t", catalog),
        ("warning", "dcd_vectors", catalog), ("warning", "dcd_vectors", catalog)]
    assert "1 values for 2 blocks" in out[0][3] and "RANK MODELS FOR TASK t" in out[0][4]
    assert "name no registered model" in out[2][3] and "name no task" in out[3][3]
    with h.store.read() as con:
        assert cached_fingerprints(con, "t") == {"a": "fp"}      # damaged vectors are recomputed, not used
