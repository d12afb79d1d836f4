"""ProbeLog numeric + storage core: descriptors, discrepancies, descriptor files, HNSW."""
from __future__ import annotations

import ctypes
import mmap
import os

import numpy as np
import pytest

from zooql.methods.probelog import kernels as P
from zooql.methods.probelog.ann import HnswIndex, hnsw_asymmetric_search, plan_index
from zooql.methods.probelog.probesets import builtin_probes, probe_hashes
from zooql.errors import StorageError
from zooql.methods.probelog.descriptors import DescriptorMatrix


# ----------------------------------------------------------------------------- descriptors
def test_zscore_columns_hand_computed():
    logits = np.array([[1.0, 5.0, 2.0],
                       [2.0, 5.0, 4.0],
                       [3.0, 5.0, 6.0]])
    d = P.zscore_columns(logits)
    s = np.sqrt(2.0 / 3.0)  # population std of (1, 2, 3)
    assert d.dtype == np.float32 and d.shape == (3, 3)
    np.testing.assert_allclose(d[:, 0], [-1 / s, 0, 1 / s], rtol=1e-6)
    np.testing.assert_allclose(d[:, 1], 0.0)           # constant column: std=0 guarded
    np.testing.assert_allclose(d[:, 2], d[:, 0], rtol=1e-6)  # affine invariance
    np.testing.assert_allclose((d[:, 0] ** 2).sum(), 3.0, rtol=1e-6)  # |x|^2 = n


def test_text_descriptor_is_zscored():
    sims = np.array([0.1, 0.3, 0.2, 0.9])
    t = P.text_descriptor(sims)
    assert t.shape == (4,)
    np.testing.assert_allclose(t.mean(), 0.0, atol=1e-6)
    np.testing.assert_allclose(t.std(), 1.0, rtol=1e-5)
    assert np.argmax(t) == 3


def test_top_probes():
    q = np.array([0.5, 3.0, -1.0, 2.0, 3.0])
    assert P.top_probes(q, 2).tolist() == [1, 4]      # tie at 3.0 -> both, sorted
    assert P.top_probes(q, 3).tolist() == [1, 3, 4]
    assert P.top_probes(q, 99).tolist() == [0, 1, 2, 3, 4]


# ----------------------------------------------------------------------------- discrepancies
def _small_gallery():
    # 5 probes x 4 gallery logits (already descriptors for the purpose of the test)
    G = np.array([[3.0, 0.0, 3.0, 9.0],
                  [2.0, 0.0, 0.0, 9.0],
                  [0.0, 5.0, 0.0, 0.0],
                  [0.0, 5.0, 0.0, 0.0],
                  [0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    q = np.array([3.0, 2.0, 0.0, 0.0, 1.0], dtype=np.float32)
    return q, G


@pytest.mark.parametrize("use_numba", [False, True])
def test_asymmetric_hand_computed(use_numba):
    if use_numba and not P.HAVE_NUMBA:
        pytest.skip("numba not installed")
    q, G = _small_gallery()
    # top-2 probes of q are 0 and 1 -> distances over probes {0,1}
    # col0: 0; col1: sqrt(9+4)=sqrt13; col2: sqrt(0+4)=2; col3: sqrt(36+49)=sqrt85
    idx, dist = P.asymmetric_search(q, G, k_probes=2, top=4, use_numba=use_numba)
    assert idx.tolist() == [0, 2, 1, 3]
    np.testing.assert_allclose(dist, [0, 2, np.sqrt(13), np.sqrt(85)], rtol=1e-6)
    # full: col0: 1 (probe 4); col2: sqrt(4+1)=sqrt5; col1: sqrt(9+4+25+25+1)=8
    idx, dist = P.full_search(q, G, top=3, use_numba=use_numba)
    assert idx.tolist() == [0, 2, 1]
    np.testing.assert_allclose(dist, [1, np.sqrt(5), 8], rtol=1e-6)
    # candidates restrict the columns (a WHERE filter)
    idx, dist = P.asymmetric_search(q, G, 2, 10, candidates=[3, 1], use_numba=use_numba)
    assert idx.tolist() == [1, 3]
    # asymmetric vs symmetric ranking differ: the asymmetric view ignores probe 2,3
    idx, _ = P.asymmetric_search(q, G, k_probes=1, top=1, use_numba=use_numba)
    assert idx.tolist() == [0]  # tie 0 vs 2 on probe 0 -> lower id


def test_model_search_hand_computed():
    q, G = _small_gallery()
    col_model = np.array([7, 7, 8, 9])  # model 7 owns cols 0,1; 8 owns 2; 9 owns 3
    # single logit, asymmetric k=2: best logit per model: 7->0, 8->2, 9->sqrt85
    mids, sc = P.model_search(q, G, col_model, top=3, k_probes=2)
    assert mids.tolist() == [7, 8, 9]
    np.testing.assert_allclose(sc, [0, 2, np.sqrt(85)], rtol=1e-6)
    # query model with two logits (q and G[:,1]) full distances: mean of best matches
    Q = np.stack([q, G[:, 1]], axis=1)
    mids, sc = P.model_search(Q, G, col_model, top=3)
    d_full = np.sqrt(((Q[:, :, None] - G[:, None, :]) ** 2).sum(0))  # [2, 4]
    exp = {7: d_full[:, [0, 1]].min(1).mean(), 8: d_full[:, 2].mean(), 9: d_full[:, 3].mean()}
    order = sorted(exp, key=exp.get)
    assert mids.tolist() == order
    np.testing.assert_allclose(sc, [exp[m] for m in order], rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("use_numba", [False, True])
def test_exact_matches_numpy_reference(dtype, use_numba):
    if use_numba and not P.HAVE_NUMBA:
        pytest.skip("numba not installed")
    rng = np.random.default_rng(1)
    X = P.zscore_columns(rng.standard_normal((64, 30000))).astype(dtype)
    for trial in range(3):
        q = P.zscore_columns(rng.standard_normal((64, 1)))[:, 0]
        cand = None if trial == 0 else np.sort(rng.choice(30000, 700 * trial, replace=False))
        for k in (5, 20, 64):
            i, d = P.asymmetric_search(q, X, k, 25, candidates=cand, use_numba=use_numba)
            ri, rd = P.reference_search(q, X, k, 25, candidates=cand)
            assert i.tolist() == ri.tolist()
            np.testing.assert_allclose(d, rd, rtol=1e-5, atol=1e-5)
        i, d = P.full_search(q, X, 25, candidates=cand, use_numba=use_numba)
        ri, rd = P.reference_search(q, X, None, 25, candidates=cand)
        assert i.tolist() == ri.tolist()
        np.testing.assert_allclose(d, rd, rtol=1e-5)


def test_large_top_and_small_gallery():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((16, 7)).astype(np.float16)
    q = rng.standard_normal(16).astype(np.float32)
    i, d = P.asymmetric_search(q, X, 4, 100)
    assert len(i) == 7 and np.all(np.diff(d) >= 0)
    i, d = P.asymmetric_search(q, X, 4, 0)
    assert len(i) == 0


# ----------------------------------------------------------------------------- storage
def test_descriptor_matrix_round_trip_append_delete(tmp_path):
    rng = np.random.default_rng(3)
    n = 32
    path = tmp_path / "descriptors"
    dm = DescriptorMatrix.create(path, n, "float16")
    assert dm.n_columns == 0
    blocks = [P.zscore_columns(rng.standard_normal((n, L))) for L in (5, 3, 40, 1, 7)]
    spans = [dm.append_columns(b) for b in blocks]
    assert spans[0] == (0, 5) and spans[1] == (5, 8) and spans[-1] == (49, 56)
    full = np.concatenate(blocks, axis=1).astype(np.float16)
    assert dm.n_columns == 56
    assert dm.n_segments < 5  # tiered merging kept it small

    dm2 = DescriptorMatrix.open(path, "r")
    np.testing.assert_array_equal(dm2.rows([0, 5, 31]), full[[0, 5, 31]])
    np.testing.assert_array_equal(dm2.column_ids(), np.arange(56))
    np.testing.assert_array_equal(dm2.columns([3, 50]), full[:, [3, 50]])
    with pytest.raises(StorageError):
        dm2.append_columns(blocks[0])

    # search through the DescriptorMatrix equals the search over the raw array
    q = P.zscore_columns(rng.standard_normal((n, 1)))[:, 0]
    for store in (dm, dm2):
        i, d = P.asymmetric_search(q, store, 8, 10)
        ri, rd = P.reference_search(q, full, 8, 10)
        assert i.tolist() == ri.tolist()

    # delete (DROP MODEL): ids are stable, deleted columns vanish from searches
    assert dm.delete_columns([5, 6, 7, 999]) == 3
    assert dm.delete_columns([5]) == 0
    assert dm.n_columns == 53
    live = np.setdiff1d(np.arange(56), [5, 6, 7])
    np.testing.assert_array_equal(dm.column_ids(), live)
    np.testing.assert_array_equal(dm.rows([2]), full[[2]][:, live])
    i, _ = P.asymmetric_search(q, dm, 8, 60)
    assert set(i.tolist()) == set(live.tolist())
    i, _ = P.asymmetric_search(q, dm, 8, 60, candidates=[1, 5, 6, 9])
    assert sorted(i.tolist()) == [1, 9]
    ri, _ = P.reference_search(q, full, 8, 10, candidates=live)
    assert P.asymmetric_search(q, dm, 8, 10)[0].tolist() == ri.tolist()

    # reopen after delete, append after delete, compaction
    dm3 = DescriptorMatrix.open(path)
    assert dm3.n_columns == 53
    s, e = dm3.append_columns(blocks[1])
    assert (s, e) == (56, 59)
    dm3.compact()
    assert dm3.n_segments == 1 and dm3.n_columns == 56
    np.testing.assert_array_equal(dm3.column_ids(), np.r_[live, 56, 57, 58])
    np.testing.assert_array_equal(dm3.columns([57]), blocks[1][:, [1]].astype(np.float16))
    # only the manifest and the live segment files remain
    files = sorted(os.listdir(path))
    assert files[0] == "MANIFEST.json" and len(files) == 3, files
    # the old handle still reads its snapshot; refresh() moves it forward
    assert dm2.refresh() and dm2.n_columns == 56


def test_descriptor_matrix_batch_and_errors(tmp_path):
    rng = np.random.default_rng(4)
    dm = DescriptorMatrix.create(tmp_path / "d", 8, "float32")
    with dm.batch():
        for _ in range(10):
            dm.append_columns(rng.standard_normal((8, 2)))
    assert dm.n_segments == 1 and dm.n_columns == 20
    with pytest.raises(StorageError):
        dm.append_columns(np.zeros((7, 1)))
    with pytest.raises(StorageError):
        dm.append_columns(np.full((8, 1), np.nan))
    with pytest.raises(StorageError):
        DescriptorMatrix.create(tmp_path / "d", 8)
    with pytest.raises(StorageError):
        DescriptorMatrix.open(tmp_path / "missing")
    # deletes are tombstones (nothing rewritten); compact() (VACUUM) drops the columns
    dm.delete_columns(range(0, 12))
    assert dm.n_columns == 8 and dm.column_ids().tolist() == list(range(12, 20))
    assert dm.nbytes() == 8 * 20 * 4
    dm.compact()
    assert dm.column_ids().tolist() == list(range(12, 20)) and dm.nbytes() == 8 * 8 * 4


def _resident_pages(arr: np.ndarray) -> np.ndarray:
    """Per-page residency of a memory-mapped array (mincore)."""
    libc = ctypes.CDLL(None, use_errno=True)
    page = mmap.PAGESIZE
    addr = arr.ctypes.data
    start = addr - addr % page
    length = arr.nbytes + (addr - start)
    npages = (length + page - 1) // page
    vec = (ctypes.c_ubyte * npages)()
    if libc.mincore(ctypes.c_void_p(start), ctypes.c_size_t(length), vec) != 0:
        raise OSError(ctypes.get_errno(), "mincore failed")
    return np.frombuffer(vec, dtype=np.uint8) & 1


def test_memmap_reads_only_needed_rows(tmp_path):
    if not hasattr(os, "posix_fadvise"):
        pytest.skip("needs posix_fadvise")
    n, L = 64, 262144  # each probe row is 512 KiB of float16
    dm = DescriptorMatrix.create(tmp_path / "d", n, "float16")
    block = np.zeros((n, L), np.float16)
    block[:, :] = np.arange(n, dtype=np.float16)[:, None]
    dm.append_columns(block)
    del block
    seg_file = [f for f in os.listdir(tmp_path / "d") if f.startswith("seg-") and not f.endswith(".ids.npy")][0]
    fd = os.open(tmp_path / "d" / seg_file, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    dm = DescriptorMatrix.open(tmp_path / "d", "r")
    data = next(dm.iter_segments())[0]
    assert isinstance(data.base, mmap.mmap)  # a view of the file mapping, not a copy
    before = _resident_pages(data)
    if before.mean() > 0.05:
        pytest.skip("page cache cannot be dropped here (tmpfs?)")
    q = np.zeros(n, np.float32)
    q[[3, 40]] = 5.0  # top-2 probes: rows 3 and 40
    i, d = P.asymmetric_search(q, dm, 2, 5)
    assert len(i) == 5
    res = _resident_pages(data)
    row_pages = L * 2 // mmap.PAGESIZE
    per_row = res[: n * row_pages].reshape(n, row_pages).mean(1)
    assert per_row[3] > 0.9 and per_row[40] > 0.9
    others = np.delete(per_row, [3, 40])
    assert others.mean() < 0.1, per_row  # readahead may touch neighbours, not the matrix


# ----------------------------------------------------------------------------- HNSW
def _clustered(rng, n=48, n_concepts=40, per=25, noise=0.6):
    protos = rng.standard_normal((n, n_concepts)) * 2.0
    cols = np.repeat(np.arange(n_concepts), per)
    X = protos[:, cols] + noise * rng.standard_normal((n, cols.shape[0]))
    return P.zscore_columns(X), cols


def test_hnsw_build_query_filter_save_load(tmp_path):
    rng = np.random.default_rng(5)
    X, concept = _clustered(rng)
    N = X.shape[1]
    ids = np.arange(N) + 1000
    idx = HnswIndex(X.shape[0], dim=32, embedding="random").build(X.T, ids, M=8, ef_construction=64)
    assert len(idx) == N
    q = X[:, 7]
    got = idx.query(q, 10)
    assert len(got) == 10 and 1007 in got.tolist()
    # selective filter: 12 admissible items, k=10 -> must return 10, all admissible
    adm = set((rng.choice(N, 12, replace=False) + 1000).tolist())
    got = idx.query(q, 10, filter_ids=adm, ef=10)
    assert len(got) == 10 and set(got.tolist()) <= adm
    # moderately selective filter through the hnswlib filter path (> 256 admissible)
    adm = set((np.arange(0, N, 3) + 1000).tolist())
    got = idx.query(q, 50, filter_ids=adm, ef=50)
    assert len(got) == 50 and set(got.tolist()) <= adm
    # fewer admissible than k: returns all of them, never more
    got = idx.query(q, 10, filter_ids={1001, 1002, 5})
    assert sorted(got.tolist()) == [1001, 1002]
    # delete, then save/load round trip
    idx.mark_deleted([1007])
    assert 1007 not in idx.query(q, 10).tolist()
    idx.save(tmp_path / "hnsw")
    idx.save(tmp_path / "hnsw")  # second generation replaces the first
    assert sorted(os.listdir(tmp_path / "hnsw")) == ["CURRENT.json", "index-00000002.bin", "meta-00000002.npz"]
    idx2 = HnswIndex.load(tmp_path / "hnsw")
    assert len(idx2) == N - 1
    np.testing.assert_array_equal(idx2.query(q, 10, ef=200), idx.query(q, 10, ef=200))
    idx2.add(X[:, :3].T, [5000, 5001, 5002])
    assert 5000 in idx2.query(X[:, 0], 30, ef=200).tolist()


def test_hnsw_rerank_matches_exact_on_clustered_data():
    rng = np.random.default_rng(6)
    X, concept = _clustered(rng, n=64, n_concepts=30, per=30, noise=0.4)
    idx = HnswIndex(64, dim=48).build_from_store(X, M=16, ef_construction=100)
    hits = 0
    for c in range(0, X.shape[1], 37):
        q = X[:, c]
        i, _ = hnsw_asymmetric_search(q, X, idx, k_probes=16, top=10, pool=200)
        ri, _ = P.asymmetric_search(q, X, 16, 10)
        hits += len(set(i.tolist()) & set(ri.tolist()))
    assert hits / (10 * len(range(0, X.shape[1], 37))) >= 0.9


def test_plan_index_rule():
    assert plan_index(10_000, 1.0)[0] == "exact"
    assert plan_index(5_000_000, 1.0)[0] == "hnsw"
    assert plan_index(1_000_000, 0.01)[0] == "exact"    # 10k candidates: exact scan
    assert plan_index(50_000_000, 0.5)[0] == "exact"   # full HNSW would not fit; reduced is opt-in
    assert plan_index(50_000_000, 0.01)[0] == "exact"   # too selective for HNSW
    kind, reason = plan_index(1_000_000, 0.01)
    assert isinstance(reason, str) and reason


# ----------------------------------------------------------------------------- probes
def test_builtin_probes_deterministic():
    a = builtin_probes(n=6, size=32, seed=0)
    assert a.shape == (6, 32, 32, 3) and a.dtype == np.uint8
    b = builtin_probes(n=3, size=32, seed=0)
    np.testing.assert_array_equal(a[:3], b)
    c = builtin_probes(n=3, size=32, seed=1)
    assert not np.array_equal(b, c)
    h = probe_hashes(a)
    assert len(h) == 6 and len(set(h)) == 6 and all(len(x) == 64 for x in h)
    assert probe_hashes(b) == h[:3]


def test_reduced_index_pca_is_fitted_on_every_segment(tmp_path):
    """The PCA of hnsw_reduced samples all segments, not only the first columns probed."""
    from zooql.methods.probelog import ann
    from zooql.methods.probelog.descriptors import DescriptorMatrix
    from zooql.methods.probelog.kernels import _segments

    rng = np.random.default_rng(0)
    n, L = 16, 30000
    a = np.zeros((n, L), np.float32)
    a[0:4] = rng.standard_normal((4, L))        # the first segment varies on probes 0-3 only
    b = np.zeros((n, L), np.float32)
    b[8:12] = rng.standard_normal((4, L))       # the second on probes 8-11 only
    dm = DescriptorMatrix.create(tmp_path / "d", n, "float32")
    dm.append_columns_streaming([a], L)
    dm.append_columns_streaming([b], L)
    idx = ann.HnswIndex(n, dim=8, embedding="pca")
    sample = ann._pca_sample(list(_segments(dm)), dm.n_columns)
    assert sample.shape[1] == n and sample.shape[0] <= 20000
    idx._fit_pca(sample)
    for block in (a, b):
        v = block.T - block.T.mean(axis=0)
        kept = np.linalg.norm(v @ idx.proj.T) ** 2 / np.linalg.norm(v) ** 2
        assert kept > 0.99, kept
