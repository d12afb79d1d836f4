"""FIND over shards: the exact scan of a descriptor matrix split into column shards that
executor workers load and keep (Ray actors; or this process with the local executor),
the query scattered to every shard and the per-shard exact top-k merged on the driver
(:mod:`zooql.runtime.shards` holds the generic pieces).

A shard is a contiguous range of the matrix's columns in segment order: a list of pieces
``(segment file, start, stop)``. Segment files are immutable (a new one has a new name),
so a worker keeps a loaded piece until its segment leaves the matrix; deleted
(tombstoned) columns and columns outside the gallery are excluded per query by the
positions the driver sends, as the local scan excludes them. Results equal the local
exact scan: the same ids, distances and order (ties by the lower column id).
"""
from __future__ import annotations

import os

import numpy as np

from zooql.runtime import shards as SH

SCAN = "zooql.methods.probelog.find_shards:scan_shard"


def shard_settings(get) -> tuple[int | None, float | None]:
    """(``find_shards``, ``find_shard_mb``) read through ``get(key, default)``."""
    n = get("find_shards", None)
    mb = get("find_shard_mb", None)
    return (None if n is None else int(n)), (None if mb is None else float(mb))


def plan(dm, n: int) -> list[dict]:
    """The shards of ``dm``: per shard its pieces (what a worker loads) and, for the
    driver, each piece's column ids and live mask."""
    segs = list(dm.segment_files())
    out = []
    for pieces in SH.plan_shards([s[2] for s in segs], n):
        spec, ids, live = [], [], []
        for s, a, b in pieces:
            fd, header, n_cols, seg_ids, seg_live = segs[s]
            spec.append({"path": fd.path, "header": int(header), "n_cols": int(n_cols), "start": a, "stop": b})
            ids.append(np.asarray(seg_ids[a:b], np.int64))
            live.append(None if seg_live is None else np.asarray(seg_live[a:b], bool))
        out.append({"pieces": spec, "ids": ids, "live": live})
    return out


def _allowed(ids: np.ndarray, live, gallery: np.ndarray | None):
    """Positions of a piece to scan (None: every column), or an empty array (skip it)."""
    ok = None if live is None else live.copy()
    if gallery is not None:
        g = np.isin(ids, gallery, assume_unique=True)
        ok = g if ok is None else ok & g
    if ok is None or ok.all():
        return None
    return np.nonzero(ok)[0].astype(np.int64)


def wanted(ctx, nbytes: int, forced: int | None, limit_mb: float | None) -> int:
    """Shards for a store of ``nbytes`` under this statement's settings, before the
    executor exists (0: scan on the driver; the count may grow to the number of workers)."""
    from zooql.runtime.executors import executor_config

    cfg = executor_config(ctx.setting)
    return SH.shard_count(nbytes, executor=cfg["executor"], workers=1, forced=forced, limit_mb=limit_mb)


def search(ctx, dm, q: np.ndarray, kp: int | None, top: int, gallery: np.ndarray | None, *,
           forced: int | None, limit_mb: float | None):
    """The exact top-``top`` columns of ``dm`` (restricted to the ``gallery`` column ids)
    through the statement's executor: ``((ids, distances), info)``; info says how many
    shards and workers took part. ``kp`` None: all probes (method ``full``)."""
    from zooql.runtime.executors import Job, executor_for

    executor = executor_for(ctx, models=False)
    n_shards = SH.shard_count(dm.nbytes(), executor=executor.name, workers=executor.workers, forced=forced,
                              limit_mb=limit_mb)
    shards = plan(dm, max(1, n_shards))
    in_memory = executor.name != "local"
    shard_bytes = max((sum(p["stop"] - p["start"] for p in s["pieces"]) for s in shards), default=0)
    shard_bytes *= dm.n_probes * dm.dtype.itemsize
    per_worker = -(-len(shards) // max(1, executor.workers))
    keep = int(shard_bytes * per_worker * 1.25) if in_memory else 0
    gal = None if gallery is None else np.unique(np.asarray(gallery, np.int64))
    jobs, maps = [], {}
    for i, s in enumerate(shards):
        pos = [_allowed(ids, live, gal) for ids, live in zip(s["ids"], s["live"])]
        pieces = [dict(p, positions=ps) for p, ps in zip(s["pieces"], pos) if ps is None or ps.size]
        if not pieces:
            continue
        maps[i] = [ids for ids, ps in zip(s["ids"], pos) if ps is None or ps.size]
        jobs.append(Job(i, {"name": f"shard{i}"}, fn=SCAN, route=i,
                        args={"q": np.ascontiguousarray(q, np.float32), "kp": kp, "top": int(top), "pieces": pieces, "n_probes": dm.n_probes,
                              "dtype": dm.dtype.name, "keep_bytes": keep,
                              "plan": [p["path"] for s2 in shards for p in s2["pieces"]]}))
    parts = []
    for res in executor.map(jobs):
        out = res.unwrap()
        for ids, (pos, d) in zip(maps[res.key], out):
            parts.append((ids[np.asarray(pos, np.int64)], d))
    info = {"executor": executor.name, "shards": len(shards), "workers": executor.workers}
    return SH.merge_topk(parts, top), info


def scan_shard(runtime, model: dict, args: dict, progress=None):
    """Worker function: per piece of the shard, the exact top-``top`` ``(positions in the
    piece, distances)`` of the query (pieces loaded once and kept when ``keep_bytes``)."""
    from zooql.methods.probelog import kernels as PL

    q = np.asarray(args["q"], np.float32)
    n_probes, dtype, keep = int(args["n_probes"]), np.dtype(args["dtype"]), int(args["keep_bytes"])
    plan_paths = set(args.get("plan") or ())
    if keep:
        # pieces of segments no longer in the matrix (merged, vacuumed) are dropped
        same_dirs = {os.path.dirname(p) for p in plan_paths}
        SH.HELD.forget(lambda k: k[0] in plan_paths or os.path.dirname(k[0]) not in same_dirs)
    out = []
    for p in args["pieces"]:
        key = (p["path"], p["header"], p["n_cols"], p["start"], p["stop"], n_probes, dtype.name)
        X = SH.HELD.get(key, lambda p=p: SH.read_columns(p["path"], p["header"], n_probes, p["n_cols"], dtype,
                                                          p["start"], p["stop"]), keep)
        cand = p.get("positions")
        if args["kp"] is None:
            ids, d = PL.full_search(q, X, int(args["top"]), candidates=cand)
        else:
            ids, d = PL.asymmetric_search(q, X, int(args["kp"]), int(args["top"]), candidates=cand)
        out.append((ids, d))
    return out
