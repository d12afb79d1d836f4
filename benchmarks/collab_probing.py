"""Benchmark: collaborative probing (ProbeLog Eq. 6) vs uniform probing at the same budget,
in two protocols side by side.

Hub: the cached hub of ``benchmarks/probelog_quality.py`` (small classifiers, each trained on
3-8 random classes, logits shuffled; trained and cached on first use), ``--n-models`` of them
(model i is the same model in every hub size). ``--dataset fmnist+digits``: the 20-concept hub
(Fashion-MNIST classes 0-9 plus sklearn digits upscaled to 28x28 as classes 10-19).
Probes: ``--n-probes`` built-in natural images as 28x28 grey (``--probes natural``, out of
distribution as in the paper; the default) or test-split images (``--probes test-split``).
Probe logits and validated completion parameters are cached beside the hub.

Whole models are held out as **query models** (``--queries``: until they give at least that
many logits), always fully probed; the others are the **gallery**. For a budget of p % of the
probes per gallery model (= p % of the forward passes of full probing):

* **collaborative**: every gallery model runs on its own random p % of the probes
  (``zooql.methods.probelog.completion.sample_mask``); the [gallery logits x probes] matrix is completed
  with ALS (``zooql.methods.probelog.completion``), then z-normalised descriptors over all probes. Rank and
  penalty are chosen per p by ``completion.select_params`` on 10 % of the *observed* entries held
  out from the fit (never on hidden responses or retrieval labels). The relative error of the
  completed entries against the hidden responses is printed as a diagnosis only.
* **uniform**: every gallery model runs on the same random p % of the probes; descriptors over
  those probes only.

Protocols: **logit-to-logit with sampled queries** (every gallery logit queries the other gallery
models; its own descriptor is completed too: the earlier protocol) and **fully probed queries**
(the paper's Fig. 7 protocol: a query descriptor known on every probe, as a text's is -- the query
models' logits, z-scored over all probes, or over the uniform subset under uniform). Metrics:
top-1 / top-5 accuracy and the paper's top-5 precision, for full L2 and the asymmetric
discrepancy (FIND's default k unless ``--k-asym``). The "saving" at p is the uniform budget
reaching collaborative's top-1 (linear interpolation) divided by p. The 20 teacher texts of
probelog_quality.py (MiniLM -> fully probed 10-class teacher -> asymmetric search) are also
scored (``--no-text`` to skip). Optionally times the completion of a synthetic low-rank matrix
(``--timing-rows``, 0 to skip).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/collab_probing.py --dataset fmnist+digits \
        --n-models 640 --n-probes 2000 --queries 200 --timing-rows 0
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

from zooql.methods.probelog import completion as CP  # noqa: E402
from zooql.methods.probelog import kernels as PL  # noqa: E402
from zooql.methods.probelog import metrics as PM  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def _k_of(k_asym, n):
    """The asymmetric discrepancy's k for ``n`` compared probes: FIND's default
    (``probelog.default_k_probes``: max(20, n / 10)) unless a fixed k is given."""
    return PL.default_k_probes(n) if k_asym in (None, "auto") else min(int(k_asym), n)


def _scores(got, want, top=(1, 5)):
    out = {f"top{t}": PM.topk_accuracy(got, want, t) for t in top}
    out["p@5"] = PM.topk_precision(got, want, 5)
    return out


def retrieval(D, concepts, owner, k_asym="auto", top=(1, 5), Q=None, q_concepts=None):
    """Top-1 / top-5 accuracy and top-5 precision for full L2 and the asymmetric top-k
    discrepancy over gallery descriptors ``D`` [n, C].

    Logit-to-logit (``Q`` None): every gallery logit is a query against the logits of the
    *other* models.  Query-to-gallery (``Q`` [n, Cq] with ``q_concepts``): every column of
    ``Q`` is a query against all of ``D`` (the query models are not in the gallery)."""
    D = D.astype(np.float64)
    n, C = D.shape
    own = Q is None
    Qm = D if own else Q.astype(np.float64)
    qc = concepts if own else np.asarray(q_concepts)
    T = max(max(top), 5)
    sq = (D ** 2).sum(0)
    dist = (Qm ** 2).sum(0)[:, None] + sq[None, :] - 2 * Qm.T @ D
    if own:
        dist[owner[:, None] == owner[None, :]] = np.inf
    order = np.argsort(dist, axis=1)[:, :T]
    out = {f"full {k}": v for k, v in _scores(concepts[order], qc, top).items()}
    k = _k_of(k_asym, n)
    if k < n:
        kk = np.argpartition(-Qm, k - 1, axis=0)[:k]          # [k, Cq] each query's top probes
        got = []
        for c in range(Qm.shape[1]):
            rows = kk[:, c]
            d = ((D[rows, :] - Qm[rows, c:c + 1]) ** 2).sum(0)
            if own:
                d[owner == owner[c]] = np.inf
            got.append(concepts[np.argsort(d)[:T]])
        out.update({f"asym {k_}": v for k_, v in _scores(got, qc, top).items()})
    return out


def sampled(L, owner, pct, seed):
    """The observed mask [C logits, n probes] and X with NaN at unobserved entries."""
    n, C = L.shape
    M = np.zeros((C, n), bool)
    for m in np.unique(owner):
        M[owner == m] = CP.sample_mask(n, pct, seed, int(m))
    return M, np.where(M, L.T, np.nan)


def collaborative(L, owner, pct, seed, rank, iters, reg):
    """L [n probes, C logits] full responses; returns (completed descriptors, seconds,
    relative error of the completed entries vs the hidden responses -- diagnosis only)."""
    M, X = sampled(L, owner, pct, seed)
    t = time.perf_counter()
    U, V, _, _ = CP.fit_als(X, M, rank, iters, reg, seed)
    Z, mu, sd = CP.standardize_rows(X, M)
    P = U @ V.T
    Zc = CP.complete_rows(Z, M, U, V)
    sec = time.perf_counter() - t
    truth = (L.T - mu[:, None]) / sd[:, None]
    err = float(np.linalg.norm((P - truth)[~M]) / np.linalg.norm(truth[~M]))
    return PL.zscore_columns(Zc.T), sec, err


def uniform_idx(n, pct, seed):
    """The one probe subset every model sees under uniform probing at ``pct``."""
    k = max(2, int(round(n * pct / 100)))
    return np.sort(np.random.default_rng([seed, 77]).choice(n, k, replace=False))


def uniform(L, pct, seed):
    return PL.zscore_columns(L[uniform_idx(L.shape[0], pct, seed)])


def text_scores(Q, T, D, concepts, idx=None, k_asym="auto"):
    """Text-to-logit (probelog_quality.text_eval: MiniLM -> teacher class -> asymmetric
    top-k search); the teacher is a fully probed query model, restricted to ``idx`` under
    uniform probing. Returns {"text top1", "text top5", "text p@5"}."""
    Tq = T if idx is None else T[idx]
    r = Q.text_eval(PL.zscore_columns(Tq), D, concepts, _k_of(k_asym, Tq.shape[0]))
    return {f"text {m}": r[m] for m in ("top1", "top5", "p@5")}


def interp_budget(pcts, accs, target):
    """Smallest uniform budget (linear interpolation) reaching ``target``, as (budget, exact):
    ``exact`` False when even the smallest measured uniform budget beats the target (the
    true budget is then below it); (None, False) if no uniform budget reaches it."""
    for i, (p, a) in enumerate(zip(pcts, accs)):
        if a >= target:
            if i == 0:
                return p, a == target
            p0, a0 = pcts[i - 1], accs[i - 1]
            return p0 + (p - p0) * (target - a0) / max(a - a0, 1e-12), True
    return None, False


def synthetic_timing(n_rows, n_probes, rank_true, obs, rank, iters, reg):
    rng = np.random.default_rng(0)
    A = rng.normal(size=(n_rows, rank_true)).astype(np.float32)
    B = rng.normal(size=(rank_true, n_probes)).astype(np.float32)
    X = A @ B
    M = rng.random((n_rows, n_probes)) < obs
    Xn = np.where(M, X, np.nan).astype(np.float32)
    t = time.perf_counter()
    U, V, mean, std = CP.fit_als(Xn, M, rank, iters, reg)
    fit_s = time.perf_counter() - t
    # error on a sample of missing entries
    rows = rng.choice(n_rows, 2000, replace=False)
    Z = (X[rows] - mean[rows, None]) / std[rows, None]
    P = U[rows] @ V.T
    mm = ~M[rows]
    err = float(np.linalg.norm((P - Z)[mm]) / np.linalg.norm(Z[mm]))
    return fit_s, err


# ------------------------------------------------------------------------------ the two protocols
#: metric keys: "ll" = logit-to-logit with sampled (completed) query descriptors (the earlier
#: protocol); "tl" = fully probed query models against the gallery (the paper's Fig. 7 protocol)
SAVING_KEYS = ("ll full top1", "ll asym top1", "tl asym top1", "tl full top1")


def load_hub(a):
    """(probelog_quality module, concepts [C], owner [C], L [n probes, C], teacher logits or None);
    the probe logits are cached in probelog_quality.cache_dir()."""
    import probelog_quality as Q

    class HubArgs:
        dataset, n_models, epochs, n_train, seed = a.dataset, a.n_models, 2, 4000, 0

    class TeacherArgs(HubArgs):   # the text queries name Fashion-MNIST classes: its 10-class teacher
        dataset = "fashion-mnist"

    tx, ty, vx, vy, _ = Q.load_dataset(a.dataset)
    hub = Q.build_hub(HubArgs, tx, ty, vx, vy)
    concepts = np.concatenate([h["concepts"] for h in hub])
    owner = np.concatenate([np.full(len(h["concepts"]), i) for i, h in enumerate(hub)])
    key = os.path.join(Q.cache_dir(), f"collab-{a.dataset}-{a.n_models}-{a.probes}-{a.n_probes}")

    def cached(name, make):
        f = f"{key}-{name}.npy"
        if os.path.exists(f):
            return np.load(f)
        x = np.asarray(make(), np.float32)
        np.save(f, x)
        return x

    probes = None

    def get_probes():
        nonlocal probes
        if probes is None:
            probes = make_probes(a, Q, tx, vx, vy)
        return probes
    L = cached("L", lambda: np.concatenate([Q.probe_logits(h["model"], get_probes()) for h in hub], axis=1))
    T = None
    if not a.no_text:   # teacher on all 10 classes (cached by probelog_quality.py), fully probed
        T = cached("T", lambda: Q.probe_logits(Q.train_teacher(TeacherArgs, tx, ty, vx, vy), get_probes()))
    return Q, concepts, owner, L, T, key


def make_probes(a, Q, tx, vx, vy):
    if a.probes == "natural":   # built-in natural-image probes (out of distribution, as in the paper)
        return Q.natural_probes(a.n_probes, tx.shape[1])
    if a.dataset == "fmnist+digits":   # the digits test images (540 at most), the rest Fashion-MNIST test
        prng = np.random.default_rng(1234)
        dig = np.nonzero(vy >= 10)[0]
        nd = min(len(dig), a.n_probes // 2)
        pick = np.concatenate([prng.choice(np.nonzero(vy < 10)[0], a.n_probes - nd, replace=False),
                               prng.choice(dig, nd, replace=False)])
        return vx[np.sort(pick)]
    return vx[np.random.default_rng(1234).choice(len(vx), a.n_probes, replace=False)]


def split_queries(owner, n_queries, seed=4321):
    """Hold out whole models, in a fixed random order, until they give >= ``n_queries``
    logits: these are the fully probed query models; the rest is the gallery."""
    if n_queries <= 0:
        return np.zeros(owner.shape, bool)
    perm = np.random.default_rng(seed).permutation(np.unique(owner))
    csum = np.cumsum(np.bincount(owner)[perm])
    nq = int(np.searchsorted(csum, n_queries)) + 1
    return np.isin(owner, perm[:nq])


def evaluate(D, g, Qd, k_asym, Q=None, T=None, idx=None):
    """Both protocols over gallery descriptors D: "ll" logit-to-logit inside the gallery,
    "tl" the query models' descriptors Qd against it, and the 20 teacher texts."""
    r = {f"ll {k}": v for k, v in retrieval(D, g["concepts"], g["owner"], k_asym).items()}
    if Qd is not None:
        r.update({f"tl {k}": v for k, v in retrieval(D, g["concepts"], g["owner"], k_asym, Q=Qd,
                                                      q_concepts=g["q_concepts"]).items()})
    if T is not None:
        r.update(text_scores(Q, T, D, g["concepts"], idx, k_asym))
    return r


def _mean(rs):
    return {k: float(np.mean([r[k] for r in rs])) for k in rs[0]}


def chosen_params(a, key, Lg, og, p):
    """Rank / penalty by validation on held-out observed entries of this budget's masks
    (seed 0; completion.select_params), cached per hub, probe pool, split and grid."""
    import json

    f = f"{key}-params-q{a.queries}-{a.ranks}-{a.regs}.json"
    cache = json.load(open(f)) if os.path.exists(f) else {}
    if f"{p:g}" not in cache:
        M0, X0 = sampled(Lg, og, p, 0)
        best, table = CP.select_params(X0, M0, [int(x) for x in a.ranks.split(",")],
                                       [float(x) for x in a.regs.split(",")], iters=15, holdout=0.1, seed=0)
        cache[f"{p:g}"] = {"best": best, "table": table}
        json.dump(cache, open(f, "w"))
    c = cache[f"{p:g}"]
    print(f"  {p:g}%: held-out observed RMSE " + ", ".join(f"r{r}/{g:g}={e:.3f}" for r, g, e in c["table"])
          + f" -> rank {c['best']['rank']} reg {c['best']['reg']:g}", flush=True)
    return c["best"]


def run_all(a, Q, concepts, owner, L, T, key):
    is_q = split_queries(owner, a.queries)
    Lg, Lq = L[:, ~is_q], L[:, is_q]
    g = {"concepts": concepts[~is_q], "owner": owner[~is_q], "q_concepts": concepts[is_q]}
    n = L.shape[0]
    res_u, res_c, info = {}, {}, {}
    for p in a.upcts:
        rs = []
        for s in range(a.seeds):
            idx = uniform_idx(n, p, s)
            Qd = PL.zscore_columns(Lq[idx]) if is_q.any() else None
            rs.append(evaluate(PL.zscore_columns(Lg[idx]), g, Qd, a.k_asym, Q, T, idx))
        res_u[p] = _mean(rs)
        print(f"  uniform {p:g}%: " + ", ".join(f"{k} {res_u[p][k]:.3f}" for k in SAVING_KEYS if k in res_u[p]),
              flush=True)
    Qfull = PL.zscore_columns(Lq) if is_q.any() else None
    for p in a.pcts:
        best = chosen_params(a, key, Lg, g["owner"], p)
        rs, ss, es = [], [], []
        for s in range(a.seeds):
            D, sec, err = collaborative(Lg, g["owner"], p, s, best["rank"], a.iters, best["reg"])
            rs.append(evaluate(D, g, Qfull, a.k_asym, Q, T))
            ss.append(sec)
            es.append(err)
        res_c[p] = _mean(rs)
        info[p] = {"rank": best["rank"], "reg": best["reg"], "sec": float(np.mean(ss)), "err": float(np.mean(es))}
        print(f"  collaborative {p:g}%: " + ", ".join(f"{k} {res_c[p][k]:.3f}" for k in SAVING_KEYS
                                                      if k in res_c[p]) + f" (rel. error {info[p]['err']:.3f}, "
              f"{info[p]['sec']:.1f}s)", flush=True)
    split = {"gallery_models": len(np.unique(g["owner"])), "gallery_logits": int((~is_q).sum()),
             "query_models": len(np.unique(owner[is_q])), "query_logits": int(is_q.sum())}
    return res_u, res_c, info, split


def savings(a, res_u, res_c):
    """{p: {key: (uniform budget, exact, saving)}}: the uniform budget reaching collaborative's value."""
    out = {}
    for p, c in res_c.items():
        out[p] = {}
        for key in SAVING_KEYS:
            if key not in c:
                continue
            ps = [q for q in a.upcts if key in res_u[q]]   # asym needs more probes than k
            b, exact = interp_budget(ps, [res_u[q][key] for q in ps], c[key])
            out[p][key] = (b, exact, None if b is None else b / p)
    return out


def _sv(t):
    if t is None:
        return ""
    b, exact, sv = t
    if b is None:
        return "> 100% (n/a)"
    lt = "" if exact else "< "
    return f"{lt}{b:.1f}% ({lt}{sv:.1f}x)"


def tables(a, n, res_u, res_c, info, sv):
    f = lambda d, k: f"{d[k]:.3f}" if d is not None and k in d else ""  # noqa: E731
    uc = lambda p, k: (f"{f(res_u.get(p), k)} / {f(res_c.get(p), k)}" if p in res_c  # noqa: E731
                       else f(res_u.get(p), k))
    h1 = ("| budget (% probes / model) | probes / model | logit-to-logit, sampled queries: full top-1 uniform / "
          "collab. | uniform budget for it (saving) | asym top-1 uniform / collab. | uniform budget (saving) | "
          "fully probed queries (Fig. 7): asym top-1 uniform / collab. | uniform budget (saving) | "
          "full top-1 uniform / collab. | uniform budget (saving) |")
    t1 = [h1, "|" + "---|" * 10]
    t2 = ["| budget | logit-to-logit full top-5 / P@5: uniform | collab. | fully probed queries asym top-5 / P@5: "
          "uniform | collab. | teacher texts (20) top-1 / P@5: uniform | collab. | rank / reg (validated) | "
          "completion rel. error | collab. seconds / fit |", "|" + "---|" * 10]
    for p in sorted(set(a.upcts) | set(a.pcts)):
        u, c, s = res_u.get(p), res_c.get(p), sv.get(p, {})
        k = max(2, int(round(n * p / 100)))
        t1.append(f"| {p:g}% | {k} | {uc(p, 'll full top1')} | {_sv(s.get('ll full top1'))} | "
                  f"{uc(p, 'll asym top1')} | {_sv(s.get('ll asym top1'))} | {uc(p, 'tl asym top1')} | "
                  f"{_sv(s.get('tl asym top1'))} | {uc(p, 'tl full top1')} | {_sv(s.get('tl full top1'))} |")
        two = lambda d, a_, b_: f"{f(d, a_)} / {f(d, b_)}" if d is not None and a_ in d else ""  # noqa: E731
        i = info.get(p)
        t2.append(f"| {p:g}% | {two(u, 'll full top5', 'll full p@5')} | {two(c, 'll full top5', 'll full p@5')} | "
                  f"{two(u, 'tl asym top5', 'tl asym p@5')} | {two(c, 'tl asym top5', 'tl asym p@5')} | "
                  f"{two(u, 'text top1', 'text p@5')} | {two(c, 'text top1', 'text p@5')} | "
                  + (f"{i['rank']} / {i['reg']:g} | {i['err']:.3f} | {i['sec']:.1f} |" if i else "| | |"))
    return "\n".join(t1), "\n".join(t2)


def plot(path, a, res_c, res_u, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.5), dpi=90)
    for ax, key, lab in zip(axes, ("ll full top1", "tl asym top1"),
                            ("logit-to-logit, sampled queries (full top-1)",
                             "fully probed queries, Fig. 7 (asym top-1)")):
        ps = [p for p in a.upcts if key in res_u[p]]
        if not ps:
            continue
        ax.plot(ps, [res_u[p][key] for p in ps], "o-", label="uniform (same probes for all)")
        ax.plot(a.pcts, [res_c[p][key] for p in a.pcts], "s-", label="collaborative (ALS completion)")
        ax.set_xscale("log")
        ax.set_xlabel("forward passes per model (% of probes)")
        ax.set_ylabel("top-1")
        ax.set_title(lab, fontsize=8)
        ax.set_xticks(sorted(set(a.upcts)))
        ax.set_xticklabels([f"{p:g}" for p in sorted(set(a.upcts))])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def parse_args(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist", "fmnist+digits"])
    ap.add_argument("--n-models", type=int, default=960)
    ap.add_argument("--n-probes", type=int, default=1000)
    ap.add_argument("--probes", default="natural", choices=["natural", "test-split"])
    ap.add_argument("--queries", type=int, default=200,
                    help="hold out whole models, fully probed, until they give this many query logits "
                         "(the Fig. 7 protocol; 0 = logit-to-logit only)")
    ap.add_argument("--k-asym", default="auto", help="asymmetric k: 'auto' = FIND's default max(20, n/10)")
    ap.add_argument("--pcts", default="5,10,15,25,50")
    ap.add_argument("--uniform-pcts", default="2,5,10,15,25,35,50,75,100")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--ranks", default="8,16,32,48")
    ap.add_argument("--regs", default="1,2.5,5")
    ap.add_argument("--iters", type=int, default=CP.DEFAULT_ITERS)
    ap.add_argument("--timing-rows", type=int, default=100_000, help="synthetic completion timing (0: skip)")
    ap.add_argument("--no-text", action="store_true", help="skip the 20 teacher texts (MiniLM)")
    ap.add_argument("--plot", default=None, help="plot file in benchmarks/ (default collab_probing_protocols*.png)")
    ap.add_argument("--no-append", action="store_true")
    a = ap.parse_args(argv)
    a.pcts = [float(x) for x in a.pcts.split(",")]
    a.upcts = [float(x) for x in a.uniform_pcts.split(",")]
    return a


def main(argv=None):
    a = parse_args(argv)
    t_all = time.time()
    Q, concepts, owner, L, T, key = load_hub(a)
    print(f"hub: {len(np.unique(owner))} models, {L.shape[1]} logits, {a.n_probes} probes "
          f"({time.time() - t_all:.0f}s)", flush=True)
    res_u, res_c, info, split = run_all(a, Q, concepts, owner, L, T, key)
    sv = savings(a, res_u, res_c)
    t1, t2 = tables(a, L.shape[0], res_u, res_c, info, sv)
    print("\n" + t1 + "\n\n" + t2)
    best = {k: max((v[k][2] for v in sv.values() if k in v and v[k][2] is not None and v[k][1]), default=0.0)
            for k in SAVING_KEYS}   # exact interpolations only ('<' values are upper bounds)
    summary = ("Best saving (uniform budget reaching collaborative's top-1, interpolated, / p; bounds '<' left out): "
               + ", ".join(f"{k}: {best[k]:.1f}x" for k in SAVING_KEYS if any(k in v for v in sv.values()))
               + ". The paper's >= 3x saving is **" + ("reached" if max(best.values()) >= 3 else "NOT reached")
               + "** on this hub.")
    print(summary)
    timing = ""
    if a.timing_rows:
        t_fit, t_err = synthetic_timing(a.timing_rows, 1000, 10, 0.3, CP.DEFAULT_RANK, CP.DEFAULT_ITERS,
                                        CP.DEFAULT_REG)
        timing = (f"Completion time, synthetic rank-10 matrix {a.timing_rows:,} logits x 1,000 probes, 30% "
                  f"observed, engine defaults (rank {CP.DEFAULT_RANK}, reg {CP.DEFAULT_REG:g}, "
                  f"{CP.DEFAULT_ITERS} iterations), 1 thread: **{t_fit:.1f} s** (rel. error {t_err:.3f}).")
        print(timing)
    total = time.time() - t_all
    print(f"total {total:.0f}s")
    if not a.no_append:
        write_results(a, argv, L, split, t1, t2, summary, timing, total, res_c, res_u)
    return res_u, res_c


def write_results(a, argv, L, split, t1, t2, summary, timing, total, res_c, res_u):
    mixed = a.dataset == "fmnist+digits"
    png = a.plot or ("collab_probing_protocols_20concepts.png" if mixed else "collab_probing_protocols.png")
    hub_desc = ("Fashion-MNIST + digits (20 concepts)" if mixed else "Fashion-MNIST (10 concepts)")
    plot(os.path.join(HERE, png), a, res_c, res_u,
         f"{split['gallery_models']} gallery models of the {hub_desc} hub, {L.shape[1]} logits, "
         f"{a.n_probes} {a.probes} probes")
    cmd = " ".join(["OMP_NUM_THREADS=1 .venv/bin/python benchmarks/collab_probing.py"]
                   + list(sys.argv[1:] if argv is None else argv))
    pdesc = "built-in natural images, 28x28 grey" if a.probes == "natural" else (
        "half digits test split, half Fashion-MNIST test split" if mixed else "Fashion-MNIST test split")
    k = "FIND's default k = max(20, n / 10) of the n compared probes" if a.k_asym == "auto" else f"k = {a.k_asym}"
    text = f"""

## Collaborative probing: both protocols, {hub_desc} hub, {a.n_probes} probes ({time.strftime('%Y-%m-%d')})

Machine: 2-core x86_64 CPU, no GPU (shared with other jobs), OMP_NUM_THREADS=1. Command: `{cmd}` ({total:.0f} s;
hub, probe logits and validated rank / penalty cached under `$ZOOQL_CACHE`).

Hub: probelog_quality.py's `{a.dataset}` hub, {a.n_models} models. **Query models**: {split['query_models']} whole
models held out in a fixed random order ({split['query_logits']} logits = queries), always fully probed, never in the
completion; **gallery**: the other {split['gallery_models']} models ({split['gallery_logits']} logits). Probes:
{a.n_probes} {a.probes} ({pdesc}). Budget p = the share of the probes each *gallery* model runs on
(p x {a.n_probes} forward passes per model, the "probes / model" column). **Collaborative**: every gallery model
runs on its own random p% (`completion.sample_mask`), the [gallery logits x probes] matrix is completed by ALS
(rows standardised over their observed entries, constant ridge penalty, {a.iters} iterations; rank / penalty per p
by validation on 10% of the observed entries held out, grid ranks {a.ranks} x reg {a.regs}). **Uniform**: every
gallery model runs on the same random p%; descriptors over those probes only. Mean of {a.seeds} seeds.

* **Logit-to-logit, sampled queries** (the protocol of the earlier sections): every gallery logit is a query
  against the logits of the other gallery models; the query's own descriptor is sampled and completed too.
* **Fully probed queries (the paper's Fig. 7 protocol)**: the query descriptor is fully known, as a text's is
  (every probe's response): the held-out query models' logits, z-scored over all probes (under uniform: over the
  uniform subset), searched in the sampled-and-completed gallery.
* Asymmetric discrepancy with {k}; full = L2 over all compared probes. Correct = a result with the query's
  concept. top-k accuracy = a correct result among the first k; P@5 = the paper's top-5 precision (share of
  correct results among the first 5). 'uniform budget (saving)' = the uniform budget reaching collaborative's
  top-1 (linear interpolation over the uniform budgets; '<' = below the smallest measured) and that budget / p.
* Teacher texts: probelog_quality.py's 20 text queries (MiniLM -> class of a fully probed 10-class Fashion-MNIST
  teacher -> asymmetric search over the gallery); 20 queries, 0.05 each: too few to read differences from.

{t1}

{t2}

{summary}

{timing}

Plot: `benchmarks/{png}` (left: logit-to-logit full top-1; right: fully probed queries, asym top-1).
"""
    with open(os.path.join(HERE, "RESULTS.md"), "a") as f:
        f.write(text)


if __name__ == "__main__":
    main()
