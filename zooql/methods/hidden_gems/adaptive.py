"""``gems_adaptive``: our variant of the paper's search, built to beat its fixed schedule.

It keeps the paper's first idea (correlated sampling: every survivor answers the same
queries, each round a fresh block of one random permutation of the pool) and replaces
the fixed aggressive schedule by one that is *re-planned after every round* from what
is left (survivors ``n``, budget ``B_rem``, unused pool ``Q - t``):

1. **Re-planned halving.** Each round runs the first round of a fresh Sequential
   Halving plan over the survivors with the remaining budget (equal budget per round,
   keep ``ceil(n / eta)``, ``eta = 2``), so budget freed by early eliminations or by the
   pool cap flows straight to the next rounds.
2. **Adaptive elimination factor.** If that plan would give the round fewer than
   ``qmin_auto = 1`` query per model (large tree, small budget: plain SH would halve at
   random), ``eta`` grows (x1.25 steps) until every model gets at least one query, so
   no round is spent without information. This makes the first round aggressive exactly
   when the budget is tight, and plain halving otherwise.
3. **Paired-difference elimination.** Because survivors share all their queries, the
   difference ``d_i`` between model ``i`` and the current k-th best is estimated on the
   same questions, with standard error ``sd(x_i - x_L) / sqrt(t) * sqrt((Q - t) / (Q - 1))``
   (finite-population correction: the target is the mean over the *whole* pool, which
   the sample approaches without replacement). Models with ``d_i + z * se_i < 0``
   (``z = 3.5``) are dropped even if halving would keep them.
4. **Exhaustive finals.** As soon as ``n * (Q - t) <= B_rem`` the survivors answer the
   rest of the pool, so their final order *is* the full-evaluation order.
5. **Near-duplicate cap** (``cluster_cap``, default on). Correlated sampling gives
   near-identical fine-tunes (re-uploads, quantisations) near-identical outcomes, so a
   whole cluster of copies rises or falls together; one lucky cluster could take every
   kept slot of a cut and the search would end among copies of one model (measured on
   the clustered trees of ``discover_clusters``, design seeds 1-3, 50 queries per model:
   mean rank 13 / 13 / 6 without this rule, against 6 / 4 / 1.4 for independent-sampling
   Sequential Halving; 4.1 / 2.2 / 2.5 with it). Survivors are grouped by
   their shared outcome rows (leader clustering, rows differing on at most a share
   ``cluster_eps = 0.05`` of the informative queries, i.e. those not all survivors
   answer alike). With at least 4 informative queries no group takes more than
   ``keep / eta`` of the kept slots; with at least 16, each group also keeps at most its
   best ``ceil(size / eta)`` members (the group is halved like the tree). On trees without
   copies, chance agreement in the small first rounds forms groups too; that costs a
   little (benchmarks/RESULTS.md, default check: T1 at N=50 2.5 against 2.3).

Measured effect (benchmarks/RESULTS.md, tuned on held-out trees/metrics, not on the
benchmark trees): the gain over the paper's schedule comes from correlated sampling plus
budget-balanced halving (which is what ``gems_sh_schedule`` also does) and, at small
budgets on large trees, from rule 2; rules 1, 3 and 4 change little there (the halving
cut is usually stricter than the z-test), but they make the strategy safe
when statistics allow faster pruning.

Options: ``z`` (3.5), ``eta`` (2.0), ``qmin_auto`` (1; 0 disables rule 2), ``cluster_cap``
(true; false disables rule 5), ``cluster_eps`` (0.05), ``prior``.

Optional ``prior`` (one number per model, e.g. a leaderboard score on another task, or
log-downloads): ranks are then made on an empirical-Bayes combination of the observed mean and
a linear prediction from the prior (fitted on the survivors; weight by signal/noise
variance). Not used by default.
"""
from __future__ import annotations

import math

import numpy as np

from zooql.methods.hidden_gems.core import Round, Search, plan_counts


def _halving_plan(n: int, B: int, pool: int, k: int, eta: float) -> tuple[list[int], list[int]]:
    """Sequential-halving-like plan keeping ``ceil(n / eta)`` per round, equal budget per round."""
    sizes = [n]
    while sizes[-1] > k:
        nxt = max(k, int(math.ceil(sizes[-1] / eta)))
        if nxt == sizes[-1]:
            break
        sizes.append(nxt)
    if len(sizes) > 1:
        sizes = sizes[:-1]
    R = len(sizes)
    q = plan_counts(sizes, [1.0 / R] * R, [float(s) for s in sizes], B, pool)
    return sizes, q


def run_gems_adaptive(S: Search, k: int, z: float = 3.5, eta: float = 2.0, qmin_auto: int = 1,
                      prior=None, cluster_cap: bool = True, cluster_eps: float = 0.05,
                      **opts) -> None:
    alive = np.arange(S.M)
    X = np.zeros((S.M, 0))           # shared outcomes of the survivors, [n_alive, t]
    r = 0
    prior_arr = None
    if prior is not None:
        prior_arr = np.asarray(prior, dtype=np.float64).copy()
        if prior_arr.shape != (S.M,):
            raise ValueError("prior must have one value per model")
        fill = np.nanmean(prior_arr) if np.isfinite(prior_arr).any() else 0.0
        prior_arr[~np.isfinite(prior_arr)] = fill
    while alive.size > k:
        n = alive.size
        pool_left = S.Q - S.shared_used
        Brem = S.remaining
        if pool_left <= 0 or Brem < n:
            break
        final = n * pool_left <= Brem
        if final:
            q, nxt = pool_left, k
        else:
            e = eta
            sizes, qs = _halving_plan(n, Brem, pool_left, k, e)
            while qmin_auto and qs[0] < qmin_auto and e < 1e6 and len(sizes) > 1:
                e *= 1.25
                sizes, qs = _halving_plan(n, Brem, pool_left, k, e)
            q = min(qs[0], Brem // n)
            nxt = sizes[1] if len(sizes) > 1 else k
        s = S.ask_shared(alive, q)
        S.rounds.append(Round(r, int(n), int(s.shape[1]), int(s.size)))
        X = np.concatenate([X, s], axis=1)
        t = X.shape[1]
        if t == 0:   # nothing observed (budget below one query per model): random subset
            keep_idx = np.sort(S.rng.choice(n, size=nxt, replace=False))
            mask = np.zeros(n, bool)
            mask[keep_idx] = True
        else:
            m = X.mean(axis=1)
            score = m if prior_arr is None or t >= S.Q else _eb_shrink(m, t, prior_arr[alive])
            order = np.lexsort((S.rng.random(n), -score))
            L = order[min(k, n) - 1]
            D = X - X[L]
            d = D.mean(axis=1)
            sd = D.std(axis=1, ddof=1) if t > 1 else np.full(n, 0.5)
            se = sd / math.sqrt(t) * math.sqrt(max(0.0, (S.Q - t) / max(S.Q - 1, 1)))
            ok = d + z * se >= 0
            ok[order[:k]] = True
            keep_n = k if final else int(min(ok.sum(), nxt))
            ranked = order[ok[order]]            # statistically alive, best first
            if cluster_cap and not final:
                capped = _cap_clusters(X, ranked, eta, cluster_eps, nxt)
                ranked = capped if capped.size >= k else ranked
            mask = np.zeros(n, bool)
            mask[ranked[:keep_n]] = True
        S.eliminated_round[alive[~mask]] = r
        alive, X = alive[mask], X[mask]
        r += 1
    if alive.size > k:   # budget ran out before the plan finished
        best = S.top(alive, k)
        S.eliminated_round[np.setdiff1d(alive, best)] = r


def _eb_shrink(m: np.ndarray, t: int, prior: np.ndarray) -> np.ndarray:
    """Empirical-Bayes posterior mean: observed means ``m`` (``t`` shared queries each)
    shrunk towards a linear prediction from ``prior`` with weight tau2 / (tau2 + s2)."""
    A = np.vstack([prior, np.ones_like(prior)]).T
    coef, *_ = np.linalg.lstsq(A, m, rcond=None)
    pred = A @ coef
    s2 = float(np.mean(np.clip(m * (1 - m), 0.02, None))) / t
    tau2 = max(float(np.var(m - pred)) - s2, 1e-6)
    w = tau2 / (tau2 + s2)
    return w * m + (1 - w) * pred


def _clusters(X: np.ndarray, eps: float) -> np.ndarray:
    """Near-duplicate groups of outcome rows ``X`` (best-ranked first): leader
    clustering, each row not yet grouped starts a group and takes every ungrouped row
    whose mean squared difference from it is at most ``eps`` (for 0/1 outcomes: at most a
    share ``eps`` of different answers)."""
    n, t = X.shape
    sq = (X * X).sum(axis=1)
    D = (sq[:, None] + sq[None, :] - 2.0 * (X @ X.T)) / max(t, 1)
    near = D <= eps + 1e-9
    label = np.full(n, -1, dtype=np.int64)
    g = 0
    for i in range(n):
        if label[i] < 0:
            label[near[i] & (label < 0)] = g
            g += 1
    return label


SHARE_MIN_COLS = 4     # informative shared queries before a group's share of the kept slots is capped
HALVE_MIN_COLS = 16    # ... before each group is also halved on its own


def _cap_clusters(X: np.ndarray, ranked: np.ndarray, eta: float, eps: float, keep: int) -> np.ndarray:
    """``ranked`` (best first) with near-duplicate groups capped (rule 5 of the module
    docstring): with at least ``SHARE_MIN_COLS`` informative shared queries (those the
    ranked models do not all answer alike) no group takes more than ``keep / eta`` of the
    kept slots; with at least ``HALVE_MIN_COLS`` each group keeps at most its best
    ``ceil(size / eta)`` members. Returns the ranked models that may be kept."""
    Xr = X[ranked]
    cols = Xr.max(axis=0) > Xr.min(axis=0)
    n_cols = int(cols.sum())
    if n_cols < SHARE_MIN_COLS:
        return ranked
    label = _clusters(Xr[:, cols], eps)
    size = np.bincount(label)
    if n_cols >= HALVE_MIN_COLS:
        cap = np.ceil(size / eta).astype(np.int64)
    else:
        cap = np.minimum(size, max(1, int(keep // eta)))
    taken = np.zeros_like(size)
    out = np.zeros(ranked.size, dtype=bool)
    for pos, g in enumerate(label):
        if taken[g] < cap[g]:
            taken[g] += 1
            out[pos] = True
    return ranked[out]
