"""Approximate candidate generation for ProbeLog search: an hnswlib HNSW index.

Embedding
---------
HNSW needs one fixed metric, but the asymmetric discrepancy depends on the query's
own top-k probes.  We therefore use HNSW only to *generate candidates* and re-rank
them exactly with :func:`zooql.methods.probelog.kernels.asymmetric_search`.

* Gallery vectors: every logit descriptor ``x`` (length ``n``, z-scored so
  ``|x|^2 = n``) is projected to ``dim`` dimensions, ``e(x) = P x``, and indexed in
  cosine space.  ``P`` is a fixed seeded Gaussian random projection (``embedding=
  'random'``, the default: needs no training and new columns can be added at any
  time), a PCA basis fitted at build time (``'pca'``), or the identity (``'none'``).
* Query vector: by default the full query descriptor, projected the same way (the
  re-rank then applies the asymmetric discrepancy).  Optionally (``k_probes=`` in
  :meth:`HnswIndex.query`, ``mask_query=True`` in :func:`hnsw_asymmetric_search`) the
  descriptor *masked to its top-k probes* (other probes set to 0): because every
  gallery descriptor has the same norm, ``argmin_x |q_S - x|^2 = argmax_x <q_S, x>``,
  the gallery logits that respond most strongly on the query's top probes.  On the
  synthetic 1M-logit benchmark the full descriptor gave better recall (0.97 vs 0.95
  at pool=ef=100), so it is the default.
* Default projection: random, 128-d (64-d lost recall: 0.92 vs 0.99-1.0 at 100k).

Filters
-------
``query(..., filter_ids=...)`` passes hnswlib's filter callable.  When the filter is
selective HNSW may find fewer than ``k`` admissible items; we then raise ``ef``
(x4 per try, up to ``max_ef``) and finally fall back to an exact scan of the admissible
items' stored vectors, so a query never silently returns fewer than
``min(k, admissible items)`` results.

On disk
-------
``save(path)`` writes a directory: ``index-<gen>.bin`` (hnswlib), ``meta-<gen>.npz``
(projection, parameters, ids, deleted ids) and ``CURRENT.json`` naming the generation;
the data files are written under temporary names and renamed, then ``CURRENT.json`` is
replaced atomically, then older generations are removed.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile

import numpy as np

from zooql.errors import StorageError
from zooql.methods.probelog.integrity import INDEX_FIX, read_index_pointer

try:
    import hnswlib
except Exception:  # pragma: no cover
    hnswlib = None

__all__ = ["HnswIndex", "plan_index", "hnsw_asymmetric_search", "EXACT_MAX_CANDIDATES",
           "HNSW_MIN_SELECTIVITY", "HNSW_MIN_GALLERY"]

# Planner thresholds (tuned with benchmarks/probelog_speed.py, see RESULTS.md).
#: Below this many columns an exact scan is as fast as an HNSW query.
HNSW_MIN_GALLERY = 200_000
#: An exact scan of at most this many candidate columns (a WHERE filter) beats HNSW.
EXACT_MAX_CANDIDATES = 50_000
#: Below this fraction of admissible columns, filtered HNSW degrades; use exact.
HNSW_MIN_SELECTIVITY = 0.05
#: Above this many columns the 128-d HNSW index (about 660 bytes a logit in memory) would
#: not fit next to other work; ``index = 'hnsw_reduced'`` (zooql.methods.probelog.postings:
#: posting lists of each logit's top probes, about 130 bytes a logit) is the opt-in index there.
HNSW_FULL_MAX = 5_000_000


def plan_index(n_gallery: int, selectivity: float = 1.0) -> tuple[str, str]:
    """The planner's rule: ``('exact' | 'hnsw' | 'hnsw_reduced', reason)``.

    ``n_gallery``: live logit columns; ``selectivity``: fraction admitted by the WHERE
    filter (1.0 = no filter).
    """
    n = int(n_gallery)
    s = float(min(max(selectivity, 0.0), 1.0))
    cand = n * s
    if n < HNSW_MIN_GALLERY:
        return "exact", f"gallery of {n:,} logits is small enough for an exact scan"
    if s < 1.0 and cand <= EXACT_MAX_CANDIDATES:
        return "exact", (f"filter leaves ~{int(cand):,} logits; an exact scan of those "
                         f"is faster than HNSW")
    if s < HNSW_MIN_SELECTIVITY:
        return "exact", (f"filter keeps {s:.1%} of logits; filtered HNSW degrades below "
                         f"{HNSW_MIN_SELECTIVITY:.0%}, exact scan of the candidates")
    if n > HNSW_FULL_MAX:
        # a full HNSW index would not fit memory; auto keeps the exact answer (the reduced
        # index is opt-in: OPTIONS (index = 'hnsw_reduced'), see docs/find.md)
        return "exact", (f"{n:,} logits: a full HNSW index would need ~{n * 660 / 2**30:.1f} GiB; "
                         "exact scan (index = 'hnsw_reduced' trades recall for speed)")
    return "hnsw", (f"{n:,} logits" + (f", filter keeps {s:.0%}" if s < 1.0 else "")
                    + ": HNSW candidates re-ranked exactly")


def _atomic_replace_from(tmp: str, final: str) -> None:
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


class HnswIndex:
    """hnswlib HNSW over projected logit descriptors (candidate generation)."""

    def __init__(self, n_probes: int, *, dim: int = 128, embedding: str = "random",
                 space: str = "cosine", seed: int = 0):
        if hnswlib is None:  # pragma: no cover
            raise StorageError("hnswlib is not installed; HNSW indexes are unavailable")
        if embedding not in ("random", "pca", "none"):
            raise ValueError("embedding must be 'random', 'pca' or 'none'")
        self.n_probes = int(n_probes)
        self.embedding = embedding
        self.dim = self.n_probes if embedding == "none" else int(min(dim, self.n_probes))
        self.space = space
        self.seed = int(seed)
        self.M = 16
        self.ef_construction = 200
        self.mean = np.zeros(self.n_probes, np.float32)
        if embedding == "random":
            rng = np.random.default_rng(seed)
            self.proj = (rng.standard_normal((self.dim, self.n_probes)) / np.sqrt(self.dim)).astype(np.float32)
        else:
            self.proj = None if embedding == "none" else np.zeros((self.dim, self.n_probes), np.float32)
        self._index = None
        self._ids = np.empty(0, np.int64)        # sorted labels ever added
        self._deleted = np.empty(0, np.int64)    # sorted labels marked deleted

    # ------------------------------------------------------------------ embedding
    def embed(self, vectors: np.ndarray) -> np.ndarray:
        """Descriptors ``[N, n]`` (or ``[n]``) -> embedded ``[N, dim]`` float32."""
        v = np.asarray(vectors, dtype=np.float32)
        one = v.ndim == 1
        v = v[None, :] if one else v
        if v.shape[1] != self.n_probes:
            raise ValueError(f"vectors must have {self.n_probes} probe values, got {v.shape[1]}")
        if self.proj is not None:
            v = (v - self.mean) @ self.proj.T if self.embedding == "pca" else v @ self.proj.T
        v = np.ascontiguousarray(v, dtype=np.float32)
        return v[0] if one else v

    @staticmethod
    def mask_query(query: np.ndarray, k_probes: int | None) -> np.ndarray:
        """Zero all but the query's top-k probes (the asymmetric view of the query)."""
        q = np.asarray(query, dtype=np.float32).ravel()
        if k_probes is None or k_probes >= q.shape[0]:
            return q
        from zooql.methods.probelog.kernels import top_probes
        out = np.zeros_like(q)
        p = top_probes(q, k_probes)
        out[p] = q[p]
        return out

    # ------------------------------------------------------------------ building
    def build(self, vectors: np.ndarray, ids, M: int = 16, ef_construction: int = 200,
              num_threads: int = -1, max_elements: int | None = None) -> "HnswIndex":
        """Build from descriptors ``[N, n]`` (one row per logit) with labels ``ids``."""
        v = np.asarray(vectors, dtype=np.float32)
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if v.ndim != 2 or v.shape[0] != ids.shape[0]:
            raise ValueError("vectors must be [N, n_probes] with one id per row")
        self.M, self.ef_construction = int(M), int(ef_construction)
        if self.embedding == "pca":
            self._fit_pca(v)
        self._index = hnswlib.Index(space=self.space, dim=self.dim)
        cap = max(int(max_elements or 0), ids.shape[0], 16)
        self._index.init_index(max_elements=cap, M=self.M, ef_construction=self.ef_construction,
                               random_seed=self.seed)
        self._ids = np.empty(0, np.int64)
        self._deleted = np.empty(0, np.int64)
        self.add(v, ids, num_threads=num_threads)
        return self

    def _fit_pca(self, v: np.ndarray, sample: int = 20000) -> None:
        rng = np.random.default_rng(self.seed)
        s = v if v.shape[0] <= sample else v[rng.choice(v.shape[0], sample, replace=False)]
        self.mean = s.mean(axis=0).astype(np.float32)
        _, _, vt = np.linalg.svd(s - self.mean, full_matrices=False)
        self.proj = np.ascontiguousarray(vt[: self.dim], dtype=np.float32)

    def add(self, vectors: np.ndarray, ids, num_threads: int = -1, chunk: int = 65536) -> None:
        """Add descriptors ``[N, n]`` with labels ``ids`` (grows the index as needed)."""
        if self._index is None:
            raise StorageError("HNSW index is not built; call build() first")
        v = np.asarray(vectors, dtype=np.float32)
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if v.shape[0] != ids.shape[0]:
            raise ValueError("one id per vector")
        need = self._index.get_current_count() + ids.shape[0]
        if need > self._index.get_max_elements():
            self._index.resize_index(max(need, int(self._index.get_max_elements() * 1.5)))
        for s in range(0, ids.shape[0], chunk):
            e = min(ids.shape[0], s + chunk)
            self._index.add_items(self.embed(v[s:e]), ids[s:e].astype(np.uint64), num_threads=num_threads)
        self._ids = np.union1d(self._ids, ids)
        if self._deleted.size:
            self._deleted = np.setdiff1d(self._deleted, ids)

    def build_from_store(self, store, M: int = 16, ef_construction: int = 200,
                         num_threads: int = -1, chunk: int = 65536) -> "HnswIndex":
        """Build from a probe-major store (ndarray ``[n, N]`` or DescriptorMatrix)."""
        from zooql.methods.probelog.kernels import _segments
        self.M, self.ef_construction = int(M), int(ef_construction)
        segs = list(_segments(store))
        total = sum(int(X.shape[1]) for X, _, _ in segs)
        if self.embedding == "pca":
            self._fit_pca(_pca_sample(segs, total))
        self._index = hnswlib.Index(space=self.space, dim=self.dim)
        self._index.init_index(max_elements=max(total, 16), M=self.M,
                               ef_construction=self.ef_construction, random_seed=self.seed)
        self._ids = np.empty(0, np.int64)
        self._deleted = np.empty(0, np.int64)
        for X, ids, live in segs:
            L = X.shape[1]
            cid = np.arange(L, dtype=np.int64) if ids is None else ids
            for s in range(0, L, chunk):
                e = min(L, s + chunk)
                block = np.asarray(X[:, s:e], dtype=np.float32).T
                bid = cid[s:e]
                if live is not None:
                    block, bid = block[live[s:e]], bid[live[s:e]]
                if bid.size:
                    self.add(block, bid, num_threads=num_threads)
        return self

    def mark_deleted(self, ids) -> int:
        """Hide labels from future queries; returns how many were live."""
        ids = np.unique(np.asarray(ids, dtype=np.int64).ravel())
        ids = ids[np.isin(ids, self._ids) & ~np.isin(ids, self._deleted)]
        for i in ids.tolist():
            self._index.mark_deleted(int(i))
        self._deleted = np.union1d(self._deleted, ids)
        return int(ids.size)

    def __len__(self) -> int:
        return int(self._ids.shape[0] - self._deleted.shape[0])

    @property
    def ids(self) -> np.ndarray:
        """Sorted labels ever added (deleted ones included; see :meth:`mark_deleted`)."""
        return self._ids

    # ------------------------------------------------------------------ querying
    def query(self, vec: np.ndarray, k: int, filter_ids=None, ef: int | None = None, *,
              k_probes: int | None = None, max_ef: int = 4096) -> np.ndarray:
        """Labels of the ``k`` nearest items to descriptor ``vec`` (embedding order).

        ``k_probes``: mask the query to its top-k probes first (see module doc).
        ``filter_ids``: admissible labels (set or array); never returns fewer than
        ``min(k, admissible)`` results (raises ef, then scans exactly).
        """
        if self._index is None:
            raise StorageError("HNSW index is not built")
        qv = self.embed(self.mask_query(vec, k_probes))
        live_n = len(self)
        if filter_ids is not None:
            adm = np.fromiter(filter_ids, dtype=np.int64) if not isinstance(filter_ids, np.ndarray) \
                else filter_ids.astype(np.int64).ravel()
            adm = np.unique(adm)
            adm = adm[np.isin(adm, self._ids, assume_unique=True)]
            if self._deleted.size:
                adm = adm[~np.isin(adm, self._deleted, assume_unique=True)]
            want = int(min(k, adm.shape[0]))
            if want == 0:
                return np.empty(0, np.int64)
            if adm.shape[0] <= max(4 * k, 256):
                return self._exact(qv, adm, want)
            admset = set(adm.tolist())
            flt = admset.__contains__
        else:
            want = int(min(k, live_n))
            if want == 0:
                return np.empty(0, np.int64)
            flt = None
        cur_ef = max(int(ef or 0), want, 16)
        while True:
            self._index.set_ef(cur_ef)
            try:
                labels, _ = self._index.knn_query(qv, k=want, num_threads=1, filter=flt)
                out = labels[0].astype(np.int64)
                if out.shape[0] >= want:
                    return out
            except RuntimeError:
                pass  # hnswlib found fewer than k admissible items at this ef
            if cur_ef >= max_ef:
                break
            cur_ef = min(max_ef, cur_ef * 4)
        cand = adm if filter_ids is not None else np.setdiff1d(self._ids, self._deleted)
        return self._exact(qv, cand, want)

    def _exact(self, qv: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
        """Exact nearest labels in embedding space among ``labels``."""
        out_l, out_d = [], []
        for s in range(0, labels.shape[0], 65536):
            lab = labels[s:s + 65536]
            vec = np.asarray(self._index.get_items(lab.astype(np.uint64).tolist()), dtype=np.float32)
            if self.space == "cosine":
                nq = qv / max(float(np.linalg.norm(qv)), 1e-30)
                d = 1.0 - vec @ nq  # stored vectors are normalised by hnswlib
            elif self.space == "ip":
                d = 1.0 - vec @ qv
            else:
                d = ((vec - qv) ** 2).sum(1)
            out_l.append(lab)
            out_d.append(d)
        lab = np.concatenate(out_l)
        d = np.concatenate(out_d)
        order = np.lexsort((lab, d))[:k]
        return lab[order]

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Atomically save to directory ``path`` (see module doc)."""
        if self._index is None:
            raise StorageError("HNSW index is not built")
        path = os.fspath(path)
        os.makedirs(path, exist_ok=True)
        cur = self._read_current(path)
        gen = (cur["generation"] + 1) if cur else 1
        idx_name, meta_name = f"index-{gen:08d}.bin", f"meta-{gen:08d}.npz"
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".bin", dir=path)
        os.close(fd)
        try:
            self._index.save_index(tmp)
            _atomic_replace_from(tmp, os.path.join(path, idx_name))
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=path)
            with os.fdopen(fd, "wb") as f:
                np.savez(f, proj=self.proj if self.proj is not None else np.zeros((0, 0), np.float32),
                         mean=self.mean, ids=self._ids, deleted=self._deleted,
                         params=np.array(json.dumps({
                             "n_probes": self.n_probes, "dim": self.dim, "embedding": self.embedding,
                             "space": self.space, "seed": self.seed, "M": self.M,
                             "ef_construction": self.ef_construction})))
            _atomic_replace_from(tmp, os.path.join(path, meta_name))
            from zooql.methods.probelog import integrity as I

            files = {"index": I.stamp(os.path.join(path, idx_name)), "meta": I.stamp(os.path.join(path, meta_name))}
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path)
            with os.fdopen(fd, "w") as f:
                json.dump({"format": "zooql-hnsw", "version": 1, "generation": gen,
                           "index": idx_name, "meta": meta_name, "files": files}, f)
            _atomic_replace_from(tmp, os.path.join(path, "CURRENT.json"))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        for fn in os.listdir(path):
            if fn not in (idx_name, meta_name, "CURRENT.json") and (
                    fn.startswith(("index-", "meta-", ".tmp-"))):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(path, fn))

    @staticmethod
    def _read_current(path: str):
        return read_index_pointer(path, "zooql-hnsw", "HNSW index")

    @classmethod
    def load(cls, path) -> "HnswIndex":
        path = os.fspath(path)
        cur = cls._read_current(path)
        if cur is None:
            raise StorageError(f"no HNSW index at {path}")
        cls.verify_files(path, cur)
        try:
            return cls._load(path, cur)
        except (ValueError, EOFError, KeyError, OSError, RuntimeError) as exc:
            raise StorageError(f"HNSW index {path} is unreadable ({' '.join(str(exc).split())[:200]}); "
                               f"{INDEX_FIX.format(path=path)}") from None

    @staticmethod
    def verify_files(path: str, cur: dict | None = None) -> None:
        """Sizes and checksums of the index files against CURRENT.json (loading reads them whole)."""
        from zooql.methods.probelog import integrity as I

        cur = cur or HnswIndex._read_current(path)
        if cur is None:
            return
        for key, what in (("index", "HNSW index file"), ("meta", "HNSW index metadata")):
            I.verify(os.path.join(path, cur[key]), (cur.get("files") or {}).get(key), what,
                     INDEX_FIX.format(path=path))

    @classmethod
    def _load(cls, path: str, cur: dict) -> "HnswIndex":
        with np.load(os.path.join(path, cur["meta"]), allow_pickle=False) as z:
            params = json.loads(str(z["params"]))
            self = cls(params["n_probes"], dim=params["dim"], embedding=params["embedding"],
                       space=params["space"], seed=params["seed"])
            if params["embedding"] != "none":
                self.proj = z["proj"].astype(np.float32)
            self.mean = z["mean"].astype(np.float32)
            self._ids = z["ids"].astype(np.int64)
            self._deleted = z["deleted"].astype(np.int64)
        self.M, self.ef_construction = params["M"], params["ef_construction"]
        self._index = hnswlib.Index(space=self.space, dim=self.dim)
        self._index.load_index(os.path.join(path, cur["index"]),
                               max_elements=max(int(self._ids.shape[0]), 16))
        return self


def _pca_sample(segs, total: int, sample: int = 20000, runs: int = 64) -> np.ndarray:
    """Up to ``sample`` descriptors ``[m, n]`` for the PCA fit, in ``runs`` short runs of
    adjacent columns spread evenly over all segments (a few pages per probe row each).

    Fitting on the first columns only (the models probed first) missed the directions of
    later models: at 1M benchmark logits, exact top-10 found in the 600 nearest in PCA-64
    space 0.69 of the time fitted on the first 20,000 columns, 0.78 on an even sample
    (0.83 / 0.95 in the 3,000 nearest; benchmarks/RESULTS.md, issue 14)."""
    if total <= sample:
        return np.concatenate([np.asarray(X, dtype=np.float32).T for X, _, _ in segs])
    per = max(1, sample // runs)
    starts = np.linspace(0, total - per, runs).astype(np.int64)
    offs = np.cumsum([0] + [int(X.shape[1]) for X, _, _ in segs])
    out = []
    for g in starts.tolist():
        s = int(np.searchsorted(offs, g, side="right") - 1)
        X = segs[s][0]
        c0 = g - int(offs[s])
        out.append(np.asarray(X[:, c0:min(int(X.shape[1]), c0 + per)], dtype=np.float32).T)
    return np.concatenate(out)


def hnsw_asymmetric_search(query: np.ndarray, store, index: HnswIndex, k_probes: int, top: int,
                           *, pool: int | None = None, ef: int | None = None, filter_ids=None,
                           mask_query: bool = False):
    """HNSW candidates (``pool`` of them, default ``max(10*top, 100)``) re-ranked exactly
    with the asymmetric discrepancy.  Returns ``(column_ids, distances)`` like
    :func:`zooql.methods.probelog.kernels.asymmetric_search`.

    ``mask_query=False`` (default) searches HNSW with the full query descriptor, which
    gave the better recall in benchmarks/probelog_speed.py (0.97 vs 0.95 at pool=ef=100 on
    1M logits); ``True`` masks it to its top-``k_probes`` probes first.  A filter
    admitting at most ``EXACT_MAX_CANDIDATES`` ids skips HNSW and scans them exactly.
    """
    from zooql.methods.probelog.kernels import asymmetric_search
    if filter_ids is not None:
        adm = filter_ids if isinstance(filter_ids, np.ndarray) else np.fromiter(filter_ids, np.int64)
        if adm.shape[0] <= EXACT_MAX_CANDIDATES:  # a selective filter: exact is faster and exact
            return asymmetric_search(query, store, k_probes, top, candidates=adm)
    pool = int(pool or max(10 * top, 100))
    cand = index.query(query, pool, filter_ids=filter_ids, ef=ef or pool,
                       k_probes=k_probes if mask_query else None)
    return asymmetric_search(query, store, k_probes, top, candidates=cand)
