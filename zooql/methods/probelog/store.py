"""ProbeLog's storage: catalog look-ups of probe sets and runs (no torch: the binder uses
them), the files of a probe set (descriptor matrix, probe images, HNSW index) and atomic
.npy writes. Everything else in the method builds on this module."""
from __future__ import annotations

import io
import os
import threading
from typing import Any

import numpy as np

from zooql.errors import ExecutionError, StorageError


# ==== catalog helpers (also used by the binder: no torch here) ==============================

def tables_exist(con) -> bool:
    row = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'probe_runs'").fetchone()
    return bool(row and row[0])


_PS_COLS = ("id", "name", "source", "n_probes", "shape", "dtype", "dir", "content_hash", "probe_limit",
            "seed", "captions", "descriptor_dtype", "created_at")


def probe_set_row(con, name: str) -> dict | None:
    if not tables_exist(con):
        return None
    row = con.execute(f"SELECT {', '.join(_PS_COLS)} FROM probe_sets WHERE name = ?", [name]).fetchone()
    if row is None:
        return None
    out = dict(zip(_PS_COLS, row))
    out["has_captions"] = bool(con.execute(
        "SELECT count(*) FROM probes WHERE probe_set_id = ? AND caption IS NOT NULL", [out["id"]]).fetchone()[0])
    return out


def probe_set_names(con) -> list[str]:
    if not tables_exist(con):
        return []
    return [r[0] for r in con.execute("SELECT name FROM probe_sets ORDER BY name").fetchall()]


def probed_model_ids(con, ps_id: int | None) -> set[int]:
    if ps_id is None or not tables_exist(con):
        return set()
    return {r[0] for r in con.execute("SELECT model_id FROM probe_runs WHERE probe_set_id = ?", [ps_id]).fetchall()}


def runs_of(con, ps_id: int, model_ids=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(model_ids, first_cols, n_cols) of a probe set's runs, sorted by first column."""
    rows = con.execute("SELECT model_id, first_col, n_cols FROM probe_runs WHERE probe_set_id = ? "
                       "ORDER BY first_col", [ps_id]).fetchall()
    if model_ids is not None:
        keep = set(int(m) for m in model_ids)
        rows = [r for r in rows if r[0] in keep]
    if not rows:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64)
    a = np.asarray(rows, dtype=np.int64)
    return a[:, 0], a[:, 1], a[:, 2]


def run_columns(first: np.ndarray, ncols: np.ndarray) -> np.ndarray:
    """All column ids of the given runs, ascending when runs are sorted by first column."""
    if first.size == 0:
        return np.empty(0, np.int64)
    return np.concatenate([np.arange(f, f + n, dtype=np.int64) for f, n in zip(first, ncols)])


def delete_orphan_columns(con, ps: dict, dm) -> int:
    """Delete matrix columns no catalog row names (left by an interrupted PROBE or REFRESH)."""
    _, first, ncols = runs_of(con, ps["id"])
    if dm.n_columns == int(ncols.sum()):
        return 0
    orphans = np.setdiff1d(dm.column_ids(), run_columns(first, ncols), assume_unique=True)
    return dm.delete_columns(orphans) if orphans.size else 0


# ==== raw logits ==============================================================================
# A run's raw logits are either a file of its own (``raw/m<id>.npy``: sampled runs, and hubs
# written before commit groups) or columns ``raw_col ..`` of its commit group's file
# (``raw/g<first descriptor column>.npy``, one per PROBE commit, listed in probe_raw_files).

def load_raw(root: str, raw_file: str, raw_col, n_cols: int) -> np.ndarray:
    """A run's raw logits, float32 ``[n_probes, n_cols]`` (``root``: the hub folder); raises
    OSError when the file is missing."""
    path = os.path.join(root, raw_file)
    if raw_col is None:
        return np.load(path, allow_pickle=False)
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise OSError(f"raw logits file {path} is unreadable ({exc})") from None
    c = int(raw_col)
    if arr.ndim != 2 or c < 0 or c + int(n_cols) > arr.shape[1]:
        raise OSError(f"raw logits file {path} holds {arr.shape}, not columns {c}..{c + int(n_cols) - 1}")
    return np.array(arr[:, c:c + int(n_cols)], dtype=np.float32)


def raw_files_named(con, ps_id: int) -> set[str]:
    """Relative paths of every raw file the catalog names for a probe set (runs, groups, masks)."""
    rows = con.execute("SELECT raw_file FROM probe_runs WHERE probe_set_id = ? AND raw_file IS NOT NULL "
                       "UNION SELECT file FROM probe_raw_files WHERE probe_set_id = ? "
                       "UNION SELECT mask_file FROM probe_masks WHERE probe_set_id = ?", [ps_id] * 3).fetchall()
    return {r[0] for r in rows}


def delete_orphan_raw_files(con, ps: dict, files: "ProbeSetFiles") -> int:
    """Delete files in ``raw/`` no catalog row names (a PROBE killed before its commit). Only
    under the hub's writer lock: no other writer can be between its file and its commit."""
    from zooql.storage.hub import is_temporary

    raw_dir = os.path.join(files.root, "raw")
    if not os.path.isdir(raw_dir):
        return 0
    named = {os.path.realpath(os.path.join(str(files.store.path), r)) for r in raw_files_named(con, ps["id"])}
    n = 0
    for fn in os.listdir(raw_dir):
        path = os.path.join(raw_dir, fn)
        if (fn.endswith(".npy") or is_temporary(fn)) and os.path.realpath(path) not in named:
            try:
                os.unlink(path)
                n += 1
            except OSError:
                pass
    return n


# ==== files of a probe set ===================================================================

class ProbeSetFiles:
    def __init__(self, store, ps: dict):
        self.store = store
        self.root = os.path.join(str(store.path), ps["dir"])
        self.ps = ps

    @property
    def probes(self) -> str:
        return os.path.join(self.root, "probes.npy")

    @property
    def descriptors(self) -> str:
        return os.path.join(self.root, "descriptors")

    @property
    def hnsw(self) -> str:
        return os.path.join(self.root, "hnsw")

    def index_dir(self, kind: str = "hnsw") -> str:
        """Folder of an index: ``hnsw`` or ``hnsw_reduced`` (see :data:`INDEX_KINDS`)."""
        return os.path.join(self.root, kind)

    def sub(self, *parts: str) -> str:
        p = os.path.join(self.root, *parts)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p

    def images(self) -> np.ndarray:
        try:
            return np.load(self.probes, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise StorageError(f"probe set {self.ps['name']!r}: probe images {self.probes} are missing") from None

    def has_index(self, kind: str = "hnsw") -> bool:
        return os.path.exists(os.path.join(self.index_dir(kind), "CURRENT.json"))


_MATRICES: dict[str, Any] = {}
_MLOCK = threading.Lock()


def open_matrix(files: ProbeSetFiles):
    """The probe set's DescriptorMatrix (one handle per path and process, refreshed)."""
    from zooql.methods.probelog.descriptors import DescriptorMatrix

    path = os.path.realpath(files.descriptors)
    with _MLOCK:
        dm = _MATRICES.get(path)
        if dm is not None:
            try:
                dm.refresh()
                return dm
            except (StorageError, OSError):
                _MATRICES.pop(path, None)
        # after a writer died inside a statement, every checksum is compared on open
        dm = DescriptorMatrix.open(path, "r+", verify=bool(getattr(files.store, "crashed_writer", None)))
        _MATRICES[path] = dm
        return dm


def save_npy(path: str, arr: np.ndarray) -> None:
    from zooql.storage.hub import atomic_write_bytes
    from pathlib import Path

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    atomic_write_bytes(Path(path), buf.getvalue())


# ==== HNSW index files ==========================================================================

_INDEXES: dict[str, tuple[Any, Any]] = {}
_ILOCK = threading.Lock()


def _index_pointer(path: str) -> dict:
    """The index folder's CURRENT.json as saved ({} when missing or unreadable: the index's
    own load reports the damage)."""
    import json

    try:
        with open(os.path.join(path, "CURRENT.json")) as f:
            cur = json.load(f)
    except (OSError, ValueError):
        return {}
    return cur if isinstance(cur, dict) else {}


#: The indexes a probe set may have: folder name -> parameters of a new one. ``hnsw``: an
#: hnswlib graph (ann.HnswIndex); ``hnsw_reduced`` (the option's name is kept from when it was
#: a 64-d PCA HNSW graph): posting lists of every logit's top probes (postings.PostingsIndex,
#: about 120 bytes a logit, 1.1 GiB at 10M logits; recall in benchmarks/RESULTS.md).
INDEX_KINDS = {"hnsw": {"class": "hnsw", "dim": 128, "embedding": "random", "M": 16},
               "hnsw_reduced": {"class": "postings", "top": 20}}


def _index_class(pointer: dict):
    """The class that reads an index saved with this CURRENT.json (by its format)."""
    from zooql.methods.probelog.ann import HnswIndex
    from zooql.methods.probelog.postings import FORMAT, PostingsIndex

    return PostingsIndex if pointer.get("format") == FORMAT else HnswIndex


def load_index(files: ProbeSetFiles, kind: str = "hnsw"):
    """The probe set's HNSW index (cached per process, reloaded when its files change)."""
    path = os.path.realpath(files.index_dir(kind))
    pointer = _index_pointer(path)
    gen = pointer.get("generation")
    with _ILOCK:
        hit = _INDEXES.get(path)
        if hit is not None and hit[0] == gen:
            return hit[1]
        idx = _index_class(pointer).load(path)
        _INDEXES[path] = (gen, idx)
        return idx


def save_index(ctx, files: ProbeSetFiles, index, store=None, kind: str = "hnsw") -> bool:
    """Persist an index under the hub's writer lock (re-entrant inside write statements).
    A read statement that cannot take the lock keeps the index in memory only."""
    store = store if store is not None else ctx.store
    path = os.path.realpath(files.index_dir(kind))
    try:
        with store.writer():
            index.save(path)
    except StorageError:
        return False
    with _ILOCK:
        _INDEXES[path] = (_index_pointer(path).get("generation"), index)
    return True


def _postings(kind: str, like=None) -> bool:
    """Whether the index of ``kind`` (or rebuilt like ``like``) is a postings index."""
    from zooql.methods.probelog.postings import PostingsIndex

    return isinstance(like, PostingsIndex) if like is not None else INDEX_KINDS[kind]["class"] == "postings"


def new_index(kind: str, n_probes: int, like=None):
    """An empty index of ``kind`` (the parameters of ``like``, an index being rebuilt, if given)."""
    from zooql.methods.probelog.ann import HnswIndex
    from zooql.methods.probelog.postings import PostingsIndex

    if _postings(kind, like):
        return PostingsIndex(n_probes, top=like.top if like is not None else INDEX_KINDS[kind]["top"])
    p = INDEX_KINDS[kind] if like is None else {"dim": like.dim, "embedding": like.embedding, "seed": like.seed}
    return HnswIndex(n_probes, dim=p["dim"], embedding=p["embedding"], seed=p.get("seed", 0))


def _build_options(kind: str, like=None) -> dict:
    if _postings(kind, like):
        return {}
    M = like.M if like is not None else INDEX_KINDS[kind]["M"]
    return {"M": M, "ef_construction": 100 if kind == "hnsw_reduced" else 200, "num_threads": 1}


def build_index(ctx, files: ProbeSetFiles, dm, kind: str = "hnsw", like=None):
    """Build (and save) an index of ``kind`` over the live columns; ``like``: an index whose
    parameters to reuse (VACUUM rebuilding an index without its deleted entries)."""
    what = f"building {'reduced ' if kind == 'hnsw_reduced' else ''}index of {files.ps['name']}"
    ctx.report(what, 0, 1)
    idx = new_index(kind, dm.n_probes, like=like).build_from_store(dm, **_build_options(kind, like))
    ctx.report(what, 1, 1)
    save_index(ctx, files, idx, kind=kind)
    return idx
