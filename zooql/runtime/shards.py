"""Sharded scans: a column store too large for one worker is split into shards that
workers load and keep; a query is scattered to every shard, each returns its exact top-k,
and the driver merges them (FIND over shards, ``SET executor = 'ray'``).

Generic pieces, used by a method's driver code and its worker function (no method named
here, no torch, no ray):

* :func:`shard_count` -- how many shards a store of ``nbytes`` gets (the settings' rule);
* :func:`plan_shards` -- contiguous column ranges over a store's segments;
* :func:`merge_topk` -- the exact merge of per-shard top-k lists (ties: the lower id);
* :func:`read_columns` -- a shard piece read from a ``.npy`` file with ``pread``;
* :data:`HELD` -- the per-process cache of loaded pieces (an actor keeps its shards
  between queries; bounded in bytes, least recently used first out).

Exactness: every shard computes the same per-column distances as a scan of the whole
store (the same kernel, the same per-column arithmetic) and returns its ``top`` smallest
``(distance, id)`` pairs; the ``top`` smallest pairs of the union of those lists are the
``top`` smallest pairs of the whole store, in the same order, ties included.
"""
from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from typing import Callable

import numpy as np

from zooql.errors import ExecutionError

#: default shard size limit in MB (``SET find_shard_mb``): a store larger than this is
#: sharded when the executor is ray
DEFAULT_SHARD_MB = 1024


def shard_count(nbytes: int, *, executor: str, workers: int, forced: int | None, limit_mb: float | None) -> int:
    """Number of shards (0: no sharding, scan on the driver).

    ``forced`` (``SET find_shards = n``): n shards with any executor (0: never shard);
    unset: with the ray executor, a store above ``limit_mb`` gets ``max(ceil(nbytes /
    limit), workers)`` shards (each fits one worker; every worker takes part)."""
    if forced is not None:
        return max(0, int(forced))
    if executor != "ray":
        return 0
    limit = float(limit_mb or DEFAULT_SHARD_MB) * (1 << 20)
    if nbytes <= limit:
        return 0
    return max(int(math.ceil(nbytes / limit)), int(workers or 1))


def plan_shards(sizes: list[int], n: int) -> list[list[tuple[int, int, int]]]:
    """Split the concatenation of segments of ``sizes`` columns into ``n`` contiguous
    column ranges of near-equal length; each shard is a list of ``(segment, start, stop)``
    pieces. Empty shards are dropped (fewer columns than shards)."""
    total = int(sum(sizes))
    n = max(1, min(int(n), total)) if total else 1
    bounds = [total * i // n for i in range(n + 1)]
    starts = np.cumsum([0] + [int(s) for s in sizes])
    out = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        pieces = []
        for s, (s0, s1) in enumerate(zip(starts[:-1], starts[1:])):
            lo, hi = max(a, int(s0)), min(b, int(s1))
            if lo < hi:
                pieces.append((s, lo - int(s0), hi - int(s0)))
        if pieces:
            out.append(pieces)
    return out


def merge_topk(parts: list[tuple[np.ndarray, np.ndarray]], top: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``top`` smallest ``(distance, id)`` pairs of per-shard results ``[(ids, distances)]``,
    ascending by distance, ties by the lower id."""
    parts = [(np.asarray(i, np.int64), np.asarray(d, np.float64)) for i, d in parts if len(i)]
    if not parts or top <= 0:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    ids = np.concatenate([p[0] for p in parts])
    d = np.concatenate([p[1] for p in parts])
    order = np.lexsort((ids, d))[: int(top)]
    return ids[order], d[order]


def read_columns(path: str, header: int, n_rows: int, n_cols: int, dtype, start: int, stop: int) -> np.ndarray:
    """Columns ``[start, stop)`` of a C-order ``[n_rows, n_cols]`` array stored at byte
    ``header`` of ``path``: a contiguous ``[n_rows, stop - start]`` array (one ``pread``
    per row; nothing else of the file is read)."""
    dt = np.dtype(dtype)
    m = int(stop) - int(start)
    out = np.empty((int(n_rows), m), dt)
    width = m * dt.itemsize
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise ExecutionError(f"a shard worker cannot read {path} ({exc.strerror}); every worker must see the "
                             f"hub's files (a shared filesystem)") from None
    try:
        size = os.fstat(fd).st_size
        if size != header + int(n_rows) * int(n_cols) * dt.itemsize:
            raise ExecutionError(f"{path} changed since the shard plan was made; run the statement again")
        view = out.reshape(-1).view(np.uint8)
        for r in range(int(n_rows)):
            off = header + (r * int(n_cols) + int(start)) * dt.itemsize
            buf = os.pread(fd, width, off)
            if len(buf) != width:
                raise ExecutionError(f"short read from {path}; run the statement again")
            view[r * width:(r + 1) * width] = np.frombuffer(buf, np.uint8)
    finally:
        os.close(fd)
    return out


class HeldPieces:
    """Per-process cache of loaded shard pieces, least recently used out beyond a byte budget."""

    def __init__(self):
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0

    def get(self, key: tuple, load: Callable[[], np.ndarray], keep_bytes: int) -> np.ndarray:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        arr = load()
        self.loads += 1
        if keep_bytes > 0:
            with self._lock:
                self._items[key] = arr
                while len(self._items) > 1 and self.nbytes() > keep_bytes:
                    self._items.popitem(last=False)
        return arr

    def forget(self, keep: Callable[[tuple], bool]) -> None:
        """Drop the pieces for which ``keep(key)`` is false (a newer plan replaced them)."""
        with self._lock:
            for k in [k for k in self._items if not keep(k)]:
                del self._items[k]

    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in self._items.values())

    def keys(self) -> list[tuple]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


#: the pieces this process (a Ray actor) holds
HELD = HeldPieces()


def held_info(runtime=None, model=None, args=None, progress=None) -> dict:
    """Worker function: what this worker holds (``{"pid", "pieces", "bytes", "loads"}``)."""
    return {"pid": os.getpid(), "pieces": len(HELD.keys()), "bytes": HELD.nbytes(), "loads": HELD.loads}
