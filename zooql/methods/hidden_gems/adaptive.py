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

Measured effect (benchmarks/RESULTS.md, tuned on held-out trees/metrics, not on the
benchmark trees): the gain over the paper's schedule comes from correlated sampling plus
budget-balanced halving (which is what ``gems_sh_schedule`` also does) and, at small
budgets on large trees, from rule 2; rules 1, 3 and 4 change little there (the halving
cut is usually stricter than the z-test), but they make the strategy safe
when statistics allow faster pruning.

Options: ``z`` (3.5), ``eta`` (2.0), ``qmin_auto`` (1; 0 disables rule 2), ``prior``.

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
                      prior=None, **opts) -> None:
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
