"""Design-tree diagnostics of DISCOVER's default (``grouped_halving``): where the rank of the
returned model is lost, and how much an ideal final stage could win back.

    OMP_NUM_THREADS=1 python benchmarks/discover_design.py --reps 30            # all diagnostics
    OMP_NUM_THREADS=1 python benchmarks/discover_design.py --only eval --options '{"focus": 16}'

Runs on the DESIGN trees only, never on the held-out trees of ``discover_bench.py``: the
other IRT draw of the score trees (``simulate(..., seed=7)``, t1-t4) and
``clustered_tree(n_models=480/500/520, seed=1..6)`` (c1-c6); rep seeds ``N*1000+500+i``.
Prints, at one budget N per model:

* ``eval``: mean rank of the returned model per tree (the design figure of RESULTS.md).
* ``alive``: per clustered tree, the best full-evaluation rank among the models still alive
  after each round (mean over reps): how much each cut loses.
* ``oracle-final``: the rounds that rank their groups by the additive fit (every member has
  answered >= ``rel_until`` queries: the later rounds) rank them by the models' *true*
  full-pool scores instead. A bound on what a better late-round estimator could win.
* ``oracle-order``: the focused rounds order the queries by their *true* information
  ``p (1 - p)`` at the survivors' level (``p`` = the share of the tree's models within 5
  points of the survivors' mean that answer the query right) instead of
  ``informative_order``'s estimate; ``oracle-order-seen``: the same, but queries nobody has
  answered yet keep the mean information, as in ``informative_order``. The gap between the
  two is what the pool coverage at the start of the focused rounds costs.

The oracle rows read the outcome matrix and replace functions of
``zooql.methods.hidden_gems.grouped`` for the run (diagnostics, never a strategy).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import zooql.methods.hidden_gems.grouped as G  # noqa: E402
from zooql.methods.hidden_gems.discover import discover  # noqa: E402
from zooql.testing.discover_clusters import clustered_tree  # noqa: E402
from zooql.testing.irt_sim import simulate  # noqa: E402

CLUSTER_DESIGN_SEEDS = (1, 2, 3, 4, 5, 6)
IRT_DESIGN_SEED = 7


def design_pools(score: bool = True) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """(label, outcomes [M, Q], head of each model or None) for the design trees."""
    out = []
    if score:
        from discover_bench import load_trees
        out += [(f"t{i + 1}", simulate(sc, n_queries=2500, difficulty_sd=2.5, seed=IRT_DESIGN_SEED).outcomes, None)
                for i, (_, _, sc, _) in enumerate(load_trees())]
    for j, sd in enumerate(CLUSTER_DESIGN_SEEDS):
        T = clustered_tree(n_models=480 + 20 * (j % 3), seed=sd)
        out.append((f"c{sd}", T.outcomes, T.head))
    return out


REP_OFFSET = [0]    # --rep-offset: fresh reps start at seed N*1000+500+offset


def _run(X: np.ndarray, N: int, r: int, opts: dict):
    M, Q = X.shape
    return discover(lambda m, q: X[m, q], M, Q, N * M, strategy="grouped_halving",
                    seed=N * 1000 + 500 + REP_OFFSET[0] + r, **opts)


def mean_ranks(pools, N: int, reps: int, opts: dict, patch=None) -> list[float]:
    """Mean rank of the returned model per tree; ``patch(X, full)`` installs an oracle."""
    out = []
    saved = (G.additive_scores, G.informative_order)
    try:
        for _, X, _ in pools:
            full = X.mean(axis=1)
            if patch is not None:
                patch(X, full)
            ranks = [1 + np.count_nonzero(full > full[_run(X, N, r, opts).ranking[0]]) for r in range(reps)]
            out.append(float(np.mean(ranks)))
    finally:
        G.additive_scores, G.informative_order = saved
        while _RESTORE:
            _RESTORE.pop()()
    return out


def best_alive(pools, N: int, reps: int, opts: dict) -> dict[str, np.ndarray]:
    """Per tree: mean over reps of the best true rank alive after each round."""
    out = {}
    for name, X, _ in pools:
        full = X.mean(axis=1)
        rank = 1 + np.searchsorted(np.sort(-full), -full, side="left")   # 1 + #strictly better
        acc, n_rounds = None, None
        for r in range(reps):
            res = _run(X, N, r, opts)
            er = res.eliminated_round
            n_rounds = len(res.rounds)
            row = np.array([rank[(er < 0) | (er > k)].min() for k in range(n_rounds)], dtype=float)
            acc = row if acc is None else acc[:n_rounds] + row[:acc.size]
        out[name] = acc / reps
    return out


def patch_final(X, full):
    """Groups ranked by the additive fit (members with >= rel_until answers: the late rounds)
    are ranked by the true full-pool score instead. ``run_grouped_halving`` calls
    ``additive_scores(rec.dense(group, Q))``; the patched ``dense`` remembers the group."""
    last = {}
    dense = G._Record.dense

    def remember(self, models, Q):
        last["models"] = np.asarray(models)
        return dense(self, models, Q)

    def oracle(Y, lam=G.RIDGE, iters=25):
        return full[last["models"]]
    G._Record.dense = remember
    G.additive_scores = oracle
    _RESTORE.append(lambda: setattr(G._Record, "dense", dense))


_RESTORE: list = []


def _true_information(X, full, alive):
    near = np.abs(full - full[alive].mean()) < 0.05
    p = X[near].mean(axis=0) if near.any() else X.mean(axis=0)
    return p * (1.0 - p)


def _order(S, info):
    pos = np.empty(S.Q, dtype=np.int64)
    pos[S.perm] = np.arange(S.Q)
    return np.lexsort((pos, -np.round(info, 6)))


def patch_order(seen_only: bool):
    def install(X, full):
        def order(S, rec, alive, irt=False):
            info = _true_information(X, full, alive)
            if seen_only:
                seen = np.zeros(S.Q, dtype=bool)
                for _, q, _ in rec.log:
                    seen[q] = True
                if seen.any():
                    info = np.where(seen, info, info[seen].mean())
            return _order(S, info)
        G.informative_order = order
    return install


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--N", type=int, default=50)
    ap.add_argument("--options", default="{}", help="grouped_halving options as JSON")
    ap.add_argument("--only", default="eval,alive,oracle-final,oracle-order,oracle-order-seen")
    ap.add_argument("--rep-offset", type=int, default=0, help="first rep's seed offset (fresh reps for a confirmation)")
    a = ap.parse_args(argv)
    REP_OFFSET[0] = a.rep_offset
    opts = json.loads(a.options)
    pools = design_pools()
    labels = [p[0] for p in pools]
    rows = {"eval": None, "oracle-final": patch_final, "oracle-order": patch_order(False),
            "oracle-order-seen": patch_order(True)}
    for what in a.only.split(","):
        t0 = time.time()
        if what == "alive":
            for name, v in best_alive([p for p in pools if p[2] is not None], a.N, a.reps, opts).items():
                print(f"alive N={a.N} {name}: best rank alive after each round " + " ".join(f"{x:.2f}" for x in v),
                      flush=True)
            continue
        r = mean_ranks(pools, a.N, a.reps, opts, rows[what])
        print(f"{what} N={a.N} {opts} reps={a.reps}{f' offset={a.rep_offset}' if a.rep_offset else ''}: mean {np.mean(r):.2f} [" +
              " ".join(f"{lab} {x:.1f}" for lab, x in zip(labels, r)) + f"] ({time.time() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
