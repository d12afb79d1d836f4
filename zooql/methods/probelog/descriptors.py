"""Probe-major descriptor matrix files (the ProbeLog gallery on disk).

On-disk layout
--------------
A :class:`DescriptorMatrix` is a directory (normally ``<hub>/descriptors/`` beside the
catalog)::

    descriptors/
      MANIFEST.json          # the only mutable file; replaced atomically
      seg-00000007.npy       # immutable segment: float16/float32 [n_probes, L], C order
      seg-00000007.ids.npy   # int64 [L]: the logical column id of each segment column
      tomb-00000009.npy      # int64 sorted: deleted ids not yet physically removed

* **Probe-major.**  Each segment is a plain ``.npy`` holding one contiguous row per
  probe over that segment's columns, so it can be memory-mapped (``np.load(...,
  mmap_mode='r')``) and an asymmetric query reads only its ``k`` probe rows of every
  segment: ``O(k * N)`` bytes, never the whole matrix.
* **Logical column ids** are assigned by :meth:`append_columns` from a counter
  (``next_col``) and never reused or renumbered, so the catalog's
  ``column id -> (model, logit)`` mapping survives deletes and compaction.  Within and
  across segments ids are strictly increasing, so the concatenation of segments in
  manifest order is sorted by id.
* **Appends** write a new segment file beside the others (temporary name, fsync,
  ``os.replace``) and then publish a new manifest the same way.  A crash at any point
  leaves either the old or the new manifest; unreferenced files are garbage-collected on
  the next commit.  Readers that opened an older manifest keep their memory maps
  (POSIX keeps unlinked mapped files alive).
* **Merging.** To keep the number of segments logarithmic, after an append the two last
  segments are merged (rewritten into one new file) while the older one is no more than
  ``MERGE_RATIO`` (4) times larger than the newer one -- a size-tiered policy, so each
  column is rewritten O(log N) times in total.  For bulk ingestion wrap many appends in
  ``with dm.batch(): ...``: they are buffered in memory and committed as one segment.
* **Deletes** (``DROP MODEL``) add ids to the tombstone file and rewrite nothing;
  queries skip tombstoned columns.  Merges drop the tombstoned columns they meet, and
  :meth:`compact` (the ``VACUUM`` statement) rewrites everything into one segment
  without them, streamed in slabs so its memory is bounded (:mod:`zooql.methods.probelog.segio`).
* Single writer: the hub's lock serialises writers; any number of readers.
"""
from __future__ import annotations

import contextlib
import json
import mmap
import os
import re
from dataclasses import dataclass

import numpy as np

from zooql.errors import StorageError
from zooql.methods.probelog import integrity as I
from zooql.methods.probelog import segio

FORMAT = "zooql-descriptors"
VERSION = 1
MANIFEST = "MANIFEST.json"
MERGE_RATIO = 4
_DTYPES = {"float16": np.float16, "float32": np.float32}
_FILE_RE = re.compile(r"^(seg|tomb)-(\d{8})(\.ids)?\.npy$")
#: What a corrupted segment's message tells the user to do.
FIX = ("the descriptors of this probe set must be rebuilt: restore the file from a backup, or DROP the "
       "affected models and PROBE them again (CHECK HUB lists every damaged file)")


from zooql.methods.probelog.integrity import (  # noqa: E402  (the segment file helpers)
    atomic_write_json as _atomic_write_json, atomic_write_npy as _atomic_write_npy, open_npy_mmap,
)


def _open_npy_mmap(path: str):
    return open_npy_mmap(path, FIX)


@dataclass
class _Segment:
    name: str            # "seg-00000007"
    n_cols: int
    first: int
    last: int
    data: np.ndarray | None = None  # memory-mapped [n_probes, n_cols]
    ids: np.ndarray | None = None   # int64 [n_cols]
    mm: object = None               # the mmap.mmap behind ``data``
    offset: int = 0                 # byte offset of ``data`` in ``mm``
    files: dict | None = None       # {"data": stamp, "ids": stamp} (integrity.stamp), when recorded
    fd: object = None               # segio.FileHandle: keeps the file readable after a VACUUM unlinks it

    def to_json(self):
        out = {"name": self.name, "n_cols": self.n_cols, "first": self.first, "last": self.last}
        if self.files:
            out["files"] = self.files
        return out


class DescriptorMatrix:
    """A probe-major ``[n_probes, N]`` descriptor matrix stored as memory-mapped segments.

    Use :meth:`create` / :meth:`open`.  Search functions in
    :mod:`zooql.methods.probelog.kernels` accept an instance directly as ``store``.
    """

    def __init__(self, path: str, manifest: dict, writable: bool, verify: bool = False):
        self.path = os.fspath(path)
        self._writable = writable
        self._verify = verify
        self._batch: list[np.ndarray] | None = None
        self._batch_first = 0
        self._load(manifest)

    # ------------------------------------------------------------------ open / create
    @classmethod
    def create(cls, path, n_probes: int, dtype="float16", *, meta: dict | None = None) -> "DescriptorMatrix":
        """Create an empty matrix directory at ``path`` (must not exist or be empty)."""
        path = os.fspath(path)
        dt = np.dtype(dtype).name
        if dt not in _DTYPES:
            raise StorageError(f"descriptor dtype must be float16 or float32, not {dt}")
        if int(n_probes) < 2:
            raise StorageError("a descriptor matrix needs at least 2 probes")
        if os.path.exists(os.path.join(path, MANIFEST)):
            raise StorageError(f"descriptor matrix already exists at {path}")
        os.makedirs(path, exist_ok=True)
        manifest = {"format": FORMAT, "version": VERSION, "generation": 0,
                    "n_probes": int(n_probes), "dtype": dt, "next_col": 0,
                    "segments": [], "tombstones": None, "meta": meta or {}}
        _atomic_write_json(os.path.join(path, MANIFEST), manifest)
        return cls(path, manifest, writable=True)

    @classmethod
    def open(cls, path, mode: str = "r+", *, verify: bool = False) -> "DescriptorMatrix":
        """Open an existing matrix; ``mode`` 'r' (read only) or 'r+' (read/write).

        Sizes and headers of every segment are checked always; checksums when a file's
        size or time changed since it was written, or for every file with ``verify``."""
        path = os.fspath(path)
        manifest = cls._read_manifest(path)
        for attempt in range(3):
            try:
                return cls(path, manifest, writable=(mode != "r"), verify=verify)
            except FileNotFoundError as exc:
                # a writer replaced the manifest and collected files between our reads
                if attempt == 2:
                    raise StorageError(f"descriptor matrix at {path}: file {exc.filename} is missing; "
                                       f"{FIX}") from None
                manifest = cls._read_manifest(path)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _read_manifest(path: str) -> dict:
        mp = os.path.join(path, MANIFEST)
        try:
            with open(mp) as f:
                m = json.load(f)
        except FileNotFoundError:
            raise StorageError(f"no descriptor matrix at {path} (missing {MANIFEST})") from None
        except (OSError, ValueError) as e:
            raise StorageError(f"corrupt descriptor manifest {mp}: {e}") from None
        if m.get("format") != FORMAT:
            raise StorageError(f"{mp} is not a ZooQL descriptor manifest")
        if m.get("version") != VERSION:
            raise StorageError(f"descriptor format version {m.get('version')} is not supported "
                               f"(this ZooQL reads version {VERSION})")
        return m

    def _load(self, m: dict) -> None:
        self._manifest = m
        self.n_probes = int(m["n_probes"])
        self.dtype = np.dtype(_DTYPES[m["dtype"]])
        self._next_col = int(m["next_col"])
        self._gen = int(m["generation"])
        segs = []
        for s in m["segments"]:
            seg = _Segment(s["name"], int(s["n_cols"]), int(s["first"]), int(s["last"]), files=s.get("files"))
            self._check_stamps(seg, full=self._verify)
            data_path = os.path.join(self.path, seg.name + ".npy")
            seg.data, seg.mm = _open_npy_mmap(data_path)
            seg.fd = segio.FileHandle(data_path)
            if seg.mm is not None:
                seg.offset = seg.data.ctypes.data - np.frombuffer(seg.mm, np.uint8, 1).ctypes.data
            if seg.data.dtype != self.dtype or seg.data.shape != (self.n_probes, seg.n_cols):
                raise StorageError(f"descriptor segment {data_path} holds {seg.data.dtype} {seg.data.shape}, its "
                                   f"manifest records {self.dtype.name} ({self.n_probes}, {seg.n_cols}); {FIX}")
            seg.ids = self._load_ids(os.path.join(self.path, seg.name + ".ids.npy"), seg)
            segs.append(seg)
        self._segs = segs
        if m.get("tombstones"):
            tp = os.path.join(self.path, m["tombstones"] + ".npy")
            try:
                self._tomb = np.load(tp, allow_pickle=False).astype(np.int64)
            except FileNotFoundError:
                raise
            except (ValueError, EOFError, OSError) as exc:
                raise StorageError(f"descriptor tombstone file {tp} is unreadable ({exc}); {FIX}") from None
        else:
            self._tomb = np.empty(0, np.int64)
        self._live_cache: dict[str, np.ndarray | None] = {}

    def _check_stamps(self, seg: _Segment, full: bool) -> None:
        """Checksums of a segment's files: all of them with ``full``, else those whose size
        or modification time changed since they were written."""
        for key, suffix, what in (("data", ".npy", "descriptor segment"), ("ids", ".ids.npy", "descriptor ids file")):
            st = (seg.files or {}).get(key)
            path = os.path.join(self.path, seg.name + suffix)
            if st and (full or I.changed(path, st)):
                I.verify(path, st, what, FIX)

    def _load_ids(self, path: str, seg: _Segment) -> np.ndarray:
        try:
            ids = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise
        except (ValueError, EOFError, OSError) as exc:
            raise StorageError(f"descriptor ids file {path} is unreadable ({exc}); {FIX}") from None
        if ids.dtype != np.int64 or ids.shape != (seg.n_cols,) or (seg.n_cols and (
                int(ids[0]) != seg.first or int(ids[-1]) != seg.last or (np.diff(ids) <= 0).any())):
            raise StorageError(f"descriptor ids file {path} does not hold the {seg.n_cols} increasing ids "
                               f"{seg.first}..{seg.last} its manifest records; {FIX}")
        return ids

    def verify(self) -> None:
        """Compare every segment file with its recorded checksum (CHECK HUB)."""
        for seg in self._segs:
            self._check_stamps(seg, full=True)

    def refresh(self) -> bool:
        """Re-read the manifest if another handle committed; True when it changed. When it
        did not, the segment files are still compared (size and time) with their stamps."""
        m = self._read_manifest(self.path)
        if int(m["generation"]) == self._gen:
            for seg in self._segs:
                self._check_stamps(seg, full=False)
            return False
        self._load(m)
        return True

    def close(self) -> None:
        self._segs = []
        self._live_cache = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ properties
    @property
    def n_columns(self) -> int:
        """Number of live (not deleted) columns."""
        return sum(s.n_cols for s in self._segs) - int(self._tomb.shape[0])

    @property
    def next_column_id(self) -> int:
        """The id the next appended column will get (ids are never reused)."""
        return self._next_col

    @property
    def n_segments(self) -> int:
        return len(self._segs)

    @property
    def meta(self) -> dict:
        return dict(self._manifest.get("meta") or {})

    def _live(self, seg: _Segment) -> np.ndarray | None:
        """Boolean live mask of a segment, or None when nothing in it is deleted."""
        if seg.name in self._live_cache:
            return self._live_cache[seg.name]
        mask = None
        if self._tomb.size:
            lo, hi = np.searchsorted(self._tomb, [seg.first, seg.last + 1])
            if hi > lo:
                dead = self._tomb[lo:hi]
                mask = ~np.isin(seg.ids, dead, assume_unique=True)
                if mask.all():
                    mask = None
        self._live_cache[seg.name] = mask
        return mask

    def iter_segments(self):
        """Yield ``(data [n_probes, L] memmap, ids int64[L], live mask or None)``."""
        for seg in self._segs:
            yield seg.data, seg.ids, self._live(seg)

    def prefetch(self, probe_idx) -> None:
        """Ask the OS to read the given probe rows of every segment (MADV_WILLNEED).

        With the mapping in MADV_RANDOM mode this makes a cold query read exactly its
        ``k`` rows, in large sequential I/Os; on a warm page cache it costs a few
        microseconds per row.
        """
        if not hasattr(mmap, "MADV_WILLNEED"):
            return
        page = mmap.PAGESIZE
        p = np.atleast_1d(np.asarray(probe_idx, dtype=np.int64))
        for seg in self._segs:
            if seg.mm is None or not hasattr(seg.mm, "madvise"):
                continue
            row = seg.n_cols * self.dtype.itemsize
            for r in np.unique(p).tolist():
                a = seg.offset + r * row
                start = a - a % page
                with contextlib.suppress(OSError, ValueError):
                    seg.mm.madvise(mmap.MADV_WILLNEED, start, a + row - start)

    def column_ids(self) -> np.ndarray:
        """Live column ids, ascending (the column order of :meth:`rows`)."""
        out = []
        for data, ids, live in self.iter_segments():
            out.append(ids if live is None else ids[live])
        return np.concatenate(out) if out else np.empty(0, np.int64)

    def rows(self, probe_idx) -> np.ndarray:
        """Rows of the given probes over all live columns: ``[k, n_columns]``.

        Reads only those rows from the memory-mapped segments.
        """
        p = np.atleast_1d(np.asarray(probe_idx, dtype=np.int64))
        if p.size and (p.min() < 0 or p.max() >= self.n_probes):
            raise IndexError("probe index out of range")
        out = []
        for data, ids, live in self.iter_segments():
            r = data[p]
            out.append(r if live is None else r[:, live])
        if not out:
            return np.empty((p.shape[0], 0), self.dtype)
        return np.concatenate(out, axis=1)

    def columns(self, col_ids) -> np.ndarray:
        """Full descriptors ``[n_probes, len(col_ids)]`` of the given live column ids."""
        c = np.atleast_1d(np.asarray(col_ids, dtype=np.int64))
        out = np.zeros((self.n_probes, c.shape[0]), self.dtype)
        found = np.zeros(c.shape[0], bool)
        for data, ids, live in self.iter_segments():
            p = np.searchsorted(ids, c)
            ok = (p < ids.shape[0])
            ok[ok] = ids[p[ok]] == c[ok]
            if live is not None:
                ok[ok] = live[p[ok]]
            if ok.any():
                out[:, ok] = data[:, p[ok]]
                found |= ok
        if not found.all():
            raise KeyError(f"column ids not present: {c[~found][:10].tolist()}")
        return out

    # ------------------------------------------------------------------ writing
    def _check_writable(self):
        if not self._writable:
            raise StorageError("descriptor matrix is open read-only")

    @contextlib.contextmanager
    def batch(self):
        """Buffer appends in memory and commit them as one segment on exit."""
        self._check_writable()
        if self._batch is not None:
            yield self
            return
        self._batch = []
        self._batch_first = self._next_col
        try:
            yield self
        except BaseException:
            self._next_col = self._batch_first
            self._batch = None
            raise
        blocks, self._batch = self._batch, None
        if blocks:
            self._commit_append(np.concatenate(blocks, axis=1), self._batch_first)

    def append_columns(self, block) -> tuple[int, int]:
        """Append descriptor columns ``[n_probes, L]``; returns their ids ``(start, end)``.

        ``end`` is exclusive.  Values are stored in the matrix dtype (float16 by default).
        """
        self._check_writable()
        b = np.asarray(block)
        if b.ndim == 1:
            b = b[:, None]
        if b.ndim != 2 or b.shape[0] != self.n_probes:
            raise StorageError(f"descriptor block must be [{self.n_probes}, L], got {b.shape}")
        b = np.ascontiguousarray(b, dtype=self.dtype)
        if not np.isfinite(b).all():
            raise StorageError("descriptor block contains NaN or infinity")
        start = self._next_col
        end = start + b.shape[1]
        if b.shape[1] == 0:
            return start, end
        if self._batch is not None:
            self._batch.append(b)
            self._next_col = end
            return start, end
        self._commit_append(b, start)
        return start, end

    def append_columns_streaming(self, blocks, n_cols: int) -> tuple[int, int]:
        """Append ``n_cols`` columns given as an iterable of ``[n_probes, b]`` blocks.

        The new segment is written in column slabs through a writable memory map, so a
        gallery far larger than memory can be ingested; it becomes visible atomically
        when the whole segment is written.  Returns the ids ``(start, end)``.
        """
        self._check_writable()
        if self._batch is not None:
            raise StorageError("cannot stream inside a batch")
        n_cols = int(n_cols)
        start = self._next_col
        if n_cols <= 0:
            return start, start
        m = self._read_manifest(self.path)
        if int(m["generation"]) != self._gen:
            self._load(m)
            start = self._next_col
        gen = self._gen + 1
        name = self._new_name("seg", gen)
        data_path, ids_path = os.path.join(self.path, name + ".npy"), os.path.join(self.path, name + ".ids.npy")
        _atomic_write_npy(ids_path, np.arange(start, start + n_cols, dtype=np.int64))
        segio.write_streamed(data_path, blocks, self.n_probes, n_cols, self.dtype)
        files = {"data": I.stamp(data_path), "ids": I.stamp(ids_path)}
        segs = [s.to_json() for s in self._segs]
        segs.append(_Segment(name, n_cols, start, start + n_cols - 1, files=files).to_json())
        self._publish(gen + 1, segs, self._tomb, next_col=start + n_cols)
        return start, start + n_cols

    def _new_name(self, kind: str, gen: int) -> str:
        return f"{kind}-{gen:08d}"

    def _write_segment(self, gen: int, data: np.ndarray, ids: np.ndarray) -> _Segment:
        name = self._new_name("seg", gen)
        ids_path, data_path = os.path.join(self.path, name + ".ids.npy"), os.path.join(self.path, name + ".npy")
        _atomic_write_npy(ids_path, ids.astype(np.int64))
        _atomic_write_npy(data_path, np.ascontiguousarray(data, self.dtype))
        return _Segment(name, int(ids.shape[0]), int(ids[0]), int(ids[-1]),
                        files={"data": I.stamp(data_path), "ids": I.stamp(ids_path)})

    def _commit_append(self, block: np.ndarray, start: int) -> None:
        m = self._read_manifest(self.path)
        if int(m["generation"]) != self._gen:
            self._load(m)  # another handle committed; continue from its state
            if start < self._next_col:
                raise StorageError("descriptor matrix was appended to by another writer")
        gen = self._gen + 1
        ids = np.arange(start, start + block.shape[1], dtype=np.int64)
        segs = [s.to_json() for s in self._segs]
        segs.append(self._write_segment(gen, block, ids).to_json())
        gen += 1
        # size-tiered merging of the newest segments
        while len(segs) >= 2 and segs[-2]["n_cols"] <= MERGE_RATIO * segs[-1]["n_cols"]:
            a, b = segs[-2], segs[-1]
            merged = self._merge([a["name"], b["name"]], gen)
            segs[-2:] = [merged.to_json()] if merged is not None else []
            gen += 1
        self._publish(gen, segs, self._tomb, next_col=start + block.shape[1])

    def _merge(self, names: list[str], gen: int) -> _Segment | None:
        """Rewrite segments ``names`` (adjacent, in order) into one without deleted columns,
        streamed in slabs (:func:`zooql.methods.probelog.segio.write_compacted`): memory
        stays bounded however large the segments are."""
        by_name = {s.name: s for s in self._segs}
        parts, idss = [], []
        for nm in names:
            seg = by_name.get(nm)
            i = seg.ids if seg is not None else np.load(os.path.join(self.path, nm + ".ids.npy"))
            live = ~np.isin(i, self._tomb) if self._tomb.size else None
            if live is not None and live.all():
                live = None
            header = seg.offset if seg is not None else segio.npy_offset(os.path.join(self.path, nm + ".npy"))
            parts.append((os.path.join(self.path, nm + ".npy"), int(header), int(i.shape[0]),
                          None if live is None else np.nonzero(live)[0]))
            idss.append(i if live is None else i[live])
        ids = np.concatenate(idss) if idss else np.empty(0, np.int64)
        if ids.size == 0:
            return None
        name = self._new_name("seg", gen)
        ids_path, data_path = os.path.join(self.path, name + ".ids.npy"), os.path.join(self.path, name + ".npy")
        try:
            segio.write_compacted(data_path, parts, self.n_probes, self.dtype)
            _atomic_write_npy(ids_path, ids.astype(np.int64))
        except BaseException:  # an interrupt leaves no file of the new segment behind
            for p in (data_path, ids_path):
                with contextlib.suppress(OSError):
                    os.unlink(p)
            raise
        return _Segment(name, int(ids.shape[0]), int(ids[0]), int(ids[-1]),
                        files={"data": I.stamp(data_path), "ids": I.stamp(ids_path)})

    def delete_columns(self, cols) -> int:
        """Delete columns by id (DROP MODEL); returns how many live columns were deleted."""
        self._check_writable()
        if self._batch is not None:
            raise StorageError("cannot delete inside a batch")
        c = np.unique(np.asarray(cols, dtype=np.int64).ravel())
        if c.size == 0:
            return 0
        m = self._read_manifest(self.path)
        if int(m["generation"]) != self._gen:
            self._load(m)
        # keep only ids that exist and are live
        present = np.zeros(c.shape[0], bool)
        for seg in self._segs:
            p = np.searchsorted(seg.ids, c)
            ok = p < seg.n_cols
            ok[ok] = seg.ids[p[ok]] == c[ok]
            present |= ok
        c = c[present & ~np.isin(c, self._tomb)]
        if c.size == 0:
            return 0
        # tombstones only: no segment is rewritten (VACUUM / compact() reclaims the space)
        self._publish(self._gen + 1, [s.to_json() for s in self._segs], np.union1d(self._tomb, c),
                      next_col=self._next_col)
        return int(c.size)

    def compact(self) -> dict:
        """Rewrite all segments into one without deleted columns (VACUUM), written beside
        the old ones and published by replacing the manifest: an interrupt leaves the old
        state, readers holding the old segments keep reading them. Returns what changed:
        ``segments_before/after``, ``dead_columns``, ``bytes_before/after`` (data files)."""
        self._check_writable()
        m = self._read_manifest(self.path)
        if int(m["generation"]) != self._gen:
            self._load(m)
        before = {"segments_before": len(self._segs), "dead_columns": int(self._tomb.shape[0]),
                  "bytes_before": self.file_bytes()}
        if len(self._segs) > 1 or self._tomb.size:
            gen = self._gen + 1
            merged = self._merge([s.name for s in self._segs], gen) if self._segs else None
            segs = [merged.to_json()] if merged is not None else []
            self._publish(gen + 1, segs, np.empty(0, np.int64), next_col=self._next_col)
        return dict(before, segments_after=len(self._segs), bytes_after=self.file_bytes())

    def file_bytes(self) -> int:
        """Bytes on disk of the current segment files (data, ids, tombstones)."""
        names = [s.name + sfx for s in self._segs for sfx in (".npy", ".ids.npy")]
        if self._manifest.get("tombstones"):
            names.append(self._manifest["tombstones"] + ".npy")
        return sum(os.path.getsize(os.path.join(self.path, n)) for n in names)

    def segment_files(self):
        """Yield ``(segio.FileHandle, header offset, n_cols, ids, live mask or None)`` per
        segment (the streamed scan preads the open files: a VACUUM that unlinks them meanwhile
        does not disturb it, see :mod:`zooql.methods.probelog.segio`)."""
        for seg in self._segs:
            yield seg.fd, seg.offset, seg.n_cols, seg.ids, self._live(seg)

    def _publish(self, gen: int, segs: list[dict], tomb: np.ndarray, next_col: int) -> None:
        tomb_name = None
        if tomb.size:
            # tombstones only for ids still physically present (merges drop the rest)
            present = [np.load(os.path.join(self.path, sj["name"] + ".ids.npy"), mmap_mode="r")
                       for sj in segs if not (sj["last"] < tomb[0] or sj["first"] > tomb[-1])]
            tomb = tomb[np.isin(tomb, np.concatenate(present))] if present else tomb[:0]
        if tomb.size:
            tomb_name = self._new_name("tomb", gen)
            _atomic_write_npy(os.path.join(self.path, tomb_name + ".npy"), tomb.astype(np.int64))
        manifest = dict(self._manifest)
        manifest.update({"generation": gen, "segments": segs, "tombstones": tomb_name,
                         "next_col": int(next_col)})
        _atomic_write_json(os.path.join(self.path, MANIFEST), manifest)
        self._load(manifest)
        self._collect_garbage()

    def _collect_garbage(self) -> None:
        keep = {s.name for s in self._segs}
        if self._manifest.get("tombstones"):
            keep.add(self._manifest["tombstones"])
        for fn in os.listdir(self.path):
            mt = _FILE_RE.match(fn)
            if mt and f"{mt.group(1)}-{mt.group(2)}" not in keep:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.path, fn))
            elif fn.startswith(".tmp-"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.path, fn))

    def nbytes(self) -> int:
        """Bytes of descriptor data on disk (all segments, including deleted columns)."""
        return sum(int(s.data.nbytes) for s in self._segs)

    def __repr__(self) -> str:
        return (f"DescriptorMatrix({self.path!r}, n_probes={self.n_probes}, "
                f"columns={self.n_columns}, dtype={self.dtype.name}, segments={len(self._segs)})")
