"""The reduced index of FIND (``hnsw_reduced``): posting lists of every logit's top probes
(zooql/methods/probelog/postings.py, issue 14)."""
import json
import os

import numpy as np
import pytest

from zooql.errors import StorageError
from zooql.methods.probelog import kernels as K
from zooql.methods.probelog.descriptors import DescriptorMatrix
from zooql.methods.probelog.postings import PostingsIndex


def _structured(n=200, cols=20000, concepts=1000, seed=0):
    """The benchmark's kind of gallery (hub_scale_desc._base): Gaussian concept prototypes
    with a few strongly responding probes, plus noise -- a flat spectrum, where a 64-d PCA
    of the whole descriptor keeps little of what the asymmetric discrepancy compares."""
    rng = np.random.default_rng(seed)
    proto = rng.standard_normal((n, concepts)).astype(np.float32) * 0.6
    proto += (rng.random((n, concepts)) < 0.05) * np.float32(4.0)
    x = proto[:, rng.integers(0, concepts, cols)] + 0.8 * rng.standard_normal((n, cols), dtype=np.float32)
    return K.zscore_columns(x).astype(np.float16), rng


def _queries(X, rng, m=20):
    cols = rng.choice(X.shape[1], m, replace=False)
    Q = X[:, cols].astype(np.float32)
    return [K.zscore_columns(Q[:, j] + 0.5 * rng.standard_normal(Q.shape[0]).astype(np.float32))[:, 0]
            for j in range(m)]


def test_pool_recall_on_a_flat_spectrum_gallery():
    """The pool of 200 re-ranked exactly finds the exact top 10 (at 1M benchmark logits the
    64-d PCA HNSW index it replaces found 0.745 of it with 600; at this size both do well)."""
    X, rng = _structured()
    idx = PostingsIndex(X.shape[0], top=20).build_from_store(X)
    rec = []
    for q in _queries(X, rng):
        ex = K.asymmetric_search(q, X, 20, 10)[0]
        got = K.asymmetric_search(q, X, 20, 10, candidates=np.sort(idx.query(q, 200, k_probes=20)))[0]
        rec.append(len(set(ex.tolist()) & set(got.tolist())) / 10)
    assert np.mean(rec) >= 0.95, np.mean(rec)


def test_scores_count_shared_top_probes():
    n = 30
    X = np.zeros((n, 4), np.float32)
    X[[0, 1, 2], 0] = 5        # column 0: top probes 0, 1, 2
    X[[0, 1, 9], 1] = 5        # column 1 shares 0, 1
    X[[7, 8, 9], 2] = 5        # column 2 shares none
    X[[2, 1, 0], 3] = [6, 5, 4]
    idx = PostingsIndex(n, top=3).build_from_store(X)
    q = np.zeros(n, np.float32)
    q[[0, 1, 2]] = [3, 2, 1]
    s = idx.scores(q, k_probes=3)
    assert np.floor(s).tolist() == [3, 2, 0, 3]
    assert idx.query(q, 4, k_probes=3).tolist()[:2] in ([0, 3], [3, 0])
    assert idx.query(q, 4, k_probes=3).tolist()[2:] == [1, 2]   # the one sharing nothing still fills k


def test_filter_and_deletes_never_short(tmp_path):
    X, rng = _structured(n=64, cols=3000, concepts=100)
    dm = DescriptorMatrix.create(tmp_path / "d", 64, "float16")
    dm.append_columns_streaming([X[:, :2000]], 2000)
    dm.append_columns_streaming([X[:, 2000:]], 1000)
    idx = PostingsIndex(64).build_from_store(dm)
    assert idx.ids.tolist() == list(range(3000)) and len(idx) == 3000
    q = X[:, 5].astype(np.float32)
    first = idx.query(q, 50)
    assert idx.mark_deleted(first[:10]) == 10 and idx.mark_deleted(first[:10]) == 0
    after = idx.query(q, 50)
    assert not set(after.tolist()) & set(first[:10].tolist())
    assert after[:40].tolist() == first[10:].tolist()            # the same order for the others
    assert sorted(idx._deleted.tolist()) == sorted(first[:10].tolist()) and len(idx) == 2990
    adm = np.array([1, 2, 3, 2500, int(first[0])])               # one of them deleted
    got = idx.query(q, 10, filter_ids=adm)
    assert sorted(got.tolist()) == [1, 2, 3, 2500]                # min(k, admissible live)
    assert idx.query(q, 3, filter_ids=set(adm.tolist())).shape[0] == 3
    assert idx.query(q, 3, filter_ids=np.array([int(first[0])])).size == 0


def test_matches_a_fresh_build_after_add():
    X, _ = _structured(n=64, cols=2000, concepts=100, seed=1)
    whole = PostingsIndex(64).build(X.T.astype(np.float32), np.arange(2000))
    part = PostingsIndex(64).build(X[:, :1500].T.astype(np.float32), np.arange(1500))
    part.add(X[:, 1500:].T.astype(np.float32), np.arange(1500, 2000))
    q = X[:, 1700].astype(np.float32)
    assert part.query(q, 100).tolist() == whole.query(q, 100).tolist()
    with pytest.raises(ValueError):
        part.add(X[:10].T.astype(np.float32), np.arange(64))


def test_save_load_round_trip_and_damage(tmp_path):
    X, _ = _structured(n=64, cols=2000, concepts=100, seed=2)
    idx = PostingsIndex(64, top=12).build_from_store(X)
    idx.mark_deleted([3, 4])
    d = tmp_path / "ix"
    idx.save(d)
    idx.save(d)                                                   # a second generation replaces the first
    files = sorted(os.listdir(d))
    assert files == ["CURRENT.json", "postings-00000002.npz"]
    back = PostingsIndex.load(d)
    q = X[:, 9].astype(np.float32)
    assert back.top == 12 and back.query(q, 60).tolist() == idx.query(q, 60).tolist()
    assert back._deleted.tolist() == [3, 4]
    with open(d / "postings-00000002.npz", "r+b") as f:
        f.seek(100)
        f.write(b"\0" * 16)
    with pytest.raises(StorageError, match="delete the folder"):
        PostingsIndex.load(d)
    (d / "CURRENT.json").write_text(json.dumps({"format": "zooql-hnsw", "version": 1}))
    with pytest.raises(StorageError, match="not a ZooQL postings index"):
        PostingsIndex.load(d)


def test_store_loads_each_format(tmp_path):
    """A folder written by the old 64-d PCA HNSW reduced index still loads (as HnswIndex)."""
    pytest.importorskip("hnswlib")
    from zooql.methods.probelog import store as S
    from zooql.methods.probelog.ann import HnswIndex

    X, _ = _structured(n=64, cols=500, concepts=50, seed=3)
    h = HnswIndex(64, dim=16, embedding="pca").build_from_store(X, M=8, ef_construction=50, num_threads=1)
    h.save(tmp_path / "old")
    PostingsIndex(64).build_from_store(X).save(tmp_path / "new")
    assert S._index_class(S._index_pointer(str(tmp_path / "old"))) is HnswIndex
    assert S._index_class(S._index_pointer(str(tmp_path / "new"))) is PostingsIndex
    assert isinstance(S.new_index("hnsw_reduced", 64), PostingsIndex)
    assert isinstance(S.new_index("hnsw_reduced", 64, like=h), HnswIndex)   # VACUUM keeps its kind
    assert isinstance(S.new_index("hnsw", 64), HnswIndex)


@pytest.mark.parametrize("k", [1, 37, 400, 2990, 5000])
def test_query_is_the_top_k_of_the_scores(k):
    """The fast selection (count levels from the query's posting entries) returns exactly
    the k best live logits by (score desc, label), including when k needs untouched ones."""
    X, rng = _structured(n=64, cols=3000, concepts=100, seed=4)
    idx = PostingsIndex(64, top=8).build_from_store(X)
    idx.mark_deleted(rng.choice(3000, 10, replace=False))
    for q in _queries(X, rng, m=3):
        s = idx.scores(q, k_probes=8)
        live = np.flatnonzero(~idx._dead)
        want = live[np.lexsort((idx._labels[live], -s[live]))][:k]
        assert idx.query(q, k, k_probes=8).tolist() == idx._labels[want].tolist()
