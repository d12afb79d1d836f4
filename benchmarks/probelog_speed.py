"""Benchmark 2: ProbeLog search speed at gallery scale.

Synthetic gallery: ``--n-logits`` (default 1,000,000) logit descriptors over
``--n-probes`` (default 1,000) probes, float16, probe-major DescriptorMatrix in the
cache dir (``$ZOOQL_CACHE`` or ``~/.cache/zooql/bench``).  Logits are structured like real
ones: ``--n-concepts`` concepts, each with a prototype response (Gaussian background
plus a sparse set of strongly responding "positive" probes); a logit is its concept's
prototype plus model noise, z-scored.  Every ``--logits-per-model`` consecutive logits
form one model (for the 1%-of-models WHERE filter).

Measures: streaming read bandwidth (numpy over a large array, same run), exact
asymmetric query (compiled kernel) vs the bandwidth limit for the bytes it must read
and vs a straightforward numpy implementation, full-probe scan, filtered exact query,
HNSW build time / size / query time / recall@10 against exact, with and without filter.

    OMP_NUM_THREADS=1 python benchmarks/probelog_speed.py            # full run
    python benchmarks/probelog_speed.py --n-logits 100000 --quick     # smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from zooql.methods.probelog import kernels as P  # noqa: E402
from zooql.methods.probelog.ann import HnswIndex, plan_index  # noqa: E402
from zooql.methods.probelog.descriptors import DescriptorMatrix  # noqa: E402


def cache_dir() -> str:
    d = os.environ.get("ZOOQL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "zooql", "bench")
    os.makedirs(d, exist_ok=True)
    return d


class Synth:
    """Deterministic structured logit generator."""

    def __init__(self, n_probes, n_concepts, seed=0, pos_frac=0.02, pos_gain=4.0, noise=0.8):
        rng = np.random.default_rng(seed)
        self.n = n_probes
        proto = rng.standard_normal((n_probes, n_concepts)).astype(np.float32) * 0.6
        pos = rng.random((n_probes, n_concepts)) < pos_frac
        proto += pos * (pos_gain * (0.5 + rng.random((n_probes, n_concepts)))).astype(np.float32)
        self.proto = proto
        self.noise = noise
        self.n_concepts = n_concepts

    def logits(self, rng, concepts):
        x = self.proto[:, concepts]
        x = x + self.noise * rng.standard_normal(x.shape, dtype=np.float32)
        # per-logit random affine (models differ in scale/bias): z-scoring removes it
        x = x * rng.uniform(0.5, 3.0, size=(1, x.shape[1])).astype(np.float32) + rng.normal(size=(1, x.shape[1])).astype(np.float32)
        return P.zscore_columns(x)


def build_gallery(path, n_logits, n_probes, n_concepts, seed=0):
    meta = {"kind": "synthetic-v1", "n_logits": n_logits, "n_probes": n_probes,
            "n_concepts": n_concepts, "seed": seed}
    if os.path.exists(os.path.join(path, "MANIFEST.json")):
        dm = DescriptorMatrix.open(path, "r")
        if dm.meta == meta and dm.n_columns == n_logits:
            return dm, False
        import shutil
        shutil.rmtree(path)
    syn = Synth(n_probes, n_concepts, seed)
    rng = np.random.default_rng(seed + 1)
    concepts = rng.integers(0, n_concepts, size=n_logits)
    dm = DescriptorMatrix.create(path, n_probes, "float16", meta=meta)
    np.save(os.path.join(path, "concepts.npy"), concepts)

    def blocks(bs=32768):
        for s in range(0, n_logits, bs):
            yield syn.logits(rng, concepts[s:s + bs]).astype(np.float16)

    dm.append_columns_streaming(blocks(), n_logits)
    return DescriptorMatrix.open(path, "r"), True


def timeit(fn, reps, warm=1):
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)), float(np.min(ts))


def numpy_straightforward(q, X, k, top):
    """Gather the k rows, squared differences, argpartition (the baseline)."""
    p = P.top_probes(q, k)
    R = X[p].astype(np.float32)
    d = ((R - q[p][:, None]) ** 2).sum(0)
    part = np.argpartition(d, top)[:top]
    order = part[np.argsort(d[part])]
    return order, np.sqrt(d[order])


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-logits", type=int, default=1_000_000)
    ap.add_argument("--n-probes", type=int, default=1000)
    ap.add_argument("--n-concepts", type=int, default=10_000)
    ap.add_argument("--logits-per-model", type=int, default=10)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--hnsw-dim", type=int, default=128)
    ap.add_argument("--hnsw-embedding", default="random")
    ap.add_argument("--M", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=100)
    ap.add_argument("--no-hnsw", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None, help="write results here")
    a = ap.parse_args(argv)
    res = {"args": vars(a), "numba": P.HAVE_NUMBA}
    if P.HAVE_NUMBA:
        import numba
        res["numba_threads"] = numba.get_num_threads()
    print(f"numba={P.HAVE_NUMBA} threads={res.get('numba_threads')}", flush=True)

    path = os.path.join(cache_dir(), f"speed-{a.n_logits}x{a.n_probes}-c{a.n_concepts}")
    t = time.perf_counter()
    dm, built = build_gallery(path, a.n_logits, a.n_probes, a.n_concepts)
    res["gallery_build_s"] = time.perf_counter() - t if built else None
    X = next(dm.iter_segments())[0]  # the single memory-mapped segment [n, N] float16
    N, n = a.n_logits, a.n_probes
    print(f"gallery {path}: {n} x {N} float16 = {X.nbytes / 1e9:.2f} GB "
          f"({'built in %.0fs' % res['gallery_build_s'] if built else 'cached'})", flush=True)
    # warm the page cache with the whole gallery (warm-cache numbers throughout)
    t = time.perf_counter()
    s = 0
    for r in range(0, n, 50):
        s += int(np.asarray(X[r:r + 50]).view(np.uint64)[:, ::512].sum() & 1)
    res["page_cache_warm_s"] = time.perf_counter() - t

    # ---------------------------------------------------------------- bandwidth
    big = np.ones(256 * 1024 * 1024 // 8 * 4, np.uint64)  # 1 GiB
    bw_sum = big.nbytes / timeit(lambda: np.add.reduce(big), 3)[1] / 1e9
    dst = np.empty_like(big)
    bw_copy = 2 * big.nbytes / timeit(lambda: np.copyto(dst, big), 3)[1] / 1e9
    del big, dst
    probes_demo = np.sort(np.random.default_rng(0).choice(n, a.k, replace=False))
    rows_u64 = lambda: sum(int(np.add.reduce(np.asarray(X[p]).view(np.uint64))) for p in probes_demo)  # noqa: E731
    bytes_needed = a.k * N * 2
    bw_rows = bytes_needed / timeit(rows_u64, 5)[1] / 1e9
    res.update(bw_sum_GBs=bw_sum, bw_copy_GBs=bw_copy, bw_gallery_rows_GBs=bw_rows,
               bytes_needed=bytes_needed)
    bw = max(bw_sum, bw_rows)
    res["bandwidth_limit_ms"] = bytes_needed / (bw * 1e9) * 1e3
    print(f"bandwidth: numpy sum {bw_sum:.1f} GB/s, copy {bw_copy:.1f} GB/s (r+w), "
          f"sum over the {a.k} gallery rows {bw_rows:.1f} GB/s; query must read "
          f"{bytes_needed / 1e6:.0f} MB -> limit {res['bandwidth_limit_ms']:.2f} ms", flush=True)

    # ---------------------------------------------------------------- queries
    syn = Synth(n, a.n_concepts, 0)
    qrng = np.random.default_rng(123)
    nq = 10 if a.quick else a.queries
    Q = syn.logits(qrng, qrng.integers(0, a.n_concepts, size=nq))  # fresh logits, not in gallery

    exact_res = []
    ts = []
    for j in range(nq):
        t = time.perf_counter()
        exact_res.append(P.asymmetric_search(Q[:, j], dm, a.k, a.top))
        ts.append(time.perf_counter() - t)
    P.asymmetric_search(Q[:, 0], dm, a.k, a.top)
    ts = []
    for j in range(nq):
        t = time.perf_counter()
        P.asymmetric_search(Q[:, j], dm, a.k, a.top)
        ts.append(time.perf_counter() - t)
    res["exact_ms_median"] = float(np.median(ts) * 1e3)
    res["exact_ms_p90"] = float(np.percentile(ts, 90) * 1e3)
    res["exact_ms_min"] = float(np.min(ts) * 1e3)

    nb = min(nq, 5)
    tsn = []
    for j in range(nb):
        t = time.perf_counter()
        ni, nd = numpy_straightforward(Q[:, j], X, a.k, a.top)
        tsn.append(time.perf_counter() - t)
        assert set(ni.tolist()) == set(exact_res[j][0].tolist()), "numpy and kernel disagree"
    res["numpy_ms_median"] = float(np.median(tsn) * 1e3)
    res["speedup_vs_numpy"] = res["numpy_ms_median"] / res["exact_ms_median"]
    res["x_bandwidth_limit"] = res["exact_ms_median"] / res["bandwidth_limit_ms"]
    print(f"exact asymmetric k={a.k}: median {res['exact_ms_median']:.2f} ms "
          f"(p90 {res['exact_ms_p90']:.2f}, min {res['exact_ms_min']:.2f}) = "
          f"{res['x_bandwidth_limit']:.1f}x the bandwidth limit; numpy straightforward "
          f"{res['numpy_ms_median']:.1f} ms -> {res['speedup_vs_numpy']:.1f}x faster", flush=True)

    tf = []
    for j in range(min(nq, 3)):
        t = time.perf_counter()
        P.full_search(Q[:, j], dm, a.top)
        tf.append(time.perf_counter() - t)
    res["full_scan_ms_median"] = float(np.median(tf) * 1e3)
    print(f"full-probe scan (all {n} probes, {n * N * 2 / 1e9:.1f} GB): "
          f"{res['full_scan_ms_median']:.0f} ms", flush=True)

    # filter: keep 1% of models (logits_per_model consecutive columns per model)
    n_models = N // a.logits_per_model
    frng = np.random.default_rng(7)
    keep_models = np.sort(frng.choice(n_models, max(1, n_models // 100), replace=False))
    cand = (keep_models[:, None] * a.logits_per_model + np.arange(a.logits_per_model)).ravel()
    res["filter_models"] = int(keep_models.shape[0])
    res["filter_candidates"] = int(cand.shape[0])
    tsf, filt_res = [], []
    for j in range(nq):
        t = time.perf_counter()
        filt_res.append(P.asymmetric_search(Q[:, j], dm, a.k, a.top, candidates=cand))
        tsf.append(time.perf_counter() - t)
    res["exact_filtered_ms_median"] = float(np.median(tsf) * 1e3)
    print(f"exact with WHERE filter ({keep_models.shape[0]:,} of {n_models:,} models, "
          f"{cand.shape[0]:,} logits): median {res['exact_filtered_ms_median']:.2f} ms", flush=True)

    # ---------------------------------------------------------------- HNSW
    if not a.no_hnsw:
        hpath = os.path.join(cache_dir(), f"hnsw-{a.n_logits}x{a.n_probes}-c{a.n_concepts}-"
                                          f"{a.hnsw_embedding}{a.hnsw_dim}-M{a.M}-ef{a.ef_construction}")
        rss0 = rss_mb()
        if os.path.exists(os.path.join(hpath, "CURRENT.json")):
            t = time.perf_counter()
            idx = HnswIndex.load(hpath)
            res["hnsw_load_s"] = time.perf_counter() - t
            meta = json.load(open(os.path.join(hpath, "build.json")))
            res["hnsw_build_s"] = meta["build_s"]
        else:
            t = time.perf_counter()
            idx = HnswIndex(n, dim=a.hnsw_dim, embedding=a.hnsw_embedding).build_from_store(
                dm, M=a.M, ef_construction=a.ef_construction)
            res["hnsw_build_s"] = time.perf_counter() - t
            idx.save(hpath)
            json.dump({"build_s": res["hnsw_build_s"]}, open(os.path.join(hpath, "build.json"), "w"))
        res["hnsw_index_MB"] = sum(os.path.getsize(os.path.join(hpath, f)) for f in os.listdir(hpath)) / 1e6
        res["hnsw_rss_growth_MB"] = rss_mb() - rss0
        print(f"HNSW ({a.hnsw_embedding} projection to {a.hnsw_dim}-d, M={a.M}, "
              f"ef_construction={a.ef_construction}): build {res['hnsw_build_s']:.0f} s, "
              f"index files {res['hnsw_index_MB']:.0f} MB", flush=True)

        def hnsw_run(pool, ef, k_probes_mask, filt=None, truth=exact_res):
            rec, ts = [], []
            for j in range(nq):
                t = time.perf_counter()
                c = idx.query(Q[:, j], pool, filter_ids=filt, ef=ef, k_probes=k_probes_mask)
                i, _ = P.asymmetric_search(Q[:, j], dm, a.k, a.top, candidates=c)
                ts.append(time.perf_counter() - t)
                rec.append(len(set(i.tolist()) & set(truth[j][0].tolist())) / max(1, len(truth[j][0])))
            return float(np.mean(rec)), float(np.median(ts) * 1e3)

        rows = []
        grid = [(100, 100), (200, 200), (400, 400), (800, 800)] if not a.quick else [(200, 200)]
        for mask in (a.k, None):
            for pool, ef in grid:
                r, ms = hnsw_run(pool, ef, mask)
                rows.append({"query": "masked top-k" if mask else "full descriptor",
                             "pool": pool, "ef": ef, "recall@10": r, "ms": ms})
                print(f"  HNSW query ({rows[-1]['query']}), pool={pool} ef={ef}: "
                      f"recall@10 {r:.3f}, median {ms:.2f} ms (incl. exact re-rank)", flush=True)
        res["hnsw"] = rows
        # filtered HNSW (1% of models): hnswlib filter callable + fallback
        fset = set(cand.tolist())
        rf = []
        for pool, ef in ([(100, 100), (400, 400)] if not a.quick else [(100, 100)]):
            r, ms = hnsw_run(pool, ef, a.k, filt=fset, truth=filt_res)
            rf.append({"pool": pool, "ef": ef, "recall@10": r, "ms": ms})
            print(f"  HNSW + 1% filter, pool={pool} ef={ef}: recall@10 {r:.3f}, median {ms:.2f} ms", flush=True)
        res["hnsw_filtered"] = rf

    res["plan_unfiltered"] = plan_index(N, 1.0)
    res["plan_filtered"] = plan_index(N, 0.01)
    res["peak_rss_MB"] = rss_mb()
    print("planner:", res["plan_unfiltered"], res["plan_filtered"])
    print(f"peak RSS {res['peak_rss_MB']:.0f} MB")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1, default=str)
    return res


if __name__ == "__main__":
    main()
