"""``grouped_halving``: Sequential Halving with paired comparisons inside small random groups.

Two facts pull the sampling design of a halving search in opposite directions:

* **Shared queries pair the comparisons.** When two models answer the same queries, the
  difficulty of the queries cancels out of their difference (most of the variance of a
  per-query outcome is the query's difficulty), so a few shared queries separate two
  models as well as many independent ones would.
* **Shared queries share the luck of near-duplicates.** Re-uploads and light fine-tunes of
  one parent answer almost every query alike. Under shared queries a whole cluster of
  copies rises or falls together: one unlucky draw removes every copy of the best parent
  at once, and one lucky draw lets a big cluster take every kept slot. Independent
  queries give each copy its own draw.

``grouped_halving`` keeps the halving plan of :func:`~.strategies.halving_plan` and, in every
round, splits the survivors at random into groups of about ``group`` models (re-drawn each
round). The members of a group answer the same queries (a fresh block of the shared
permutation while blocks last, afterwards each member's next unanswered queries in the
group's order), different groups answer different queries, and each group keeps its best
share (half, in the halving plan). Comparisons are therefore paired, and copies of one
parent land in different groups, where their luck is independent.

How a group ranks its members:

* while its members have answered fewer than ``rel_until`` queries: by the summed
  *relative* score, i.e. each round's mean minus the group's mean on that round's
  queries, weighted by the round's queries (the group's mean is the difficulty estimate of
  those queries);
* afterwards: by an additive fit ``y_mq = a_m + d_q`` over everything the members answered
  (ridge on the query effects ``d_q`` with weight ``lam``), so the queries they share are
  compared paired and the rest still count.

Thresholds (``group=16``, ``rel_until=64``, ``lam=1``) were set on design trees only (another
IRT draw of the score trees and clustered trees with other seeds than the benchmark's);
see benchmarks/RESULTS.md.
"""
from __future__ import annotations

import numpy as np

from zooql.methods.hidden_gems.core import Round, Search
from zooql.methods.hidden_gems.strategies import halving_plan

GROUP_SIZE = 16
REL_UNTIL = 64
RIDGE = 1.0


class _Record:
    """The (query, score) pairs each model answered, for masks and the additive fit."""

    def __init__(self, M: int):
        self.q: list[list[np.ndarray]] = [[] for _ in range(M)]
        self.s: list[list[np.ndarray]] = [[] for _ in range(M)]

    def add(self, models: np.ndarray, queries: np.ndarray, scores: np.ndarray) -> None:
        order = np.argsort(models, kind="stable")
        mm, qq, ss = models[order], queries[order], scores[order]
        cut = np.flatnonzero(np.diff(mm)) + 1
        for m_q, m_s, m in zip(np.split(qq, cut), np.split(ss, cut), mm[np.r_[0, cut]] if mm.size else []):
            self.q[int(m)].append(m_q)
            self.s[int(m)].append(m_s)

    def dense(self, models: np.ndarray, Q: int) -> np.ndarray:
        """[len(models), Q] float32, NaN where not answered."""
        Y = np.full((models.size, Q), np.nan, dtype=np.float32)
        for i, m in enumerate(models):
            for q, s in zip(self.q[int(m)], self.s[int(m)]):
                Y[i, q] = s
        return Y


def additive_scores(Y: np.ndarray, lam: float = RIDGE, iters: int = 25) -> np.ndarray:
    """Model effects ``a`` of ``y_mq = a_m + d_q + noise`` over the answered cells of ``Y``
    (NaN = not answered), with a ridge ``lam`` on the query effects: a query answered by one
    model only moves its estimate a little, a query answered by all of them cancels out."""
    obs = ~np.isnan(Y)
    cols = obs.any(axis=0)
    Y, obs = Y[:, cols].astype(np.float64), obs[:, cols]
    Y0 = np.where(obs, Y, 0.0)
    n_m = np.maximum(obs.sum(axis=1), 1)
    n_q = obs.sum(axis=0)
    a = Y0.sum(axis=1) / n_m
    d = np.zeros(Y.shape[1])
    for _ in range(iters):
        d = np.where(obs, Y0 - a[:, None], 0.0).sum(axis=0) / (n_q + lam)
        a = np.where(obs, Y0 - d[None, :], 0.0).sum(axis=1) / n_m
    return a


def _split(S: Search, alive: np.ndarray, group: int) -> list[np.ndarray]:
    n_groups = max(1, int(np.ceil(alive.size / group)))
    return np.array_split(S.rng.permutation(alive), n_groups)


def _keep_counts(S: Search, sizes: np.ndarray, keep: int) -> np.ndarray:
    """How many each group keeps: proportional to its size, summing to ``keep``."""
    kg = np.floor(sizes * keep / sizes.sum()).astype(np.int64)
    rest = int(keep - kg.sum())
    if rest > 0:
        kg[S.rng.permutation(sizes.size)[:rest]] += 1
    return np.minimum(kg, sizes)


def _fill_pairs(S: Search, G: np.ndarray, t: int, rec: _Record, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """The next ``t`` unanswered queries of each member of ``G`` in the order of the shared
    permutation rotated by ``offset``, as (model, query) pairs."""
    order = np.roll(S.perm, -offset)
    free = np.isnan(rec.dense(G, S.Q))[:, order]
    ii, jj = np.nonzero(free & (np.cumsum(free, axis=1) <= t))
    return G[ii], order[jj]


def _ask_round(S: Search, groups: list[np.ndarray], t: int, rec: _Record, ptr: int) -> tuple[np.ndarray, int]:
    """One round's queries, asked in one oracle call: a fresh shared block per group while
    the pool has enough unused queries left, else each member fills in its group's order.
    Returns every model's mean on this round's queries (NaN if none) and the new block
    pointer."""
    mm, qq = [], []
    if ptr + len(groups) * t <= S.Q:
        for G in groups:
            mm.append(np.repeat(G, t))
            qq.append(np.tile(S.perm[ptr:ptr + t], G.size))
            ptr += t
    else:
        for G in groups:
            offset = 0 if len(groups) == 1 else int(S.rng.integers(S.Q))
            m, q = _fill_pairs(S, G, t, rec, offset)
            mm.append(m)
            qq.append(q)
        ptr = S.Q
    mm, qq = np.concatenate(mm)[:S.remaining], np.concatenate(qq)[:S.remaining]
    sc = S.ask(mm, qq)
    rec.add(mm, qq, sc)
    cnt = np.bincount(mm, minlength=S.M)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(cnt > 0, np.bincount(mm, weights=sc, minlength=S.M) / np.maximum(cnt, 1), np.nan)
    return means, ptr


def run_grouped_halving(S: Search, k: int, group: int | None = None, rel_until: int | None = None,
                        lam: float | None = None, **opts) -> None:
    """Sequential Halving with paired comparisons inside random groups (module docstring)."""
    group = GROUP_SIZE if group is None else max(1, int(group))
    rel_until = REL_UNTIL if rel_until is None else int(rel_until)
    lam = RIDGE if lam is None else float(lam)
    sizes, q = halving_plan(S.M, S.B, S.Q, k)
    rec = _Record(S.M)
    rel = np.zeros(S.M)
    alive, ptr = np.arange(S.M), 0
    for r, (n_r, q_r) in enumerate(zip(sizes, q)):
        before = S.spent
        groups = _split(S, alive, group)
        keep = sizes[r + 1] if r + 1 < len(sizes) else min(k, alive.size)
        means = np.full(S.M, np.nan)
        if q_r > 0 and S.remaining > 0:
            means, ptr = _ask_round(S, groups, int(q_r), rec, ptr)
        cost = S.spent - before
        S.rounds.append(Round(r, int(alive.size), int(cost // max(alive.size, 1)), int(cost)))
        kept = []
        for G, kk in zip(groups, _keep_counts(S, np.array([G.size for G in groups]), keep)):
            mu = means[G]
            ok = np.isfinite(mu)
            if ok.any():
                rel[G] += np.where(ok, mu - mu[ok].mean(), 0.0) * q_r
            if int(S.counts[G].min()) < rel_until:
                scores = rel[G]
            else:
                scores = additive_scores(rec.dense(G, S.Q), lam)
            kept.append(S.top(G, int(kk), scores=scores))
        new = np.concatenate(kept)
        S.eliminated_round[np.setdiff1d(alive, new)] = r
        alive = np.sort(new)
