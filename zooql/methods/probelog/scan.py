"""Compiled scan kernels of ProbeLog search (numba, optional; numpy fallbacks): dense and
candidate-list asymmetric scans with a running top-k, and all-distances, over probe-major
float16/float32 descriptor blocks. :mod:`zooql.methods.probelog.kernels` calls them."""
from __future__ import annotations

import os

import numpy as np

_PARALLEL_MIN_WORK = 1 << 20
_BLOCK = 4096  # columns per accumulation block (float32 accumulators stay in L1)


# --------------------------------------------------------------------------------------
# compiled kernels (numba, optional)
# --------------------------------------------------------------------------------------
HAVE_NUMBA = False
if os.environ.get("ZOOQL_NO_NUMBA", "") not in ("1", "true", "yes"):
    try:  # pragma: no cover - exercised whenever numba is installed
        import numba
        from numba import njit, prange, types
        from numba.extending import intrinsic, overload
        from llvmlite import ir as _llir

        HAVE_NUMBA = True
    except Exception:  # pragma: no cover
        HAVE_NUMBA = False

if HAVE_NUMBA:  # pragma: no branch

    @intrinsic
    def _half_bits_to_f32(typingctx, x):
        """uint16 holding IEEE half bits -> float32 (LLVM fpext; vcvtph2ps on F16C CPUs)."""
        if x != types.uint16:
            return None
        sig = types.float32(types.uint16)

        def codegen(context, builder, signature, args):
            h = builder.bitcast(args[0], _llir.HalfType())
            return builder.fpext(h, _llir.FloatType())

        return sig, codegen

    def _to_f32(x):  # pragma: no cover - replaced by the overload inside numba
        return np.float32(x)

    @overload(_to_f32, inline="always")
    def _to_f32_ov(x):
        if x == types.uint16:
            return lambda x: _half_bits_to_f32(x)
        return lambda x: np.float32(x)

    @njit(inline="always")
    def _heap_push_replace(hd, hi, d, i):
        """Replace the root of a max-heap keyed on (d, i) and sift down."""
        n = hd.shape[0]
        pos = 0
        while True:
            left = 2 * pos + 1
            if left >= n:
                break
            right = left + 1
            child = left
            if right < n and (hd[right] > hd[left] or (hd[right] == hd[left] and hi[right] > hi[left])):
                child = right
            if hd[child] > d or (hd[child] == d and hi[child] > i):
                hd[pos] = hd[child]
                hi[pos] = hi[child]
                pos = child
            else:
                break
        hd[pos] = d
        hi[pos] = i

    def _scan_dense_impl(X, probes, q, top, nchunks, blk):
        N = X.shape[1]
        k = probes.shape[0]
        out_d = np.full((nchunks, top), np.inf, dtype=np.float32)
        out_i = np.full((nchunks, top), -1, dtype=np.int64)
        chunk = (N + nchunks - 1) // nchunks
        for t in prange(nchunks):
            c0 = t * chunk
            c1 = min(N, c0 + chunk)
            acc = np.empty(blk, dtype=np.float32)
            hd = out_d[t]
            hi = out_i[t]
            b0 = c0
            while b0 < c1:
                m = min(blk, c1 - b0)
                for c in range(m):
                    acc[c] = 0.0
                for j in range(k):
                    r = X[probes[j], b0:b0 + m]  # slice: lets LLVM vectorise
                    qj = q[j]
                    for c in range(m):
                        d = _to_f32(r[c]) - qj
                        acc[c] += d * d
                thr = hd[0]
                for c in range(m):
                    if acc[c] < thr:
                        _heap_push_replace(hd, hi, acc[c], b0 + c)
                        thr = hd[0]
                b0 += blk
        return out_d, out_i

    def _scan_cands_impl(X, probes, q, cols, top, nchunks, blk):
        M = cols.shape[0]
        k = probes.shape[0]
        out_d = np.full((nchunks, top), np.inf, dtype=np.float32)
        out_i = np.full((nchunks, top), -1, dtype=np.int64)
        chunk = (M + nchunks - 1) // nchunks
        for t in prange(nchunks):
            c0 = t * chunk
            c1 = min(M, c0 + chunk)
            acc = np.empty(blk, dtype=np.float32)
            hd = out_d[t]
            hi = out_i[t]
            b0 = c0
            while b0 < c1:
                m = min(blk, c1 - b0)
                for c in range(m):
                    acc[c] = 0.0
                cc = cols[b0:b0 + m]
                for j in range(k):
                    row = X[probes[j]]
                    qj = q[j]
                    for c in range(m):
                        d = _to_f32(row[cc[c]]) - qj
                        acc[c] += d * d
                thr = hd[0]
                for c in range(m):
                    if acc[c] < thr:
                        _heap_push_replace(hd, hi, acc[c], cols[b0 + c])
                        thr = hd[0]
                b0 += blk
        return out_d, out_i

    def _dist_all_impl(X, probes, q, out, nchunks, blk):
        N = X.shape[1]
        k = probes.shape[0]
        chunk = (N + nchunks - 1) // nchunks
        for t in prange(nchunks):
            c0 = t * chunk
            c1 = min(N, c0 + chunk)
            b0 = c0
            while b0 < c1:
                m = min(blk, c1 - b0)
                o = out[b0:b0 + m]
                for c in range(m):
                    o[c] = 0.0
                for j in range(k):
                    r = X[probes[j], b0:b0 + m]
                    qj = q[j]
                    for c in range(m):
                        d = _to_f32(r[c]) - qj
                        o[c] += d * d
                b0 += blk
        return out

    _jit_par = dict(parallel=True, fastmath=True, nogil=True, cache=True)
    _jit_ser = dict(parallel=False, fastmath=True, nogil=True, cache=True)
    _scan_dense_par = njit(**_jit_par)(_scan_dense_impl)
    _scan_dense_ser = njit(**_jit_ser)(_scan_dense_impl)
    _scan_cands_par = njit(**_jit_par)(_scan_cands_impl)
    _scan_cands_ser = njit(**_jit_ser)(_scan_cands_impl)
    _dist_all_par = njit(**_jit_par)(_dist_all_impl)
    _dist_all_ser = njit(**_jit_ser)(_dist_all_impl)


def _kernel_view(X: np.ndarray) -> np.ndarray:
    """A plain C-contiguous ndarray view the kernels accept (float16 viewed as uint16)."""
    X = np.asarray(X)  # drops np.memmap subclass, keeps the mapping
    if X.ndim != 2:
        raise ValueError(f"descriptor store must be 2-D [n_probes, n_columns], got {X.shape}")
    if X.dtype == np.float16:
        X = X.view(np.uint16)
    elif X.dtype != np.float32:
        X = X.astype(np.float32)
    if not X.flags.c_contiguous:
        X = np.ascontiguousarray(X)
    return X


def _threads() -> int:
    if HAVE_NUMBA:
        return int(numba.get_num_threads())
    return 1


def _finish(out_d: np.ndarray, out_i: np.ndarray, top: int):
    d = out_d.ravel()
    i = out_i.ravel()
    ok = i >= 0
    d, i = d[ok], i[ok]
    order = np.lexsort((i, d))[:top]
    return i[order], d[order]


def _numpy_scan(X: np.ndarray, probes: np.ndarray, q: np.ndarray, top: int,
                cols: np.ndarray | None, chunk: int = 1 << 16):
    """Chunked numpy fallback: returns (positions, squared distances), (d, pos)-sorted."""
    X = np.asarray(X)
    best_d = np.empty(0, np.float32)
    best_i = np.empty(0, np.int64)
    n_cols = X.shape[1] if cols is None else cols.shape[0]
    qq = q.astype(np.float32)[:, None]
    for s in range(0, n_cols, chunk):
        e = min(n_cols, s + chunk)
        if cols is None:
            R = X[probes, s:e].astype(np.float32)
            pos = np.arange(s, e, dtype=np.int64)
        else:
            pos = cols[s:e]
            R = X[probes][:, pos].astype(np.float32) if len(probes) * (e - s) > 0 else np.zeros((len(probes), 0), np.float32)
        diff = R - qq
        d = np.zeros(e - s, np.float32)
        for j in range(diff.shape[0]):  # sequential over probes, like the kernel
            d += diff[j] * diff[j]
        if d.shape[0] > top:
            part = np.argpartition(d, top - 1)[:top]
            # keep ties at the boundary deterministic: include all equal to the cut
            cut = d[part].max()
            part = np.nonzero(d <= cut)[0]
            d, pos = d[part], pos[part]
        best_d = np.concatenate([best_d, d])
        best_i = np.concatenate([best_i, pos])
        order = np.lexsort((best_i, best_d))[:top]
        best_d, best_i = best_d[order], best_i[order]
    return best_i, best_d


def _scan_array(X: np.ndarray, probes: np.ndarray, q: np.ndarray, top: int,
                cols: np.ndarray | None = None, *, use_numba: bool | None = None, serial: bool = False):
    """Top-``top`` smallest squared distances over one 2-D probe-major array.

    ``cols`` (sorted int64 positions) restricts the scan; ``serial`` keeps the kernel on
    the calling thread (the streamed scan's workers).  Returns (positions, sq dist).
    """
    if top <= 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    q = np.ascontiguousarray(q, dtype=np.float32)
    probes = np.ascontiguousarray(probes, dtype=np.int64)
    n_cols = X.shape[1] if cols is None else cols.shape[0]
    if n_cols == 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    if use_numba is None:
        use_numba = HAVE_NUMBA
    if not use_numba:
        return _numpy_scan(X, probes, q, top, cols)
    Xk = _kernel_view(X)
    work = n_cols * probes.shape[0]
    parallel = not serial and work >= _PARALLEL_MIN_WORK and _threads() > 1
    nchunks = max(1, _threads() * 4) if parallel else 1
    nchunks = min(nchunks, max(1, n_cols // 256))
    if cols is None:
        fn = _scan_dense_par if parallel else _scan_dense_ser
        out_d, out_i = fn(Xk, probes, q, int(top), nchunks, _BLOCK)
    else:
        cols = np.ascontiguousarray(cols, dtype=np.int64)
        fn = _scan_cands_par if parallel else _scan_cands_ser
        out_d, out_i = fn(Xk, probes, q, cols, int(top), nchunks, _BLOCK)
    return _finish(out_d, out_i, top)


def _dist_array(X: np.ndarray, probes: np.ndarray, q: np.ndarray) -> np.ndarray:
    """All squared distances over one 2-D array ``[n, N] -> [N]`` (float32)."""
    q = np.ascontiguousarray(q, dtype=np.float32)
    probes = np.ascontiguousarray(probes, dtype=np.int64)
    N = X.shape[1]
    if N == 0:
        return np.empty(0, np.float32)
    if not HAVE_NUMBA:
        out = np.zeros(N, np.float32)
        for s in range(0, N, 1 << 16):
            e = min(N, s + (1 << 16))
            R = np.asarray(X[probes, s:e], dtype=np.float32) - q[:, None]
            for j in range(R.shape[0]):
                out[s:e] += R[j] * R[j]
        return out
    Xk = _kernel_view(X)
    parallel = N * probes.shape[0] >= _PARALLEL_MIN_WORK and _threads() > 1
    nchunks = max(1, _threads() * 4) if parallel else 1
    out = np.empty(N, np.float32)
    (_dist_all_par if parallel else _dist_all_ser)(Xk, probes, q, out, nchunks, _BLOCK)
    return out


def scan_streamed(segments, dtype, probes: np.ndarray, q: np.ndarray, top: int, *, chunk: int | None = None,
                  workers: int | None = None, use_numba: bool | None = None) -> list:
    """:func:`_scan_array` over segment files read in column chunks with ``pread``
    (:func:`zooql.methods.probelog.segio.map_row_chunks`): the same results, with the
    descriptor data held at once bounded by ``segio.SCAN_BUDGET`` whatever the size.

    ``segments``: per segment ``(src, header, n_cols, pos, live)`` where ``pos`` holds
    sorted positions to restrict to and ``live`` a boolean mask of live columns (either
    may be None). ``workers`` threads (default ``segio.SCAN_WORKERS``) each read a chunk
    into their own buffer and scan it there with the serial kernel (with two, reading one
    chunk overlaps scanning another). Chunks with no position to scan are not read. Returns
    ``(positions, squared distances)`` per segment, each (d, position)-sorted, at most
    ``top``."""
    from zooql.methods.probelog import segio

    dtype = np.dtype(dtype)
    k = int(probes.shape[0])
    workers = max(1, int(workers or segio.SCAN_WORKERS))
    chunk = int(chunk or segio.chunk_columns(k, dtype.itemsize, workers=workers))
    tasks, sels = [], []
    for s, (_, _, n_cols, pos, live) in enumerate(segments):
        for c0 in range(0, int(n_cols), chunk):
            m = min(chunk, int(n_cols) - c0)
            sel = None
            if pos is not None:
                sel = segio.positions_in(pos, c0, m)
            elif live is not None:
                lv = live[c0:c0 + m]
                if not lv.all():
                    sel = np.nonzero(lv)[0].astype(np.int64)
            if sel is not None and sel.size == 0:
                continue
            tasks.append((s, c0, m))
            sels.append(sel)
    sel_of = {(s, c0): sel for (s, c0, _), sel in zip(tasks, sels)}
    local = np.arange(k, dtype=np.int64)

    def scan(s, c0, block):
        li, ld = _scan_array(block, local, q, top, sel_of[(s, c0)], use_numba=use_numba, serial=True)
        return li + c0, ld

    handles = [(src, header, n_cols) for src, header, n_cols, _, _ in segments]
    res = segio.map_row_chunks(handles, tasks, probes, dtype, scan, workers=workers, chunk=chunk)
    per = [([], []) for _ in segments]
    for (s, _, _), (li, ld) in zip(tasks, res):
        per[s][0].append(li)
        per[s][1].append(ld)
    out = []
    for ii, dd in per:
        if not ii:
            out.append((np.empty(0, np.int64), np.empty(0, np.float32)))
            continue
        i, d = np.concatenate(ii), np.concatenate(dd)
        order = np.lexsort((i, d))[:top]
        out.append((i[order], d[order]))
    return out
