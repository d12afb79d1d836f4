"""The reduced index of FIND LOGITS at 1M+ logits: inverted lists of each logit's top probes.

Why not a projection
--------------------
The asymmetric discrepancy of a query ``q`` compares only the query's own top-``k`` probes
``S``: ``d(q, x) = sum_{p in S} (q_p - x_p)^2``.  Every descriptor is z-scored, so the
gallery logits that come first are those that respond *most* on ``S``, i.e. those whose own
strongest probes overlap ``S``.  A 64-d PCA of the whole descriptor (the first
``hnsw_reduced``, an hnswlib graph over it) keeps little of that: at 1M benchmark logits
(1,000 probes, a flat spectrum) HNSW over it, queried as FIND queries, had the exact top-10
in a pool of 600 0.745 of the time, 0.845 in 3,000 -- as often as brute force in the PCA
space: the projection is the limit (benchmarks/RESULTS.md, issue 14).

The index
---------
For every logit we keep its ``top`` strongest probes (default 20, uint16: 40 bytes a
logit) and, built from them in one radix sort, one posting list per probe (int32
positions: 80 bytes a logit).  A query scores each logit by how many of the query's top-k
probes are among the logit's top probes (ties broken by the query's values on the shared
probes) and returns the ``k`` best; FIND re-ranks that pool exactly on the full
descriptors, so only the pool's recall is approximate.  A query reads ``k`` posting
lists, about ``k * top / n_probes`` of the gallery's entries: 0.4 M entries at 1M logits
and 1,000 probes, against the exact scan's ``k`` full rows.

Deleted labels (DROP) are masked until VACUUM rebuilds the index; ``filter_ids``
restricts the answer to admissible labels and it is never shorter than
``min(k, admissible live labels)`` (logits sharing no probe score 0 and still fill it).

On disk: ``postings-<gen>.npz`` (top probes, labels, deleted labels, parameters) and
``CURRENT.json`` (format ``zooql-postings``, generation, checksum), replaced atomically;
the posting lists are rebuilt on load (a radix sort: seconds at 10M logits).
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile

import numpy as np

from zooql.errors import StorageError
from zooql.methods.probelog.integrity import INDEX_FIX, atomic_write_json, read_index_pointer

__all__ = ["PostingsIndex", "FORMAT"]

FORMAT = "zooql-postings"


def _top_rows(block: np.ndarray, top: int) -> np.ndarray:
    """``block [n, b]`` (probe-major) -> the ``top`` strongest probes of each column ``[b, top]``."""
    b = np.asarray(block, dtype=np.float32)
    return np.argpartition(-b, top - 1, axis=0)[:top].T.astype(np.uint16)


class PostingsIndex:
    """Per-probe posting lists of every logit's ``top`` strongest probes (see module doc)."""

    embedding = "postings"

    def __init__(self, n_probes: int, *, top: int = 20, seed: int = 0):
        self.n_probes = int(n_probes)
        if self.n_probes > 65535:
            raise StorageError("the postings index holds at most 65,535 probes")
        self.top = int(max(1, min(top, self.n_probes)))
        self.seed = int(seed)
        self.dim, self.M = self.top, 0     # what VACUUM's rebuild copies (like=)
        self._tops = np.empty((0, self.top), np.uint16)
        self._labels = np.empty(0, np.int64)      # label of each position
        self._dead = np.empty(0, bool)            # position deleted
        self._csr = None

    # ------------------------------------------------------------------ building
    def build_from_store(self, store, chunk: int = 8192, **_ignored) -> "PostingsIndex":
        """Build from a probe-major store (ndarray ``[n, N]`` or DescriptorMatrix)."""
        from zooql.methods.probelog.kernels import _segments

        tops, labels = [], []
        for X, ids, live in _segments(store):
            L = int(X.shape[1])
            if int(X.shape[0]) != self.n_probes:
                raise ValueError(f"store has {X.shape[0]} probes, index {self.n_probes}")
            cid = np.arange(L, dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
            keep = np.ones(L, bool) if live is None else np.zeros(L, bool)
            if live is not None:
                keep[np.asarray(live)] = True   # a bool mask or positions
            for s in range(0, L, chunk):
                e = min(L, s + chunk)
                k = keep[s:e]
                if k.any():
                    tops.append(_top_rows(X[:, s:e], self.top)[k])
                    labels.append(cid[s:e][k])
        self._tops = np.concatenate(tops) if tops else np.empty((0, self.top), np.uint16)
        self._labels = np.concatenate(labels) if labels else np.empty(0, np.int64)
        self._dead = np.zeros(self._labels.shape[0], bool)
        self._csr = None
        return self

    def build(self, vectors: np.ndarray, ids, **_ignored) -> "PostingsIndex":
        """Build from descriptors ``[N, n]`` (one row per logit) with labels ``ids``."""
        self._tops = np.empty((0, self.top), np.uint16)
        self._labels = np.empty(0, np.int64)
        self._dead = np.empty(0, bool)
        self.add(vectors, ids)
        return self

    def add(self, vectors: np.ndarray, ids, **_ignored) -> None:
        """Add descriptors ``[N, n]`` with labels ``ids`` (re-adding a label replaces it)."""
        v = np.asarray(vectors, dtype=np.float32)
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if v.ndim != 2 or v.shape[0] != ids.shape[0] or v.shape[1] != self.n_probes:
            raise ValueError(f"vectors must be [N, {self.n_probes}] with one id per row")
        old = np.isin(self._labels, ids)
        self._dead = self._dead | old
        self._tops = np.concatenate([self._tops, _top_rows(v.T, self.top)])
        self._labels = np.concatenate([self._labels, ids])
        self._dead = np.concatenate([self._dead, np.zeros(ids.shape[0], bool)])
        self._csr = None

    def mark_deleted(self, ids) -> int:
        """Hide labels from future queries; returns how many were live."""
        hit = np.isin(self._labels, np.asarray(ids, dtype=np.int64).ravel()) & ~self._dead
        self._dead = self._dead | hit
        return int(np.unique(self._labels[hit]).size)

    def __len__(self) -> int:
        return int(np.unique(self._labels[~self._dead]).size)

    @property
    def ids(self) -> np.ndarray:
        """Sorted labels ever added (deleted ones included)."""
        return np.unique(self._labels)

    @property
    def _deleted(self) -> np.ndarray:
        """Sorted labels deleted and not re-added (VACUUM rebuilds when there are any)."""
        return np.setdiff1d(self._labels[self._dead], self._labels[~self._dead])

    def _lists(self):
        """(positions int32 grouped by probe, offsets [n+1]) built by one radix sort."""
        if self._csr is None:
            flat = self._tops.ravel()
            order = np.argsort(flat, kind="stable")   # radix sort for 16-bit keys
            offs = np.concatenate([[0], np.cumsum(np.bincount(flat, minlength=self.n_probes))])
            self._csr = ((order // self.top).astype(np.int32), offs.astype(np.int64))
        return self._csr

    # ------------------------------------------------------------------ querying
    def _counts(self, vec: np.ndarray, k_probes: int | None):
        """(shared top probes per position int64 [N], tie-break weight per probe [n], the
        query's posting entries: positions, one per shared probe)."""
        from zooql.methods.probelog.kernels import DEFAULT_K_PROBES, top_probes

        q = np.asarray(vec, dtype=np.float32).ravel()
        if q.shape[0] != self.n_probes:
            raise ValueError(f"query must have {self.n_probes} probe values, got {q.shape[0]}")
        p = top_probes(q, int(k_probes or DEFAULT_K_PROBES))
        w = q[p].astype(np.float64) - float(q[p].min())
        wl = np.zeros(self.n_probes, np.float64)
        wl[p] = w / (float(w.sum()) + 1.0)  # any subset sums to < 1: counts first, then strength
        post, offs = self._lists()
        lists = [post[offs[i]:offs[i + 1]] for i in p.tolist()]
        pos = np.concatenate(lists) if lists else np.empty(0, np.int32)
        return np.bincount(pos, minlength=self._labels.shape[0]), wl, pos

    def scores(self, vec: np.ndarray, k_probes: int | None = None) -> np.ndarray:
        """Per position: shared top probes with the query's top-``k_probes`` (plus < 1 of tie-break)."""
        cnt, wl, _ = self._counts(vec, k_probes)
        return cnt + wl[self._tops].sum(axis=1)

    def query(self, vec: np.ndarray, k: int, filter_ids=None, ef: int | None = None, *,
              k_probes: int | None = None, max_ef: int | None = None) -> np.ndarray:
        """Labels of the ``k`` best-scoring live logits (``ef``/``max_ef`` are HNSW's; unused)."""
        if self._labels.shape[0] == 0 or k <= 0:
            return np.empty(0, np.int64)
        cnt, wl, ent = self._counts(vec, k_probes)
        if filter_ids is not None:
            adm = filter_ids if isinstance(filter_ids, np.ndarray) else np.fromiter(filter_ids, np.int64)
            pos = np.flatnonzero(np.isin(self._labels, np.asarray(adm, np.int64).ravel()) & ~self._dead)
        else:
            pos = self._best_positions(cnt, ent, int(k))
        want = int(min(k, pos.shape[0]))
        if want == 0:
            return np.empty(0, np.int64)
        s = cnt[pos] + wl[self._tops[pos]].sum(axis=1)
        if want < pos.shape[0]:  # the best ``want`` and every tie of the last: ties go by label
            keep = s >= -np.partition(-s, want - 1)[want - 1]
            pos, s = pos[keep], s[keep]
        lab = self._labels[pos]
        return lab[np.lexsort((lab, -s))][:want]

    def _best_positions(self, cnt: np.ndarray, ent: np.ndarray, k: int) -> np.ndarray:
        """The live positions whose count is at least the highest level ``c`` that holds ``k``
        of them (all live positions when the touched ones are too few), from the query's
        posting entries only: a position of count ``c`` appears ``c`` times in them."""
        ce = cnt.astype(np.uint8 if self.top < 256 else np.uint16)[ent]   # a small array: few cache misses
        hist = np.bincount(ce)
        levels = np.arange(hist.shape[0])
        hist[1:] //= levels[1:]
        above = np.cumsum(hist[::-1])[::-1]          # above[c]: positions with count >= c (c >= 1)
        ok = np.flatnonzero(above[1:] >= k)
        c = int(ok[-1]) + 1 if ok.size else 1
        while c >= 1:
            pos = np.unique(ent[ce >= c])
            pos = pos[~self._dead[pos]]
            if pos.shape[0] >= k:
                return pos
            c -= 1
        return np.flatnonzero(~self._dead)

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Atomically save to directory ``path`` (see module doc)."""
        from zooql.methods.probelog import integrity as I

        path = os.fspath(path)
        os.makedirs(path, exist_ok=True)
        cur = _read_current(path)
        gen = (int(cur.get("generation") or 0) + 1) if cur else 1
        name = f"postings-{gen:08d}.npz"
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=path)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, tops=self._tops, labels=self._labels, dead=self._dead,
                         params=np.array(json.dumps({"n_probes": self.n_probes, "top": self.top,
                                                     "seed": self.seed})))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, os.path.join(path, name))
            atomic_write_json(os.path.join(path, "CURRENT.json"),
                              {"format": FORMAT, "version": 1, "generation": gen, "meta": name,
                               "files": {"meta": I.stamp(os.path.join(path, name))}})
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        for fn in os.listdir(path):
            if fn not in (name, "CURRENT.json") and fn.startswith(("postings-", "index-", "meta-", ".tmp-")):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(path, fn))

    @staticmethod
    def verify_files(path: str, cur: dict | None = None) -> None:
        """Size and checksum of the index file against CURRENT.json."""
        from zooql.methods.probelog import integrity as I

        cur = cur or _read_current(path)
        if cur is not None:
            I.verify(os.path.join(path, cur["meta"]), (cur.get("files") or {}).get("meta"),
                     "postings index file", INDEX_FIX.format(path=path))

    @classmethod
    def load(cls, path) -> "PostingsIndex":
        path = os.fspath(path)
        cur = _read_current(path)
        if cur is None:
            raise StorageError(f"no postings index at {path}")
        cls.verify_files(path, cur)
        try:
            with np.load(os.path.join(path, cur["meta"]), allow_pickle=False) as z:
                p = json.loads(str(z["params"]))
                self = cls(p["n_probes"], top=p["top"], seed=p.get("seed", 0))
                self._tops = z["tops"].astype(np.uint16)
                self._labels = z["labels"].astype(np.int64)
                self._dead = z["dead"].astype(bool)
        except (ValueError, EOFError, KeyError, OSError) as exc:
            raise StorageError(f"postings index {path} is unreadable ({' '.join(str(exc).split())[:200]}); "
                               f"{INDEX_FIX.format(path=path)}") from None
        return self


def _read_current(path: str):
    return read_index_pointer(path, FORMAT, "postings index")
