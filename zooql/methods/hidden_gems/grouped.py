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

Which queries the last rounds ask (``focus``): once at most ``focus`` models survive, the
groups no longer take fresh blocks; each member answers its next unanswered queries in the
order of :func:`informative_order`, most informative about the survivors first. By then the
eliminated models have answered a good part of the pool, so each such query's difficulty is
known roughly; a query that every model at the survivors' level gets right (or wrong) cannot
separate them, while one near their level can (it is the query's Bernoulli variance at
their level; the idea of adaptive testing). The survivors of a close final therefore spend
their queries where they can differ. The group ``g`` of ``n`` leads with every ``n``-th query
of that order, so different groups still answer mostly different queries. The plan (the
rounds and their sizes) is the halving plan's; only the choice of queries changes.

Two options, off by default: ``irt`` orders the focused rounds' queries by a Rasch model
fitted to every answer so far (:func:`rasch_fit`; each survivor's Fisher information
``p (1 - p)``, averaged over the survivors) instead of the logit shift above, and
``early_group`` sets the group size while more than ``EARLY_UNTIL`` models survive (smaller
groups answer more different queries, so more of the pool has been answered by someone when
the focused rounds start). Together (``irt``, ``early_group=8``) they were lower on the
design trees at every budget but not on the benchmark's trees, so neither is the default
(benchmarks/RESULTS.md).

Option ``pool`` (off by default; :mod:`~.pooled`): once at most ``pool_until`` models
survive, every cut finds clusters of near-copies among the survivors from the answers so far
(pairs that disagree far less than two independent models of their abilities would), and a
group that holds a cluster member ranks its members by the cluster's level (the additive fit
over the union of the members' answers, the cluster counted once per query) plus each member's
paired deviation from its mates; ``anchor`` adds a block that every survivor answers. It was
lower on 200 design reps from N = 20 on, but on the benchmark's trees it was worse at five budgets of
six (benchmarks/RESULTS.md, session 6), so it is not the default.

Thresholds (``group=16``, ``rel_until=64``, ``lam=1``, ``focus=32``) were set on design trees
only (another IRT draw of the score trees and clustered trees with other seeds than the
benchmark's); see benchmarks/RESULTS.md.
"""
from __future__ import annotations

import numpy as np

from zooql.methods.hidden_gems.core import Round, Search
from zooql.methods.hidden_gems.pooled import KAPPA, copy_clusters, pooled_scores
from zooql.methods.hidden_gems.strategies import halving_plan

GROUP_SIZE = 16
REL_UNTIL = 64
RIDGE = 1.0
FOCUS = 32
IRT = False         # focused order from the Rasch fit (option irt)
EARLY_GROUP = None  # group size while more than EARLY_UNTIL survive (None: ``group``)
EARLY_UNTIL = 128   # groups of ``early_group`` while more than this many models survive
IRT_ITERS = 15
POOL = False        # pooled scores of near-copy clusters at the cuts (option pool, :mod:`~.pooled`)
POOL_UNTIL = 64     # ... once at most this many models survive
ANCHOR = 0          # ... optionally with a common anchor block of this many queries in all (0: none)
IRT_PRIOR_SD = 3.0


class _Record:
    """The (query, score) pairs each model answered, for masks and the additive fit."""

    def __init__(self, M: int):
        self.q: list[list[np.ndarray]] = [[] for _ in range(M)]
        self.s: list[list[np.ndarray]] = [[] for _ in range(M)]
        self.log: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, models: np.ndarray, queries: np.ndarray, scores: np.ndarray) -> None:
        self.log.append((models, queries, np.asarray(scores, dtype=np.float64)))
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


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 0.02, 0.98)
    return np.log(p / (1.0 - p))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def rasch_fit(m: np.ndarray, q: np.ndarray, s: np.ndarray, M: int, Q: int, iters: int = IRT_ITERS,
              prior_sd: float = IRT_PRIOR_SD) -> tuple[np.ndarray, np.ndarray]:
    """Abilities ``theta`` [M] and difficulties ``b`` [Q] of the Rasch model
    ``P(y_mq = 1) = sigmoid(theta_m - b_q)`` (the one-parameter IRT model), fitted to the
    answered pairs ``(m[i], q[i], s[i])`` by ``iters`` alternating Newton steps on the
    log-likelihood with a normal prior of sd ``prior_sd`` on every parameter (keeps a query
    answered by one model, or a model whose answers all agree, finite). Fractional scores
    are used as they are (quasi-likelihood). Unanswered queries and models stay at 0."""
    theta = np.zeros(M)
    b = np.zeros(Q)
    w = 1.0 / prior_sd ** 2
    for _ in range(iters):
        p = _sigmoid(theta[m] - b[q])
        v = p * (1.0 - p)
        b += (np.bincount(q, weights=p - s, minlength=Q) - w * b) / (np.bincount(q, weights=v, minlength=Q) + w)
        p = _sigmoid(theta[m] - b[q])
        v = p * (1.0 - p)
        theta += (np.bincount(m, weights=s - p, minlength=M) - w * theta) / (np.bincount(m, weights=v, minlength=M) + w)
    return theta, b


def _answers(rec: _Record) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every answer so far as arrays: (model, query, score)."""
    return tuple(np.concatenate([e[i] for e in rec.log]) for i in range(3))


def _irt_information(S: Search, rec: _Record, alive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query: the Rasch model's Fisher information ``p (1 - p)`` averaged over the
    survivors ``alive`` (``p = sigmoid(theta_i - b_q)``, fitted to every answer so far), and
    whether anyone answered the query."""
    m, q, s = _answers(rec)
    theta, b = rasch_fit(m, q, s, S.M, S.Q)
    p = _sigmoid(theta[alive][:, None] - b[None, :])
    return (p * (1.0 - p)).mean(axis=0), np.bincount(q, minlength=S.Q) > 0


def _shift_information(S: Search, rec: _Record, alive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query: ``p (1 - p)`` with the outcome ``p`` at the survivors' level predicted by
    shifting the answerers' mean outcome (``informative_order``), and whether anyone
    answered the query."""
    m, q, s = _answers(rec)
    mu = np.nan_to_num(S.means(), nan=0.5)
    n_q = np.bincount(q, minlength=S.Q)
    p_q = (np.bincount(q, weights=s, minlength=S.Q) + 0.5) / (n_q + 1.0)
    a_q = (np.bincount(q, weights=mu[m], minlength=S.Q) + 0.5) / (n_q + 1.0)
    lvl = float(np.mean(mu[alive]))
    p = 1.0 / (1.0 + np.exp(-(_logit(p_q) + _logit(np.array(lvl)) - _logit(a_q))))
    return p * (1.0 - p), n_q > 0


def informative_order(S: Search, rec: _Record, alive: np.ndarray, irt: bool = False) -> np.ndarray:
    """The pool's queries, most informative about the survivors ``alive`` first.

    A query's outcome for the survivors is predicted from everyone who answered it so far
    (eliminated models included): ``logit p = logit(mean outcome of its answerers) +
    logit(survivors' mean) - logit(answerers' mean score)``, i.e. the query's difficulty
    shifted from the level of its answerers to the level of the survivors. Its information
    is the Bernoulli variance ``p (1 - p)``: a query every good model answers alike (far
    too easy or too hard for them) cannot separate them. A query nobody answered gets the
    mean information of the answered ones. Ties (and unanswered queries) keep the order
    of the shared permutation.

    ``irt``: the outcome ``p`` of each survivor comes from a Rasch model fitted to every
    answer so far (:func:`rasch_fit`), and the information is the survivors' mean
    ``p (1 - p)``; unlike the shift above, a query's difficulty estimate then uses each
    answerer's own ability, so a few answers from models of any level place it."""
    if not rec.log:
        return S.perm.copy()
    if irt:
        info, seen = _irt_information(S, rec, alive)
    else:
        info, seen = _shift_information(S, rec, alive)
    info[~seen] = info[seen].mean() if seen.any() else 0.25
    pos = np.empty(S.Q, dtype=np.int64)
    pos[S.perm] = np.arange(S.Q)
    return np.lexsort((pos, -np.round(info, 6)))


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


def _fill_pairs(S: Search, G: np.ndarray, t: int, rec: _Record, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The next ``t`` unanswered queries of each member of ``G`` in ``order``, as (model,
    query) pairs."""
    free = np.isnan(rec.dense(G, S.Q))[:, order]
    ii, jj = np.nonzero(free & (np.cumsum(free, axis=1) <= t))
    return G[ii], order[jj]


def _ask_round(S: Search, groups: list[np.ndarray], t: int, rec: _Record, ptr: int,
               focus: bool = False, irt: bool = False, anchor: int = 0) -> tuple[np.ndarray, int, int]:
    """One round's queries, asked in one oracle call: a fresh shared block per group while
    the pool has enough unused queries left, else each member fills in its group's order.
    ``anchor``: in the block case, the first ``anchor`` of the ``t`` queries are one block
    common to every group. Returns every model's mean on this round's queries (NaN if
    none), the new block pointer and the anchor queries asked."""
    mm, qq = [], []
    anchor = min(int(anchor), t) if not focus and ptr + anchor + len(groups) * (t - anchor) <= S.Q else 0
    if anchor:
        alive = np.concatenate(groups)
        mm.append(np.repeat(alive, anchor))
        qq.append(np.tile(S.perm[ptr:ptr + anchor], alive.size))
        ptr += anchor
        t -= anchor
    if focus:
        ranked = informative_order(S, rec, np.concatenate(groups), irt)
        n_g = len(groups)
        for g, G in enumerate(groups):    # group g leads with every n_g-th informative query
            lead = np.arange(g, S.Q, n_g)
            order = np.concatenate([ranked[lead], np.delete(ranked, lead)])
            m, q = _fill_pairs(S, G, t, rec, order)
            mm.append(m)
            qq.append(q)
    elif ptr + len(groups) * t <= S.Q:
        for G in groups:
            mm.append(np.repeat(G, t))
            qq.append(np.tile(S.perm[ptr:ptr + t], G.size))
            ptr += t
    else:
        for G in groups:
            offset = 0 if len(groups) == 1 else int(S.rng.integers(S.Q))
            m, q = _fill_pairs(S, G, t, rec, np.roll(S.perm, -offset))
            mm.append(m)
            qq.append(q)
        ptr = S.Q
    mm, qq = np.concatenate(mm)[:S.remaining], np.concatenate(qq)[:S.remaining]
    sc = S.ask(mm, qq)
    rec.add(mm, qq, sc)
    cnt = np.bincount(mm, minlength=S.M)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(cnt > 0, np.bincount(mm, weights=sc, minlength=S.M) / np.maximum(cnt, 1), np.nan)
    return means, ptr, anchor


def _pooled(S: Search, rec: _Record, alive: np.ndarray, lam: float, kappa: float) -> tuple[np.ndarray, np.ndarray]:
    """Every survivor's pooled score (:mod:`~.pooled`; NaN for the others): clusters of
    near-copies from the answers so far, ``level + dev`` for their members, the additive
    fit over all survivors for singletons; and whether each model is in a cluster of two
    or more."""
    Y = rec.dense(alive, S.Q)
    m, q, s = _answers(rec)
    theta, b = rasch_fit(m, q, s, S.M, S.Q)
    labels = copy_clusters(Y, theta[alive], b[np.bincount(q, minlength=S.Q) > 0])
    out = np.full(S.M, np.nan)
    out[alive] = pooled_scores(Y, labels, lambda Z: additive_scores(Z, lam), kappa)
    copies = np.zeros(S.M, dtype=bool)
    sizes = np.bincount(labels)
    copies[alive] = sizes[labels] > 1
    S.notes[:] = [n for n in S.notes if not n.startswith("pool:")]
    S.notes.append(f"pool: {int(np.sum(sizes > 1))} clusters of near-copies (largest {int(sizes.max())}) "
                   f"among the {alive.size} survivors at the last pooled cut")
    return out, copies


def run_grouped_halving(S: Search, k: int, group: int | None = None, rel_until: int | None = None,
                        lam: float | None = None, focus: int | None = None, irt: bool | None = None,
                        early_group: int | None = None, pool: bool | None = None, anchor: int | None = None,
                        pool_until: int | None = None, kappa: float | None = None, **opts) -> None:
    """Sequential Halving with paired comparisons inside random groups (module docstring)."""
    pool = POOL if pool is None else bool(pool)
    anchor = ANCHOR if anchor is None else int(anchor)
    pool_until = POOL_UNTIL if pool_until is None else int(pool_until)
    kappa = KAPPA if kappa is None else float(kappa)
    group = GROUP_SIZE if group is None else max(1, int(group))
    rel_until = REL_UNTIL if rel_until is None else int(rel_until)
    lam = RIDGE if lam is None else float(lam)
    focus = FOCUS if focus is None else int(focus)
    irt = IRT if irt is None else bool(irt)
    early_group = (EARLY_GROUP or group) if early_group is None else max(1, int(early_group))
    sizes, q = halving_plan(S.M, S.B, S.Q, k)
    rec = _Record(S.M)
    rel = np.zeros(S.M)
    alive, ptr, anchored = np.arange(S.M), 0, 0
    for r, (n_r, q_r) in enumerate(zip(sizes, q)):
        before = S.spent
        groups = _split(S, alive, early_group if alive.size > EARLY_UNTIL else group)
        keep = sizes[r + 1] if r + 1 < len(sizes) else min(k, alive.size)
        means = np.full(S.M, np.nan)
        pooling = pool and alive.size <= pool_until
        if q_r > 0 and S.remaining > 0:
            means, ptr, a_r = _ask_round(S, groups, int(q_r), rec, ptr, focus=0 < alive.size <= focus,
                                         irt=irt, anchor=max(0, anchor - anchored) if pooling else 0)
            anchored += a_r
        pooled, copies = _pooled(S, rec, alive, lam, kappa) if pooling and rec.log else (None, None)
        cost = S.spent - before
        S.rounds.append(Round(r, int(alive.size), int(cost // max(alive.size, 1)), int(cost)))
        kept = []
        for G, kk in zip(groups, _keep_counts(S, np.array([G.size for G in groups]), keep)):
            mu = means[G]
            ok = np.isfinite(mu)
            if ok.any():
                rel[G] += np.where(ok, mu - mu[ok].mean(), 0.0) * q_r
            if pooled is not None and copies[G].any():
                scores = pooled[G]
            elif int(S.counts[G].min()) < rel_until:
                scores = rel[G]
            else:
                scores = additive_scores(rec.dense(G, S.Q), lam)
            kept.append(S.top(G, int(kk), scores=scores))
        new = np.concatenate(kept)
        S.eliminated_round[np.setdiff1d(alive, new)] = r
        alive = np.sort(new)
