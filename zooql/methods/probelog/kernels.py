"""ProbeLog descriptors and discrepancies (Kahana et al., "ProbeLog: Probing Logits for
Model Search").

Vocabulary
----------
* **Probing** a model runs ``n`` fixed probe images through it and keeps the raw logits,
  a matrix ``[n probes x L logits]``.
* The **descriptor** of one logit is its column z-normalised across the probes
  (Eq. 5): ``(x - mean) / std``; a constant column (std == 0) becomes all zeros.
  Every non-constant descriptor therefore has squared L2 norm exactly ``n``.
* The **asymmetric discrepancy** (Eq. 3) between a query descriptor ``q`` and a gallery
  descriptor ``g``: take the ``k`` probes on which ``q`` is largest (its top-k probes)
  and compute the L2 distance between ``q`` and ``g`` over those probes only.  It is
  asymmetric because only the *query's* strongest probes matter.
* ``full`` is the symmetric baseline: the L2 distance over all ``n`` probes (the same as
  the asymmetric discrepancy with ``k = n``).
* ``model`` is a model-level baseline, see :func:`model_search`.
* Zero-shot text: the descriptor of a text is the z-normalised vector of similarities
  between its text embedding and each probe's image embedding (:func:`text_descriptor`).

All distances returned are plain L2 distances (square root of the sum of squared
differences), sorted ascending; ties are broken by the lower column id.

Storage and speed
-----------------
Gallery descriptors are stored probe-major (one contiguous row per probe over all
logits), see :class:`zooql.methods.probelog.descriptors.DescriptorMatrix`.  An asymmetric query
therefore reads only its ``k`` probe rows: ``k * N`` values.  The scan is a compiled
numba kernel, parallel over column chunks, that fuses the float16 -> float32
conversion (an LLVM ``fpext half`` that becomes ``vcvtph2ps``), the squared-difference
accumulation and a per-chunk top-``top`` heap, so no ``[k, N]`` temporary is ever
materialised.  Without numba the same results come from a chunked numpy path
(slower, identical up to float rounding).
"""
from __future__ import annotations

import numpy as np

from zooql.methods.probelog.scan import (  # noqa: F401  (HAVE_NUMBA is part of this module's API)
    HAVE_NUMBA, _dist_array, _finish, _kernel_view, _numpy_scan, _scan_array, _threads, scan_streamed,
)

__all__ = [
    "zscore_columns",
    "text_descriptor",
    "top_probes",
    "asymmetric_search",
    "full_search",
    "model_search",
    "all_distances",
    "reference_search",
    "HAVE_NUMBA",
    "DEFAULT_K_PROBES",
    "default_k_probes",
    "probe_logits",
    "probe_and_store",
]

#: Smallest default number of query probes for the asymmetric discrepancy; the default
#: grows with the probe set, see :func:`default_k_probes`.
DEFAULT_K_PROBES = 20


def default_k_probes(n_probes: int) -> int:
    """The default ``topk_probes`` of a probe set of ``n_probes``: ``max(20, n // 10)``
    (never more than ``n``).

    Chosen from the two quality benchmarks (benchmarks/RESULTS.md): on the Fashion-MNIST
    hub k = 20 is best with 100 probes and k = 50-100 with 500-1,000 natural probes, and
    on the real EfficientNet-Lite0/1/2 hub accuracy keeps rising with k (k = 20: 0.52
    top-1 at 1,000-2,000 probes, k = 100-200: 0.67-0.69, full: 0.75).  A tenth of the
    probes is at or near the best measured k on the Fashion-MNIST hub and well ahead of a
    fixed 20 on the ImageNet models, while an exact scan still reads only a tenth of the
    descriptor matrix."""
    n = int(n_probes)
    return max(1, min(n, max(DEFAULT_K_PROBES, n // 10)))

# Work below these sizes (k * columns) runs single-threaded: a parallel region costs
# tens of microseconds to start.

#: A matrix whose ``k`` probe rows (over all segments) exceed this many bytes is scanned
#: in column chunks read with pread (bounded memory, :func:`scan_streamed`) instead of
#: through its memory maps; a candidate list sparser than ``STREAM_MIN_DENSITY`` of a
#: segment still goes through the map (it touches only the candidates' pages).
STREAM_MIN_BYTES = 64 << 20
STREAM_MIN_DENSITY = 0.125


# --------------------------------------------------------------------------------------
# descriptors
# --------------------------------------------------------------------------------------
def zscore_columns(logits: np.ndarray) -> np.ndarray:
    """Z-normalise each column of a ``[n probes, L logits]`` matrix across probes.

    Returns float32 ``[n, L]``.  Statistics are computed in float64; population std
    (ddof=0).  Columns with zero (or non-finite) std become all zeros.
    """
    x = np.asarray(logits)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"logits must be [n_probes, n_logits], got shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError("need at least 2 probes to z-normalise")
    x = x.astype(np.float64, copy=False)
    mean = x.mean(axis=0, keepdims=True)
    std = x.std(axis=0, keepdims=True)
    bad = ~np.isfinite(std) | (std <= np.finfo(np.float64).tiny * 16) | (std <= 1e-12 * np.abs(mean))
    std = np.where(bad, 1.0, std)
    out = (x - mean) / std
    out[:, bad[0]] = 0.0
    return out.astype(np.float32)


def text_descriptor(similarities: np.ndarray) -> np.ndarray:
    """Descriptor of a text query: z-normalised similarities to each probe ``[n] -> [n]``.

    ``similarities[i]`` is e.g. the cosine similarity between the text embedding and the
    image embedding of probe ``i`` (or a teacher model's probe response for the class the
    text names).  Accepts ``[n]`` or ``[n, T]`` (T texts as columns).
    """
    s = np.asarray(similarities)
    if s.ndim == 1:
        return zscore_columns(s[:, None])[:, 0]
    return zscore_columns(s)


def top_probes(query: np.ndarray, k_probes: int) -> np.ndarray:
    """Indices of the query's ``k`` largest probes (ties: lower index), sorted ascending."""
    q = np.asarray(query, dtype=np.float32).ravel()
    k = int(min(max(1, k_probes), q.shape[0]))
    order = np.argsort(-q, kind="stable")[:k]
    return np.sort(order).astype(np.int64)


# --------------------------------------------------------------------------------------
# store adapters: a raw ndarray [n, N] or a DescriptorMatrix
# --------------------------------------------------------------------------------------
def _segments(store):
    """Yield (array [n, L], ids int64[L] or None for identity, live_positions or None)."""
    if isinstance(store, np.ndarray):
        if store.ndim != 2:
            raise ValueError(f"descriptor store must be [n_probes, n_columns], got {store.shape}")
        yield store, None, None
        return
    if hasattr(store, "iter_segments"):
        yield from store.iter_segments()
        return
    raise TypeError(f"unsupported descriptor store {type(store).__name__}")


def _n_probes(store) -> int:
    if isinstance(store, np.ndarray):
        return int(store.shape[0])
    return int(store.n_probes)


def _streams(k: int, n_cols: int, itemsize: int) -> bool:
    return int(k) * int(n_cols) * int(itemsize) > STREAM_MIN_BYTES


def _positions(cand: np.ndarray, ids, L: int, live) -> np.ndarray:
    """Positions in one segment of the (sorted) candidate ids that are in it and live."""
    if ids is None:
        pos = cand[(cand >= 0) & (cand < L)]
    elif L and ids[-1] - ids[0] + 1 == L:  # contiguous ids: positions by offset
        lo, hi = np.searchsorted(cand, [ids[0], ids[-1] + 1])
        pos = cand[lo:hi] - ids[0]
    else:
        p = np.searchsorted(ids, cand)
        inside = p < L
        p, c = p[inside], cand[inside]
        pos = p[ids[p] == c]
    if live is not None and pos.size:
        pos = pos[live[pos]]
    return pos


def _search(query: np.ndarray, store, probes: np.ndarray, top: int,
            candidates: np.ndarray | None, use_numba: bool | None = None):
    q_full = np.asarray(query, dtype=np.float32).ravel()
    n = _n_probes(store)
    if q_full.shape[0] != n:
        raise ValueError(f"query descriptor has {q_full.shape[0]} probes, store has {n}")
    top = int(top)
    if top <= 0:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    qk = q_full[probes]
    cand = None
    if candidates is not None:
        cand = np.asarray(candidates, dtype=np.int64).ravel()
        if cand.size > 1 and not (cand[1:] > cand[:-1]).all():  # skip the sort when sorted
            cand = np.unique(cand)
    files = list(store.segment_files()) if hasattr(store, "segment_files") else None
    stream = files is not None and _streams(probes.shape[0], sum(f[2] for f in files), store.dtype.itemsize)
    big = [stream] * len(files or ())
    if cand is None and hasattr(store, "prefetch") and not any(big):
        store.prefetch(probes)  # dense scans read whole rows: ask for them up front
    all_i, all_d = [], []
    streamed = []  # (segment index, ids, pos, live): scanned together, chunk by chunk, with pread
    for s, (X, ids, live) in enumerate(_segments(store)):
        L = X.shape[1]
        pos = None if cand is None else _positions(cand, ids, L, live)
        if pos is not None and pos.size == 0:
            continue
        if big and big[s] and (pos is None or pos.size >= STREAM_MIN_DENSITY * L):
            streamed.append((s, ids, pos, None if pos is not None else live))
            continue
        if pos is not None:
            li, ld = _scan_array(X, probes, qk, top, pos, use_numba=use_numba)
        elif live is not None:
            n_dead = int(L - live.sum())
            if n_dead == L:
                continue
            if n_dead <= 4 * top + 64:
                li, ld = _scan_array(X, probes, qk, top + n_dead, None, use_numba=use_numba)
                keep = live[li]
                li, ld = li[keep][:top], ld[keep][:top]
            else:
                li, ld = _scan_array(X, probes, qk, top, np.nonzero(live)[0].astype(np.int64),
                                     use_numba=use_numba)
        else:
            li, ld = _scan_array(X, probes, qk, top, None, use_numba=use_numba)
        all_i.append(li if ids is None else ids[li])
        all_d.append(ld)
    if streamed:
        segs = [(files[s][0], files[s][1], files[s][2], pos, live) for s, _, pos, live in streamed]
        for (_, ids, _, _), (li, ld) in zip(streamed, scan_streamed(segs, store.dtype, probes, qk, top,
                                                                    use_numba=use_numba)):
            all_i.append(li if ids is None else ids[li])
            all_d.append(ld)
    if not all_i:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    i = np.concatenate(all_i)
    d = np.concatenate(all_d)
    order = np.lexsort((i, d))[:top]
    return i[order].astype(np.int64), np.sqrt(np.maximum(d[order].astype(np.float64), 0.0))


def asymmetric_search(query: np.ndarray, store, k_probes: int = DEFAULT_K_PROBES, top: int = 10,
                      candidates: np.ndarray | None = None, *, use_numba: bool | None = None):
    """Rank gallery logits by the asymmetric discrepancy to ``query`` (Eq. 3).

    ``query``: descriptor ``[n]`` (see :func:`zscore_columns`, :func:`text_descriptor`).
    ``store``: a probe-major ``[n, N]`` array (float16/float32) or a DescriptorMatrix.
    ``candidates``: optional column ids to restrict to (a WHERE filter).
    Returns ``(column_ids, distances)``, at most ``top`` of each, ascending distance.
    """
    probes = top_probes(query, k_probes)
    return _search(query, store, probes, top, candidates, use_numba)


def full_search(query: np.ndarray, store, top: int = 10, candidates: np.ndarray | None = None,
                *, use_numba: bool | None = None):
    """Symmetric baseline: L2 distance over all probes.  Same return as asymmetric_search."""
    n = _n_probes(store)
    probes = np.arange(n, dtype=np.int64)
    return _search(query, store, probes, top, candidates, use_numba)


def reference_search(query: np.ndarray, store: np.ndarray, k_probes: int | None, top: int,
                     candidates: np.ndarray | None = None):
    """Straightforward numpy implementation (gather rows, squared differences, sort).

    The ground truth in tests and the baseline in benchmarks.  ``k_probes=None`` = full.
    """
    q = np.asarray(query, dtype=np.float32).ravel()
    X = np.asarray(store)
    probes = np.arange(X.shape[0]) if k_probes is None else top_probes(q, k_probes)
    R = X[probes].astype(np.float32)
    cols = np.arange(X.shape[1], dtype=np.int64)
    if candidates is not None:
        cols = np.unique(np.asarray(candidates, dtype=np.int64))
        R = R[:, cols]
    diff = R - q[probes][:, None]
    d = np.zeros(R.shape[1], np.float32)
    for j in range(diff.shape[0]):
        d += diff[j] * diff[j]
    order = np.lexsort((cols, d))[:top]
    return cols[order], np.sqrt(d[order].astype(np.float64))


def all_distances(query: np.ndarray, store, k_probes: int | None = DEFAULT_K_PROBES):
    """Distances from ``query`` to every live column: ``(column_ids, distances)``.

    ``k_probes=None`` uses all probes (``full``).  Column ids ascending.
    """
    q = np.asarray(query, dtype=np.float32).ravel()
    n = _n_probes(store)
    probes = np.arange(n, dtype=np.int64) if k_probes is None else top_probes(q, k_probes)
    qk = q[probes]
    ids_out, d_out = [], []
    for X, ids, live in _segments(store):
        d = _dist_array(X, probes, qk)
        cid = np.arange(X.shape[1], dtype=np.int64) if ids is None else ids
        if live is not None:
            d, cid = d[live], cid[live]
        ids_out.append(cid)
        d_out.append(d)
    if not ids_out:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    cid = np.concatenate(ids_out)
    d = np.sqrt(np.maximum(np.concatenate(d_out).astype(np.float64), 0.0))
    return cid, d


def model_search(query: np.ndarray, store, column_model_ids, top: int = 10, *,
                 k_probes: int | None = None, candidates: np.ndarray | None = None):
    """Model-level baseline: rank gallery *models* rather than logits.

    ``column_model_ids``: array indexed by column id giving the model id of each column
    (negative = no model / dropped).  ``query``:

    * a single descriptor ``[n]``: a model's score is the distance of its **best
      matching logit** (min over its logits);
    * a query model's descriptors ``[n, Lq]``: a model's score is the **mean over the
      query model's logits of the distance to their best matching logit** in that model
      (a one-sided Chamfer distance between the two logit sets).

    Distances use all probes (``k_probes=None``, the symmetric model-level comparison)
    or the asymmetric discrepancy with ``k_probes``.  Returns ``(model_ids, scores)``
    ascending.  ``candidates`` restricts to these column ids.
    """
    mids_all = np.asarray(column_model_ids, dtype=np.int64).ravel()
    Q = np.asarray(query, dtype=np.float32)
    if Q.ndim == 1:
        Q = Q[:, None]
    cand = None if candidates is None else np.unique(np.asarray(candidates, dtype=np.int64))
    total = None
    model_keys = None
    for j in range(Q.shape[1]):
        cid, d = all_distances(Q[:, j], store, k_probes)
        if cand is not None:
            keep = np.isin(cid, cand)
            cid, d = cid[keep], d[keep]
        mids = np.where(cid < mids_all.shape[0], mids_all[np.minimum(cid, mids_all.shape[0] - 1)], -1)
        ok = mids >= 0
        cid, d, mids = cid[ok], d[ok], mids[ok]
        if model_keys is None:
            model_keys, inv = np.unique(mids, return_inverse=True)
            order = np.argsort(inv, kind="stable")
            bounds = np.r_[0, np.cumsum(np.bincount(inv, minlength=model_keys.shape[0]))[:-1]]
            grp = (order, bounds)
        order, bounds = grp
        if model_keys.shape[0] == 0:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        best = np.minimum.reduceat(d[order], bounds)
        total = best if total is None else total + best
    scores = total / Q.shape[1]
    order = np.lexsort((model_keys, scores))[:int(top)]
    return model_keys[order], scores[order]


# --------------------------------------------------------------------------------------
# probing (torch, imported lazily)
# --------------------------------------------------------------------------------------
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def probe_logits(model, probes: np.ndarray, *, batch_size: int = 64,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD, channels_first: bool = True,
                 device: str = "cpu") -> np.ndarray:
    """Run uint8 probe images through ``model`` and return raw logits ``[n, L]`` float32.

    ``probes``: uint8 ``[n, H, W, C]`` (or ``[n, H, W]`` grayscale).  Each batch is
    converted on the fly: ``(x / 255 - mean) / std`` per channel, NHWC -> NCHW (if
    ``channels_first``), as one fused multiply-add on a float32 tensor.  ``model`` is any
    callable torch module returning ``[batch, L]`` logits (or a tuple whose first item is).
    """
    import torch

    imgs = np.asarray(probes)
    if imgs.dtype != np.uint8:
        raise ValueError("probes must be uint8 images")
    if imgs.ndim == 3:
        imgs = imgs[..., None]
    n, _, _, C = imgs.shape
    m = np.broadcast_to(np.asarray(mean, np.float32), (C,))
    s = np.broadcast_to(np.asarray(std, np.float32), (C,))
    scale = torch.from_numpy((1.0 / (255.0 * s)).astype(np.float32))
    shift = torch.from_numpy((-m / s).astype(np.float32))
    if channels_first:
        scale, shift = scale.view(1, C, 1, 1), shift.view(1, C, 1, 1)
    out = None
    with torch.inference_mode():
        for b0 in range(0, n, batch_size):
            xb = imgs[b0:b0 + batch_size]
            if channels_first:  # uint8 NHWC -> NCHW copy (cheap: 1 byte per value)
                xb = np.ascontiguousarray(xb.transpose(0, 3, 1, 2))
            x = torch.from_numpy(xb).to(torch.float32)
            x.mul_(scale).add_(shift)
            if device != "cpu":
                x = x.to(device, non_blocking=True)
            y = model(x)
            if isinstance(y, (tuple, list)):
                y = y[0]
            y = y.reshape(y.shape[0], -1).float().cpu().numpy()
            if out is None:
                out = np.empty((n, y.shape[1]), np.float32)
            out[b0:b0 + y.shape[0]] = y
    if out is None:
        return np.empty((0, 0), np.float32)
    return out


def probe_and_store(model, probes: np.ndarray, store, **kw) -> tuple[int, int]:
    """Probe ``model`` and append its logit descriptors to a DescriptorMatrix.

    Returns the new column ids ``(start, end)`` (logit ``j`` is column ``start + j``).
    """
    return store.append_columns(zscore_columns(probe_logits(model, probes, **kw)))

