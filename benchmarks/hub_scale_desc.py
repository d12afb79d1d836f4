"""Issue 14, descriptors at 10M logits: exact FIND scan vs the read-bandwidth limit, DROP of
10% of models then FIND (tombstones) and VACUUM, the reduced HNSW index's recall and memory.

    python benchmarks/hub_scale_desc.py --logits 10000000 --probes 1000

``rows(args) -> list[dict]`` (figure, baseline_s, zooql_s, ratio, target, met, peak_rss_mb,
note) is what benchmarks/hub_scale.py plugs in; each row runs in its own subprocess so its
peak RSS is its own. Synthetic float16 descriptors are generated under ``--cache``
(default ``$ZOOQL_CACHE`` or ~/.cache/zooql/bench) in 1M-column segments; delete them when
done (``--cleanup``). Timings are medians over ``--queries`` queries, ratios are against
baselines measured in the same run, on the same files:

* read-bandwidth limit: pread of exactly the bytes the scan touches (the query's k probe
  rows of every segment) into buffers, no arithmetic, the fastest of whole rows into one
  buffer (one thread) and the scan's own chunked reads with 1 and 2 threads -- cold (every segment file's pages
  dropped from the page cache with posix_fadvise(DONTNEED) before each query) and warm;
  the numpy sum of the same rows through the memory maps is reported in the note.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import resource
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

from zooql.methods.probelog import kernels as K  # noqa: E402
from zooql.methods.probelog import segio  # noqa: E402
from zooql.methods.probelog.descriptors import DescriptorMatrix  # noqa: E402

SEG = 1 << 20
LOGITS_PER_MODEL = 1000


def cache_dir(a) -> str:
    d = a.cache or os.environ.get("ZOOQL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "zooql", "bench")
    os.makedirs(d, exist_ok=True)
    return d


def _base(n_probes: int, cols: int, seed: int = 0) -> np.ndarray:
    """Structured descriptors: 4,096 concepts (a Gaussian prototype plus sparse strongly
    responding probes), each logit its concept's prototype plus noise, z-scored."""
    rng = np.random.default_rng(seed)
    nc = 4096
    proto = rng.standard_normal((n_probes, nc)).astype(np.float32) * 0.6
    proto += (rng.random((n_probes, nc)) < 0.02) * np.float32(4.0)
    x = proto[:, rng.integers(0, nc, cols)] + 0.8 * rng.standard_normal((n_probes, cols), dtype=np.float32)
    return K.zscore_columns(x).astype(np.float16)


def generate(path: str, n_logits: int, n_probes: int, seed: int = 0, base_cols: int = 1 << 17) -> DescriptorMatrix:
    """``n_logits`` columns in segments of 1M: the base block with its probe axis rolled by
    a different amount per 128k-column slab (distinct descriptors, cheap to make)."""
    meta = {"kind": "h14b-v1", "n_logits": n_logits, "n_probes": n_probes, "seed": seed}
    if os.path.exists(os.path.join(path, "MANIFEST.json")):
        dm = DescriptorMatrix.open(path, "r")
        if dm.meta == meta and dm.n_columns == n_logits:
            return dm
        shutil.rmtree(path)
    base = _base(n_probes, base_cols, seed)
    dm = DescriptorMatrix.create(path, n_probes, "float16", meta=meta)
    done, slab = 0, [0]

    def blocks(n):
        pos = 0
        while pos < n:
            b = min(base_cols, n - pos)
            yield np.roll(base[:, :b], 7 * slab[0] + 1, axis=0)
            slab[0] += 1
            pos += b

    while done < n_logits:
        n = min(SEG, n_logits - done)
        dm.append_columns_streaming(blocks(n), n)
        done += n
    return DescriptorMatrix.open(path, "r")


def queries(dm, n: int, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    cols = rng.choice(dm.column_ids(), n, replace=False)
    Q = np.asarray(dm.columns(np.sort(cols)), np.float32)
    return [K.zscore_columns(Q[:, j] + 0.5 * rng.standard_normal(Q.shape[0]).astype(np.float32))[:, 0]
            for j in range(n)]


def drop_cache(dm) -> None:
    for fh, _, _, _, _ in dm.segment_files():
        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def read_rows(dm, probes) -> int:
    """The bandwidth baseline: pread the k probe rows of every segment, whole rows into one
    reused buffer, one thread, no arithmetic."""
    isz = dm.dtype.itemsize
    buf = np.empty(max(L for _, _, L, _, _ in dm.segment_files()) * isz, np.uint8)
    n = 0
    for fh, header, L, _, _ in dm.segment_files():
        for r in np.asarray(probes).tolist():
            n += os.preadv(fh.fileno(), [memoryview(buf)[:L * isz]], header + r * L * isz)
    return n


def read_chunks(dm, probes, workers: int) -> int:
    """The same bytes read exactly as the scan reads them (its chunks, threads and
    read-ahead), with nothing done to them."""
    segs = [(fh, header, L) for fh, header, L, _, _ in dm.segment_files()]
    chunk = segio.chunk_columns(len(probes), dm.dtype.itemsize, workers=workers)
    tasks = [(s, c0, min(chunk, L - c0)) for s, (_, _, L) in enumerate(segs) for c0 in range(0, L, chunk)]
    return sum(segio.map_row_chunks(segs, tasks, probes, dm.dtype, lambda s, c0, b: b.size, workers=workers,
                                    chunk=chunk))


def bandwidth(dm, probes, cold: bool) -> tuple[float, str]:
    """The read-bandwidth limit: the fastest of whole-row preads (one thread) and the scan's
    own chunked preads with 1 and 2 threads, no arithmetic."""
    best = None
    for name, fn in (("whole rows, 1 thread", lambda: read_rows(dm, probes)),
                     ("chunks, 1 thread", lambda: read_chunks(dm, probes, 1)),
                     ("chunks, 2 threads", lambda: read_chunks(dm, probes, 2))):
        if cold:
            drop_cache(dm)
            t = _time(fn)
        else:
            t = min(_time(fn) for _ in range(2))
        if best is None or t < best[0]:
            best = (t, name)
    return best


def sum_rows_mmap(dm, probes) -> float:
    s = 0
    for X, _, _ in dm.iter_segments():
        s += int(np.asarray(X[probes]).view(np.uint16).sum(dtype=np.uint64))
    return float(s)


def _time(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_anon() -> float:
    """Anonymous resident MB now (without the memory-mapped descriptor pages, which the
    peak RSS counts while they are mapped but the kernel can drop at any time)."""
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("RssAnon:")) / 1024


# ---- rows (each run in its own process) --------------------------------------------------------------------

def row_exact(a) -> list[dict]:
    dm = generate(os.path.join(cache_dir(a), f"desc-{a.logits}x{a.probes}"), a.logits, a.probes)
    Qs = queries(dm, a.queries)
    K.asymmetric_search(Qs[0], dm, a.k, 20)  # compile / load the kernels
    t_cold, b_cold, t_warm, b_warm, mm_warm = [], [], [], [], []
    how = {"cold": [], "warm": []}
    for q in Qs:
        p = K.top_probes(q, a.k)
        t, h = bandwidth(dm, p, cold=True)
        b_cold.append(t)
        how["cold"].append(h)
        drop_cache(dm)
        t_cold.append(_time(lambda: K.asymmetric_search(q, dm, a.k, 20)))
        t, h = bandwidth(dm, p, cold=False)
        b_warm.append(t)
        how["warm"].append(h)
        t_warm.append(min(_time(lambda: K.asymmetric_search(q, dm, a.k, 20)) for _ in range(2)))
        mm_warm.append(_time(lambda: sum_rows_mmap(dm, p)))
    gb = a.k * a.logits * 2 / 1e9
    chunk_kb = segio.chunk_columns(a.k, 2) * a.k * 2 // 1024
    med = lambda x: float(np.median(x))  # noqa: E731
    out = []
    for kind, t, b, hw in (("warm page cache", t_warm, b_warm, how["warm"]),
                           ("cold: pages dropped before each query", t_cold, b_cold, how["cold"])):
        fastest = max(set(hw), key=hw.count)
        out.append({"figure": f"FIND exact asym k={a.k} at {a.logits / 1e6:g}M logits ({kind})",
                    "baseline_s": med(b), "zooql_s": med(t), "ratio": med(t) / med(b), "target": "<= 2x",
                    "met": med(t) / med(b) <= 2.0,
                    "note": f"{gb:.2f} GB touched of {dm.nbytes() / 1e9:.1f} GB, {dm.n_segments} segments; baseline "
                            f"= pread of the same rows, fastest of whole rows / the scan's chunks with 1 and 2 threads (mostly "
                            f"{fastest}; {gb / med(b):.2f} GB/s); scan chunk {chunk_kb} KiB x {segio.SCAN_WORKERS} thread(s); numpy sum of the rows through "
                            f"the memory maps (warm) {med(mm_warm):.3f} s; {a.queries} queries, medians"})
    return out


def row_drop(a) -> list[dict]:
    """Tombstone 10% of models (1,000 logits each), FIND, VACUUM, FIND; compare with the
    exact answer over the surviving columns and, at ``--fresh-logits``, a fresh build."""
    path = os.path.join(cache_dir(a), f"desc-{a.drop_logits}x{a.probes}")
    src = generate(path, a.drop_logits, a.probes)   # dropped from and vacuumed in place (disk)
    dm = DescriptorMatrix.open(path, "r+")
    n_models = a.drop_logits // LOGITS_PER_MODEL
    rng = np.random.default_rng(2)
    dropped = np.sort(rng.choice(n_models, n_models // 10, replace=False))
    dead = (dropped[:, None] * LOGITS_PER_MODEL + np.arange(LOGITS_PER_MODEL)).ravel()
    Qs = queries(src, a.queries)
    live = np.setdiff1d(np.arange(a.drop_logits), dead)
    ref = [K.asymmetric_search(q, src, a.k, 20, candidates=live) for q in Qs]  # every surviving column
    t_full = float(np.median([_time(lambda: K.asymmetric_search(q, src, a.k, 20)) for q in Qs]))
    fresh = None
    if a.drop_logits <= a.fresh_logits:
        fresh = DescriptorMatrix.create(path + "-fresh", a.probes, "float16")
        for X, ids, _ in src.iter_segments():
            keep = np.nonzero(np.isin(ids, live))[0]
            fresh.append_columns_streaming((X[:, keep[s:s + 65536]] for s in range(0, keep.size, 65536)), keep.size)
    before_files = {f: os.path.getsize(os.path.join(path, f)) for f in os.listdir(path) if f.startswith("seg-")}
    t_drop = _time(lambda: dm.delete_columns(dead))
    after_files = {f: os.path.getsize(os.path.join(path, f)) for f in os.listdir(path) if f.startswith("seg-")}
    tomb = [K.asymmetric_search(q, dm, a.k, 20) for q in Qs]
    t_tomb = float(np.median([_time(lambda: K.asymmetric_search(q, dm, a.k, 20)) for q in Qs]))
    t0 = time.perf_counter()
    st = dm.compact()
    t_vac = time.perf_counter() - t0
    vac = [K.asymmetric_search(q, dm, a.k, 20) for q in Qs]
    same = lambda x, y: all(np.array_equal(i[0], j[0]) and np.array_equal(i[1], j[1]) for i, j in zip(x, y))  # noqa: E731
    ok = same(tomb, ref) and same(vac, ref) and before_files == after_files
    note = (f"dropped {dropped.size:,} of {n_models:,} models ({dead.size:,} logits) in {t_drop:.2f} s, segment "
            f"files unchanged: {before_files == after_files}; results (ids and distances) equal the exact answer "
            f"over the survivors before and after VACUUM: {same(tomb, ref)}, {same(vac, ref)}; VACUUM "
            f"{t_vac:.1f} s, reclaimed {(st['bytes_before'] - st['bytes_after']) / 1e9:.2f} GB "
            f"({st['segments_before']} -> {st['segments_after']} segments)")
    if fresh is not None:
        # fresh ids are 0..n-1 over the survivors: map them back
        fr = [(live[i], d) for i, d in (K.asymmetric_search(q, fresh, a.k, 20) for q in Qs)]
        ok = ok and same(fr, ref)
        note += f"; equal to a freshly built matrix of the survivors: {same(fr, ref)}"
        shutil.rmtree(path + "-fresh", ignore_errors=True)
    shutil.rmtree(path, ignore_errors=True)  # consumed: the next run regenerates it
    return [{"figure": f"DROP 10% of models then FIND at {a.drop_logits / 1e6:g}M logits", "baseline_s": t_full,
             "zooql_s": t_tomb, "ratio": t_tomb / t_full, "target": "same results as a freshly built hub",
             "met": bool(ok), "note": note + f"; baseline = FIND before the drops; VACUUM time {t_vac:.1f} s"}]


def row_reduced(a) -> list[dict]:
    """The reduced index (``index = 'hnsw_reduced'``) over the first segment: its pool of
    candidates re-ranked exactly, as FIND does (query's top-``k`` probes), vs the exact scan."""
    from zooql.methods.probelog.store import INDEX_KINDS, new_index

    src = generate(os.path.join(cache_dir(a), f"desc-{a.logits}x{a.probes}"), a.logits, a.probes)
    X = next(src.iter_segments())[0]
    if a.reduced_logits > X.shape[1]:   # beyond the first segment: the whole store, as FIND sees it
        G, n = src, src.n_columns
    else:   # the first segment (1M columns) as it is on disk, memory-mapped; a smaller gallery is a copy
        n = X.shape[1] if a.reduced_logits >= X.shape[1] - X.shape[1] // 16 else min(a.reduced_logits, X.shape[1])
        G = np.ascontiguousarray(X[:, :n]) if n < X.shape[1] else X
    rss0 = _rss()
    t0 = time.perf_counter()
    idx = new_index("hnsw_reduced", a.probes).build_from_store(G)
    idx._lists()  # the posting lists (built on load too)
    t_build = time.perf_counter() - t0
    anon = _rss_anon()
    d = os.path.join(cache_dir(a), "reduced-index")
    idx.save(d)
    index_bytes = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    mem_bytes = idx._tops.nbytes + idx._labels.nbytes + idx._dead.nbytes + sum(x.nbytes for x in idx._lists())
    # queries: noisy copies of gallery columns (their neighbours are in the gallery)
    rng = np.random.default_rng(3)
    picked = np.sort(rng.choice(n, a.queries, replace=False))
    Q = np.asarray(G.columns(picked) if G is src else G[:, picked], np.float32)
    Qs = [K.zscore_columns(Q[:, j] + 0.5 * rng.standard_normal(Q.shape[0]).astype(np.float32))[:, 0]
          for j in range(a.queries)]
    pools = (200, 600)   # FIND's default for TOP 10 is max(10 * top, 200)
    rec, te, ta = {p: [] for p in pools}, [], {p: [] for p in pools}
    for q in Qs:
        t = time.perf_counter()
        ex = K.asymmetric_search(q, G, a.k, 10)[0]
        te.append(time.perf_counter() - t)
        for pool in pools:
            t = time.perf_counter()
            cand = idx.query(q, pool, k_probes=a.k)
            got = K.asymmetric_search(q, G, a.k, 10, candidates=np.sort(cand))[0]
            ta[pool].append(time.perf_counter() - t)
            rec[pool].append(len(set(ex.tolist()) & set(got.tolist())) / 10)
    shutil.rmtree(d, ignore_errors=True)
    per, mper = index_bytes / n, mem_bytes / n
    med = lambda x: float(np.median(x))  # noqa: E731
    p0 = pools[0]
    top = INDEX_KINDS["hnsw_reduced"]["top"]
    recs = ", ".join(f"pool {p}: {np.mean(rec[p]):.3f} ({med(ta[p]) / med(te):.3f} x exact)" for p in pools)
    return [{"figure": f"reduced index (top-{top} probe postings) at {n / 1e6:g}M logits: recall@10 vs exact",
             "baseline_s": med(te), "zooql_s": med(ta[p0]), "ratio": med(ta[p0]) / med(te),
             "target": "recall@10 >= 0.9; fits memory at 10M", "met": bool(np.mean(rec[p0]) >= 0.9
                                                                          and mper * 1e7 < 8 * 2**30),
             "note": f"recall@10 over {a.queries} queries, pool re-ranked exactly: {recs}; zooql s = pool {p0} "
                     f"(query + exact re-rank); in memory {mper:.0f} bytes/logit, on disk {per:.0f} bytes/logit, "
                     f"RSS +{_rss() - rss0:.0f} MB for the build (anonymous memory after it {anon:.0f} MB); extrapolated to 10M logits "
                     f"{mper * 1e7 / 2**30:.2f} GiB in memory; build {t_build:.1f} s ({n / t_build:,.0f} logits/s; "
                     f"10M ~{1e7 / (n / t_build) / 60:.0f} min); baseline = exact asym scan k={a.k} of the same gallery"}]


ROWS = {"exact": row_exact, "drop": row_drop, "reduced": row_reduced}


def _child(name: str, a) -> list[dict]:
    out = ROWS[name](a)
    for r in out:
        r["peak_rss_mb"] = round(_rss(), 1)
    return out


def rows(args) -> list[dict]:
    """One subprocess per row (its own peak RSS); ``args``: the argparse namespace of main."""
    out = []
    for name in args.rows:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", name] + _argv(args)
        res = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT))
        if res.returncode != 0:
            out.append({"figure": name, "baseline_s": None, "zooql_s": None, "ratio": None, "target": "",
                        "met": False, "peak_rss_mb": None, "note": "failed: " + res.stderr.strip()[-400:]})
            continue
        out += json.loads(res.stdout.strip().splitlines()[-1])
    return out


def _argv(a) -> list[str]:
    return ["--logits", str(a.logits), "--probes", str(a.probes), "--k", str(a.k), "--queries", str(a.queries),
            "--drop-logits", str(a.drop_logits), "--fresh-logits", str(a.fresh_logits),
            "--reduced-logits", str(a.reduced_logits)] + (["--cache", a.cache] if a.cache else [])


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--logits", type=int, default=10_000_000)
    ap.add_argument("--probes", type=int, default=1000)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--queries", type=int, default=5)
    ap.add_argument("--drop-logits", type=int, default=None, help="gallery of the DROP row (default --logits)")
    ap.add_argument("--fresh-logits", type=int, default=2_000_000,
                    help="also compare with a freshly built matrix when the DROP gallery is at most this")
    ap.add_argument("--reduced-logits", type=int, default=1_000_000)
    ap.add_argument("--rows", nargs="+", default=["exact", "reduced", "drop"], choices=list(ROWS))
    ap.add_argument("--cache", default=None)
    ap.add_argument("--cleanup", action="store_true", help="delete the generated descriptors at the end")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return ap


def table(out: list[dict]) -> str:
    f = lambda v, p=4: "-" if v is None else (f"{v:.{p}f}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = ["| figure | baseline s | zooql s | ratio | target | met | peak RSS MB | note |", "|---" * 8 + "|"]
    for r in out:
        lines.append(f"| {r['figure']} | {f(r['baseline_s'])} | {f(r['zooql_s'])} | {f(r['ratio'], 2)} | "
                     f"{r['target']} | {'yes' if r['met'] else 'NO'} | {f(r['peak_rss_mb'], 0)} | {r['note']} |")
    return "\n".join(lines)


def main(argv=None):
    a = parser().parse_args(argv)
    a.drop_logits = a.drop_logits or a.logits
    if a.child:
        print(json.dumps(_child(a.child, a)))
        return
    out = rows(a)
    tab = table(out)
    print(tab)
    cmd = "python benchmarks/hub_scale_desc.py " + " ".join(argv if argv is not None else sys.argv[1:])
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md"), "a") as fh:
        fh.write(f"\n\n## Hub scale: descriptors (issue 14), {_dt.date.today().isoformat()}\n\nMachine: shared 2-core "
                 f"CPU, loaded, 23 GB RAM. Command: `{cmd}`\n\n{tab}\n")
    if a.cleanup:
        shutil.rmtree(os.path.join(cache_dir(a), f"desc-{a.logits}x{a.probes}"), ignore_errors=True)


if __name__ == "__main__":
    main()
