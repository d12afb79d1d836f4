"""Bounded-memory I/O on descriptor segments: column-chunked reads of probe rows (the
streamed exact scan) and the streamed rewrite of segments without their deleted columns
(merges, VACUUM).

Both use ``pread`` / ``pwrite`` into buffers of a fixed size rather than the segments'
memory maps, so the resident memory of a scan or a rewrite does not grow with the
number of columns: pages read through a memory map stay mapped into the process (and
count in its RSS) until the map is closed, pages read with ``pread`` land in the page
cache only.

* :func:`map_row_chunks` reads ``[k, m]`` blocks of the given probe rows of segments,
  ``m`` columns at a time, in a few worker threads that each pread a chunk into their own
  reused buffer and scan it there (the kernels release the GIL, so one worker scans while
  another reads), with ``posix_fadvise(WILLNEED)`` ahead of them.  Memory:
  ``workers * k * m * itemsize`` bytes (a few MiB).
* :func:`write_compacted` writes a new ``.npy`` segment holding the kept columns of
  several source segments, in slabs of all probe rows, to a temporary file that is
  fsynced and renamed into place; an interrupt leaves only the temporary file (removed
  by the next commit's garbage collection).  Memory: two slabs of ``SLAB_BYTES``.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

#: Most bytes of descriptor data an exact scan holds at once (its workers' chunk buffers).
SCAN_BUDGET = 64 << 20
#: Bytes of one chunk buffer in an exact scan (small enough for the CPU's L2/L3 caches, so
#: the kernel scans the rows just read from cache rather than from memory).
CHUNK_BYTES = 4 << 20
#: Reader/scanner threads of an exact scan. One: on the shared 2-core machine a second
#: worker did not beat one reading and scanning 4 MiB chunks in turn (benchmarks/RESULTS.md,
#: issue 14); both give the same results.
SCAN_WORKERS = 1
#: How far ahead of the chunk being read a scan asks the kernel for the next ones.
READ_AHEAD = 32 << 20
#: Bytes of one slab (all probe rows of a run of columns) in a segment rewrite.
SLAB_BYTES = 32 << 20

#: Test hook: called as ``FAULT(stage, done_bytes)`` during a rewrite (fault injection).
FAULT = None


class FileHandle:
    """A read-only file descriptor closed when the last reference goes (a segment's file
    stays readable through it after a VACUUM unlinks the file)."""

    def __init__(self, path: str):
        self.path = path
        self.fd = os.open(path, os.O_RDONLY)

    def fileno(self) -> int:
        return self.fd

    def __del__(self, _close=os.close):   # bound here: at interpreter exit module globals may be gone
        try:
            _close(self.fd)
        except (OSError, TypeError, AttributeError):
            pass


def chunk_columns(k: int, itemsize: int, budget: int | None = None, workers: int | None = None) -> int:
    """Columns per chunk: a ``[k, m]`` buffer of at most :data:`CHUNK_BYTES`, and
    ``workers`` of them within ``budget`` bytes (default :data:`SCAN_BUDGET`); at least
    1,024 columns."""
    budget = SCAN_BUDGET if budget is None else budget
    workers = SCAN_WORKERS if workers is None else workers
    row = max(1, int(k)) * int(itemsize)
    return max(1024, min(int(budget) // (max(1, int(workers)) * row), CHUNK_BYTES // row))


def _fadvise(fd: int, offset: int, length: int, advice) -> None:
    if advice is not None and hasattr(os, "posix_fadvise") and length > 0:
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, offset, length, advice)


def _read_rows(fd: int, header: int, row_bytes: int, rows, c0: int, m: int, itemsize: int,
               out: np.ndarray) -> np.ndarray:
    """pread ``rows`` x columns ``[c0, c0+m)`` into ``out`` (a flat byte buffer); returns the
    ``[len(rows), m]`` byte view."""
    width = m * itemsize
    view = out[: len(rows) * width].reshape(len(rows), width)
    for j, r in enumerate(rows):
        off = header + int(r) * row_bytes + c0 * itemsize
        got = os.preadv(fd, [memoryview(view[j])], off)
        if got != width:
            raise OSError(f"short read of a descriptor segment ({got} of {width} bytes)")
    return view


def map_row_chunks(handles, tasks, rows, dtype, fn, *, workers: int = 1, chunk: int) -> list:
    """Read probe rows of segments chunk by chunk and call ``fn`` on each, in ``workers``
    threads; returns ``fn``'s results in task order.

    ``handles``: per segment ``(src, header, n_cols)`` (``src`` a path or a
    :class:`FileHandle`, ``header`` the byte offset of the array); ``tasks``: ``(segment,
    c0, m)`` column ranges (``m <= chunk``); ``rows``: the probe rows to read. Each worker
    owns one buffer of ``len(rows) * chunk * itemsize`` bytes, allocated once per call and
    reused for every chunk it takes: it preads the rows of its next chunk into it, then
    calls ``fn(segment, c0, block [len(rows), m])`` on it (a compiled kernel that releases
    the GIL scans one chunk while the other workers read theirs, so reading and scanning
    overlap and chunks small enough for the CPU caches are scanned from them).
    ``posix_fadvise(WILLNEED)`` asks the kernel for the chunks about ``READ_AHEAD`` bytes
    ahead (a cold query reads in large I/Os). Memory: ``workers`` buffers."""
    dtype = np.dtype(dtype)
    rows = [int(r) for r in rows]
    k, isz = len(rows), dtype.itemsize
    tasks = list(tasks)
    workers = max(1, min(int(workers), len(tasks)))
    opened = [h if isinstance(h, FileHandle) else FileHandle(os.fspath(h)) for h, _, _ in handles]
    fds = [h.fileno() for h in opened]
    heads = [int(hd) for _, hd, _ in handles]
    row_bytes = [int(n) * isz for _, _, n in handles]
    will = getattr(os, "POSIX_FADV_WILLNEED", None)
    ahead = max(1, READ_AHEAD // max(1, k * int(chunk) * isz))
    out = [None] * len(tasks)
    lock = threading.Lock()
    state = {"next": 0, "advised": 0}

    def advise_to(i):  # called under the lock
        i = min(i, len(tasks))
        while state["advised"] < i:
            s, c0, m = tasks[state["advised"]]
            for r in rows:
                _fadvise(fds[s], heads[s] + r * row_bytes[s] + c0 * isz, m * isz, will)
            state["advised"] += 1

    def work():
        buf = np.empty(k * int(chunk) * isz, np.uint8)
        while True:
            with lock:
                i = state["next"]
                if i >= len(tasks):
                    return
                state["next"] = i + 1
                advise_to(i + ahead)
            s, c0, m = tasks[i]
            raw = _read_rows(fds[s], heads[s], row_bytes[s], rows, c0, m, isz, buf)
            out[i] = fn(s, c0, raw.view(dtype).reshape(k, m))

    try:
        if workers == 1:
            work()
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for f in [pool.submit(work) for _ in range(workers)]:
                    f.result()
    finally:
        del opened  # closes the files opened here
    return out


def write_streamed(dst: str, blocks, n_probes: int, n_cols: int, dtype) -> None:
    """Write ``[n_probes, b]`` blocks (in column order, ``n_cols`` in all) into a new
    ``.npy`` file ``dst`` through a temporary file that is fsynced and renamed."""
    from zooql.errors import StorageError

    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npy", dir=os.path.dirname(dst) or ".")
    os.close(fd)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(n_probes, n_cols))
        pos = 0
        for b in blocks:
            b = np.asarray(b)
            if b.ndim != 2 or b.shape[0] != n_probes or pos + b.shape[1] > n_cols:
                raise StorageError("streamed descriptor blocks do not match n_probes / n_cols")
            if not np.isfinite(b).all():
                raise StorageError("descriptor block contains NaN or infinity")
            out[:, pos:pos + b.shape[1]] = b
            pos += b.shape[1]
        if pos != n_cols:
            raise StorageError(f"streamed {pos} columns, expected {n_cols}")
        out.flush()
        del out
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def positions_in(pos: np.ndarray, c0: int, m: int) -> np.ndarray:
    """The entries of the sorted column positions ``pos`` that fall in the chunk
    ``[c0, c0 + m)``, relative to ``c0`` (empty when none do)."""
    lo, hi = np.searchsorted(pos, [c0, c0 + m])
    return pos[lo:hi] - c0


def npy_offset(path: str) -> int:
    """Byte offset of the array data in a ``.npy`` file."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(f)
        return f.tell()


def npy_header_bytes(dtype, shape) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                               "fortran_order": False, "shape": tuple(int(s) for s in shape)})
    return buf.getvalue()


def write_compacted(dst: str, parts, n_probes: int, dtype) -> int:
    """Write the kept columns of ``parts`` into a new ``.npy`` file ``dst`` (atomically).

    ``parts``: ``(path, header_offset, n_cols, keep)`` per source segment, in order;
    ``keep`` is a sorted array of column positions to copy, or None for all.
    Returns the number of columns written."""
    dtype = np.dtype(dtype)
    isz = dtype.itemsize
    total = sum(n if keep is None else int(keep.shape[0]) for _, _, n, keep in parts)
    head = npy_header_bytes(dtype, (n_probes, total))
    out_row = total * isz
    slab = max(1, SLAB_BYTES // (n_probes * isz))
    fd_tmp, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npy", dir=os.path.dirname(dst) or ".")
    try:
        os.pwrite(fd_tmp, head, 0)
        os.ftruncate(fd_tmp, len(head) + n_probes * out_row)
        pos = 0
        buf = np.empty(n_probes * slab * isz, np.uint8)
        rows = range(n_probes)
        for path, header, n_cols, keep in parts:
            fd = os.open(path, os.O_RDONLY)
            try:
                for c0 in range(0, n_cols, slab):
                    m = min(slab, n_cols - c0)
                    sel = None
                    if keep is not None:
                        sel = positions_in(keep, c0, m)
                        if sel.size == 0:
                            continue
                    raw = _read_rows(fd, header, n_cols * isz, rows, c0, m, isz, buf).view(dtype)
                    block = raw if sel is None or sel.shape[0] == m else raw[:, sel]
                    w = block.shape[1]
                    data = np.ascontiguousarray(block).view(np.uint8)
                    for r in rows:
                        os.pwrite(fd_tmp, memoryview(data[r]), len(head) + r * out_row + pos * isz)
                    pos += w
                    if FAULT is not None:
                        FAULT("write", pos)
            finally:
                os.close(fd)
        os.fsync(fd_tmp)
        os.close(fd_tmp)
        fd_tmp = None
        if FAULT is not None:
            FAULT("rename", pos)
        os.replace(tmp, dst)
    except BaseException:
        if fd_tmp is not None:
            os.close(fd_tmp)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return total
