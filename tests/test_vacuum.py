"""Issue 14, descriptors: DROP MODEL tombstones (no rewrite), VACUUM (round trip, interrupted,
readers meanwhile), the memory-bounded chunked exact scan, the reduced index."""
import os
import tracemalloc

import numpy as np
import pytest

import zooql
from zooql.errors import BindError
from zooql.methods.probelog import kernels as K
from zooql.methods.probelog import segio
from zooql.methods.probelog.descriptors import DescriptorMatrix

torch = pytest.importorskip("torch")

GREY = "WITH (input_size = 8, channels = 1, mean = (0.5), std = (0.5))"
N_MODELS = 6


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    d = tmp_path_factory.mktemp("zoo")
    rng = np.random.default_rng(0)
    for i in range(N_MODELS):
        lin = torch.nn.Linear(64, 5 + i)
        with torch.no_grad():
            lin.weight.copy_(torch.as_tensor(rng.normal(size=(5 + i, 64)) / 8, dtype=torch.float32))
            lin.bias.zero_()
        torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), lin)).save(str(d / f"m{i}.pt"))
    np.save(d / "probes.npy", rng.integers(0, 256, (40, 8, 8), dtype=np.uint8))
    return d


def _hub(path, zoo, models):
    hub = zooql.connect(path)
    for i in models:
        hub.execute(f"ADD MODEL 'torchscript:{zoo}/m{i}.pt' AS m{i} {GREY}")
    hub.execute(f"CREATE PROBE SET ps FROM '{zoo}/probes.npy'")
    hub.execute("PROBE MODELS WITH ps")
    return hub


def _desc_dir(hub):
    with hub.store.read() as con:
        rel = con.execute("SELECT dir FROM probe_sets WHERE name = 'ps'").fetchone()[0]
    return os.path.join(hub.path, rel, "descriptors")


def _segments(path):
    return {f: os.path.getsize(os.path.join(path, f)) for f in os.listdir(path) if f.startswith("seg-")}


def _find(hub, index="exact"):
    res = hub.execute(f"FIND LOGITS LIKE m0.logit[1] WITH PROBES ps TOP 40 OPTIONS (index = '{index}')")
    return [(r[1], r[2], r[4]) for r in res.rows]


def test_drop_tombstones_then_vacuum_equals_a_fresh_hub(tmp_path, zoo):
    hub = _hub(tmp_path / "hub", zoo, range(N_MODELS))
    path = _desc_dir(hub)
    before = _find(hub)
    segs = _segments(path)
    assert segs
    hub.execute("DROP MODEL m2")
    hub.execute("DROP MODEL m4")
    # DROP rewrote nothing: the same segment files with the same sizes, only tombstones added
    assert _segments(path) == segs
    assert any(f.startswith("tomb-") for f in os.listdir(path))
    dropped = _find(hub)
    assert dropped == [r for r in before if r[0] not in ("m2", "m4")][:len(dropped)]
    assert not {r[0] for r in dropped} & {"m2", "m4"}
    res = hub.execute("VACUUM ps")
    (name, sb, sa, dead, bb, ba, freed, rebuilt), = res.rows
    assert (name, sa, dead) == ("ps", 1, 7 + 9) and freed == bb - ba > 0
    assert "reclaimed" in res.message
    assert not any(f.startswith("tomb-") for f in os.listdir(path))
    after = _find(hub)
    assert after == dropped
    fresh = _hub(tmp_path / "fresh", zoo, [0, 1, 3, 5])
    assert _find(fresh) == after
    # a second VACUUM finds nothing to reclaim; VACUUM without a name covers every probe set
    assert hub.execute("VACUUM").rows[0][6] == 0
    with pytest.raises(BindError, match="unknown probe set"):
        hub.execute("VACUUM nope")
    hub.close()
    fresh.close()


def test_vacuum_rebuilds_an_index_holding_dropped_logits(tmp_path, zoo):
    hub = _hub(tmp_path / "hub", zoo, range(N_MODELS))
    exact = _find(hub)
    hnsw = _find(hub, "hnsw")   # builds the index
    assert hnsw == exact        # a gallery this small: HNSW candidates cover the exact top 40
    hub.execute("DROP MODEL m3")
    res = hub.execute("VACUUM ps")
    assert res.rows[0][7] == "hnsw"
    from zooql.methods.probelog.ann import HnswIndex
    with hub.store.read() as con:
        rel = con.execute("SELECT dir FROM probe_sets WHERE name = 'ps'").fetchone()[0]
    idx = HnswIndex.load(os.path.join(hub.path, rel, "hnsw"))
    assert idx._deleted.size == 0 and len(idx) == sum(5 + i for i in range(N_MODELS)) - 8
    assert _find(hub, "hnsw") == _find(hub)
    hub.close()


@pytest.mark.parametrize("stage", ["write", "rename"])
def test_interrupted_vacuum_leaves_a_working_hub(tmp_path, zoo, monkeypatch, stage):
    hub = _hub(tmp_path / "hub", zoo, range(N_MODELS))
    path = _desc_dir(hub)
    hub.execute("DROP MODEL m1")
    expected = _find(hub)
    manifest = open(os.path.join(path, "MANIFEST.json")).read()
    files = sorted(os.listdir(path))

    def fault(where, done):
        if where == stage:
            raise KeyboardInterrupt

    monkeypatch.setattr(segio, "FAULT", fault)
    with pytest.raises(KeyboardInterrupt):
        hub.execute("VACUUM ps")
    monkeypatch.setattr(segio, "FAULT", None)
    # the old state, whole: same manifest, no new or temporary file, same results
    assert open(os.path.join(path, "MANIFEST.json")).read() == manifest
    assert sorted(os.listdir(path)) == files
    assert _find(hub) == expected
    assert hub.execute("VACUUM ps").rows[0][6] > 0
    assert _find(hub) == expected
    hub.close()


def test_readers_keep_their_snapshot_while_vacuum_unlinks_it(tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    full = rng.standard_normal((30, 3000)).astype(np.float16)
    dm = DescriptorMatrix.create(tmp_path / "d", 30)
    for s in range(0, 3000, 1000):
        dm.append_columns_streaming([full[:, s:s + 1000]], 1000)
    dm.delete_columns(np.arange(500, 1500))
    reader = DescriptorMatrix.open(tmp_path / "d", "r")
    q = K.zscore_columns(rng.standard_normal((30, 1)))[:, 0]
    monkeypatch.setattr(K, "STREAM_MIN_BYTES", 0)   # the pread path, through held descriptors
    want = K.asymmetric_search(q, reader, 8, 15)
    st = dm.compact()
    assert st["segments_before"] == 3 and st["segments_after"] == 1 and st["bytes_after"] < st["bytes_before"]
    got = K.asymmetric_search(q, reader, 8, 15)      # old segments: unlinked, still readable
    np.testing.assert_array_equal(got[0], want[0])
    assert reader.refresh() and reader.n_segments == 1
    np.testing.assert_array_equal(K.asymmetric_search(q, reader, 8, 15)[0], want[0])


def _matrix(tmp_path, rng, n=24, cols=(40000, 30000, 9000)):
    dm = DescriptorMatrix.create(tmp_path / "m", n)
    blocks = [rng.standard_normal((n, c)).astype(np.float16) for c in cols]
    for b in blocks:
        dm.append_columns_streaming([b], b.shape[1])
    return dm, np.concatenate(blocks, axis=1)


def test_chunked_scan_equals_unchunked(tmp_path, monkeypatch):
    rng = np.random.default_rng(7)
    dm, full = _matrix(tmp_path, rng)
    dm.delete_columns(np.r_[np.arange(100, 9000), np.arange(45000, 45100)])
    live = dm.column_ids()
    cands = [None, np.arange(0, full.shape[1], 3), live[::2]]
    qs = [K.zscore_columns(rng.standard_normal((24, 1)))[:, 0] for _ in range(3)]
    plain = [[K.asymmetric_search(q, dm, 6, 25, candidates=c) for c in cands] for q in qs]
    monkeypatch.setattr(K, "STREAM_MIN_BYTES", 0)
    monkeypatch.setattr(segio, "SCAN_BUDGET", 2 * 6 * 2 * 5000)   # 5,000-10,000-column chunks
    for workers in (1, 2):   # one thread reading and scanning in turn, or two sharing the chunks
        monkeypatch.setattr(segio, "SCAN_WORKERS", workers)
        for q, want in zip(qs, plain):
            for c, (wi, wd) in zip(cands, want):
                gi, gd = K.asymmetric_search(q, dm, 6, 25, candidates=c)
                np.testing.assert_array_equal(gi, wi)
                np.testing.assert_array_equal(gd, wd)
                ri, _ = K.reference_search(q, full, 6, 25,
                                           candidates=live if c is None else np.intersect1d(c, live))
                np.testing.assert_array_equal(gi, ri)


def test_chunked_scan_memory_is_bounded_by_the_budget(tmp_path, monkeypatch):
    rng = np.random.default_rng(8)
    dm, _ = _matrix(tmp_path, rng, n=40, cols=(300000, 200000))
    q = K.zscore_columns(rng.standard_normal((40, 1)))[:, 0]
    k = 20
    rows_bytes = k * 500000 * 2                       # what the k probe rows weigh: 20 MB
    budget = 1 << 20
    monkeypatch.setattr(K, "STREAM_MIN_BYTES", 0)
    monkeypatch.setattr(segio, "SCAN_BUDGET", budget)
    want = K.asymmetric_search(q, dm, k, 10)          # warm up (kernels compiled)
    tracemalloc.start()
    got = K.asymmetric_search(q, dm, k, 10)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    np.testing.assert_array_equal(got[0], want[0])
    assert peak < 2 * budget < rows_bytes / 8, peak


def test_reduced_index_reranks_candidates_exactly(tmp_path, zoo):
    hub = _hub(tmp_path / "hub", zoo, range(N_MODELS))
    exact = hub.execute("FIND LOGITS LIKE m0.logit[1] WITH PROBES ps TOP 10 OPTIONS (index = 'exact')")
    red = hub.execute("FIND LOGITS LIKE m0.logit[1] WITH PROBES ps TOP 10 OPTIONS (index = 'hnsw_reduced')")
    assert "index=hnsw_reduced" in red.message
    d = [r[4] for r in red.rows]
    assert d == sorted(d)                              # exact distances, in exact order
    exact_d = {(r[1], r[2]): r[4] for r in exact.rows}
    with hub.store.read() as con:
        rel = con.execute("SELECT dir FROM probe_sets WHERE name = 'ps'").fetchone()[0]
    assert os.path.exists(os.path.join(hub.path, rel, "hnsw_reduced", "CURRENT.json"))
    for r in red.rows:                                 # the same distances the exact scan computes
        if (r[1], r[2]) in exact_d:
            assert r[4] == exact_d[(r[1], r[2])]
    assert [(r[1], r[2]) for r in red.rows] == [(r[1], r[2]) for r in exact.rows]  # small: all candidates
    plan = str(hub.explain("FIND LOGITS LIKE m0.logit[1] WITH PROBES ps OPTIONS (index = 'hnsw_reduced')"))
    assert "index=hnsw_reduced" in plan
    with pytest.raises(BindError, match="hnsw_reduced"):
        hub.execute("FIND MODELS LIKE m0 WITH PROBES ps OPTIONS (index = 'hnsw_reduced')")
    hub.close()


def test_reduced_index_follows_drop_and_vacuum(tmp_path, zoo):
    """The reduced index (posting lists of top probes) masks dropped logits, and VACUUM
    rebuilds it without them; FIND through it equals the exact answer on this small hub."""
    from zooql.methods.probelog.postings import PostingsIndex

    hub = _hub(tmp_path / "hub", zoo, range(N_MODELS))
    assert _find(hub, "hnsw_reduced") == _find(hub)
    with hub.store.read() as con:
        rel = con.execute("SELECT dir FROM probe_sets WHERE name = 'ps'").fetchone()[0]
    path = os.path.join(hub.path, rel, "hnsw_reduced")
    total = sum(5 + i for i in range(N_MODELS))
    assert len(PostingsIndex.load(path)) == total
    hub.execute("DROP MODEL m3")
    assert PostingsIndex.load(path)._deleted.size == 8
    assert _find(hub, "hnsw_reduced") == _find(hub)
    res = hub.execute("VACUUM ps")
    assert res.rows[0][7] == "hnsw_reduced"
    idx = PostingsIndex.load(path)
    assert idx._deleted.size == 0 and len(idx) == total - 8
    assert _find(hub, "hnsw_reduced") == _find(hub)
    hub.close()


def test_reduced_index_unit_rerank_order(tmp_path):
    """Candidates of the 64-d PCA index re-ranked on the full descriptors: the result is the
    exact ordering of the candidate set (asymmetric distances ascending, ties by id)."""
    from zooql.methods.probelog.ann import HnswIndex, plan_index

    rng = np.random.default_rng(3)
    X = K.zscore_columns(rng.standard_normal((100, 5000))).astype(np.float16)
    idx = HnswIndex(100, dim=64, embedding="pca").build_from_store(X, M=12, ef_construction=100, num_threads=1)
    q = X[:, 17].astype(np.float32)
    cand = idx.query(q, 300, ef=300)
    ids, d = K.asymmetric_search(q, X, 20, 10, candidates=cand)
    ri, rd = K.reference_search(q, X, 20, 10, candidates=cand)
    np.testing.assert_array_equal(ids, ri)
    np.testing.assert_allclose(d, rd, rtol=1e-6)
    assert ids[0] == 17
    assert plan_index(10_000_000)[0] == "exact" and plan_index(1_000_000)[0] == "hnsw"
