"""Shared machinery of the DISCOVER strategies: result types, the search state
(budget accounting, no-repeat guard, query streams) and the round planner.

See :mod:`zooql.methods.hidden_gems.discover` for the public API and the method description.
Everything here is pure numpy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

Oracle = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Round:
    """One elimination round: ``survivors`` models each answer ``queries_per_model``
    new queries, so the round costs ``survivors * queries_per_model`` evaluations."""

    index: int
    survivors: int
    queries_per_model: int
    cost: int


@dataclass
class DiscoverResult:
    ranking: list[int]            # model indices, best first (top-k)
    estimates: np.ndarray         # estimated score per model (nan if never evaluated)
    n_evaluated: np.ndarray       # queries each model received
    eliminated_round: np.ndarray  # round each model was eliminated in (-1 = survived)
    spent: int                    # evaluations performed (<= budget)
    rounds: list[Round]           # what actually happened (empty for adaptive strategies)
    strategy: str = ""
    budget_total: int = 0
    notes: list[str] = field(default_factory=list)


class DiscoverBudgetError(RuntimeError):
    """A strategy tried to exceed the budget or to repeat a (model, query) pair.

    This is an internal invariant violation (a bug in a strategy), never a user error."""


# ---------------------------------------------------------------------------
# search state
# ---------------------------------------------------------------------------

_BITMAP_LIMIT = 64_000_000   # M*Q above which the repeat guard uses a hash set


class Search:
    """State of one search: oracle, budget, running sums, repeat guard, query streams.

    Two ways of drawing queries, both without replacement per model:

    * **shared** (correlated sampling): one random permutation ``perm`` of the pool; every
      call to :meth:`ask_shared` hands the *next* block of that permutation to all the
      given models, so all models evaluated in a round answer the same queries, and a
      block never overlaps an earlier block.
    * **own stream** (independent sampling): model ``i`` walks the permutation along its
      own random affine order ``perm[(a_i * n + c_i) mod Q]`` (``gcd(a_i, Q) = 1``, so it
      is a permutation of the pool); different models see different query sets.

    A model must use one of the two modes during a search (strategies never mix them).
    """

    def __init__(self, oracle: Oracle, n_models: int, n_queries: int, budget: int,
                 rng: np.random.Generator, *, strict: bool = False, keep_outcomes: bool = False):
        if n_models < 1 or n_queries < 1:
            raise ValueError("need at least one model and one query")
        self.oracle = oracle
        self.M = int(n_models)
        self.Q = int(n_queries)
        self.B = int(max(0, min(budget, self.M * self.Q)))
        self.rng = rng
        self.strict = strict
        self.sums = np.zeros(self.M)
        self.sumsq = np.zeros(self.M)
        self.counts = np.zeros(self.M, dtype=np.int64)
        self.spent = 0
        self.perm = rng.permutation(self.Q)
        self.shared_used = 0
        self._stride = None
        self._offset = None
        self.eliminated_round = np.full(self.M, -1, dtype=np.int64)
        self.rounds: list[Round] = []
        self.notes: list[str] = []
        self.keep_outcomes = keep_outcomes
        self.blocks: list[tuple[np.ndarray, np.ndarray]] = []   # (models, scores[n, t]) per shared block
        if self.M * self.Q <= _BITMAP_LIMIT:
            self._asked = np.zeros((self.M, self.Q), dtype=bool)
            self._asked_set = None
        else:
            self._asked = None
            self._asked_set: set[int] | None = set()

    # -- accounting -------------------------------------------------------
    @property
    def remaining(self) -> int:
        return self.B - self.spent

    def ask(self, models: np.ndarray, queries: np.ndarray) -> np.ndarray:
        """Evaluate the given (model, query) pairs; the only place the oracle is called."""
        models = np.asarray(models, dtype=np.int64).ravel()
        queries = np.asarray(queries, dtype=np.int64).ravel()
        n = models.size
        if n == 0:
            return np.zeros(0)
        if self.spent + n > self.B:
            raise DiscoverBudgetError(f"budget exceeded: {self.spent}+{n} > {self.B}")
        if self._asked is not None:
            if self._asked[models, queries].any():
                raise DiscoverBudgetError("a (model, query) pair was requested twice")
            self._asked[models, queries] = True
        else:
            keys = (models * self.Q + queries).tolist()
            if not self._asked_set.isdisjoint(keys):
                raise DiscoverBudgetError("a (model, query) pair was requested twice")
            self._asked_set.update(keys)
        if self.strict and np.unique(models * self.Q + queries).size != n:
            raise DiscoverBudgetError("duplicate (model, query) pair inside one batch")
        scores = np.asarray(self.oracle(models, queries), dtype=np.float64).ravel()
        if scores.size != n:
            raise ValueError(f"oracle returned {scores.size} scores for {n} pairs")
        if np.isnan(scores).any():
            raise ValueError("oracle returned NaN scores")
        self.spent += n
        self.sums += np.bincount(models, weights=scores, minlength=self.M)
        self.sumsq += np.bincount(models, weights=scores * scores, minlength=self.M)
        self.counts += np.bincount(models, minlength=self.M)
        return scores

    def ask_shared(self, models: np.ndarray, t: int) -> np.ndarray:
        """All ``models`` answer the next ``t`` queries of the shared permutation.
        Returns the scores as an ``[len(models), t]`` matrix."""
        models = np.asarray(models, dtype=np.int64)
        t = int(min(t, self.Q - self.shared_used))
        if t <= 0 or models.size == 0:
            return np.zeros((models.size, 0))
        block = self.perm[self.shared_used:self.shared_used + t]
        mm = np.repeat(models, t)
        qq = np.tile(block, models.size)
        s = self.ask(mm, qq).reshape(models.size, t)
        self.shared_used += t
        if self.keep_outcomes:
            self.blocks.append((models.copy(), s))
        return s

    def _init_streams(self):
        Q = self.Q
        a = self.rng.integers(1, max(Q, 2), size=self.M) if Q > 1 else np.ones(self.M, np.int64)
        bad = np.gcd(a, Q) != 1
        while bad.any():   # resample until coprime with Q (units are dense, ends fast)
            a[bad] = self.rng.integers(1, Q, size=int(bad.sum()))
            bad = np.gcd(a, Q) != 1
        self._stride = a.astype(np.int64)
        self._offset = self.rng.integers(0, Q, size=self.M).astype(np.int64)

    def stream_queries(self, models: np.ndarray, t: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
        """Next ``t`` (scalar or per model) query ids of each model's own stream."""
        if self._stride is None:
            self._init_streams()
        models = np.asarray(models, dtype=np.int64)
        t = np.broadcast_to(np.asarray(t, dtype=np.int64), models.shape)
        t = np.minimum(t, self.Q - self.counts[models])
        mm = np.repeat(models, t)
        if mm.size == 0:
            return mm, mm
        # position within each model's stream: counts[m] + 0..t-1
        starts = np.repeat(np.cumsum(t) - t, t)
        pos = np.arange(mm.size, dtype=np.int64) - starts + self.counts[mm]
        qq = self.perm[(self._stride[mm] * pos + self._offset[mm]) % self.Q]
        return mm, qq

    def ask_stream(self, models: np.ndarray, t) -> tuple[np.ndarray, np.ndarray]:
        """Each of ``models`` answers its next ``t`` own-stream queries; returns
        ``(model of each evaluation, score)``."""
        mm, qq = self.stream_queries(models, t)
        return mm, self.ask(mm, qq)

    # -- estimates --------------------------------------------------------
    def means(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, self.sums / np.maximum(self.counts, 1), np.nan)

    def top(self, models: np.ndarray, n: int, scores: np.ndarray | None = None) -> np.ndarray:
        """The ``n`` best of ``models`` by ``scores`` (default: running mean), random tie-break."""
        models = np.asarray(models, dtype=np.int64)
        if n >= models.size:
            return models
        sc = self.means()[models] if scores is None else np.asarray(scores)
        sc = np.where(np.isnan(sc), -np.inf, sc)
        order = np.lexsort((self.rng.random(models.size), -sc))
        return models[order[:n]]

    def result(self, strategy: str, k: int) -> DiscoverResult:
        est = self.means()
        elim = self.eliminated_round.copy()
        # best first: survivors first, then later-eliminated, then by estimate
        key_est = np.where(np.isnan(est), -np.inf, est)
        order = np.lexsort((np.arange(self.M), -key_est, -np.where(elim < 0, 10**9, elim)))
        ranking = [int(i) for i in order[:k]]
        return DiscoverResult(ranking=ranking, estimates=est, n_evaluated=self.counts.copy(),
                              eliminated_round=elim, spent=int(self.spent), rounds=list(self.rounds),
                              strategy=strategy, budget_total=int(self.B), notes=list(self.notes))


# ---------------------------------------------------------------------------
# round planner
# ---------------------------------------------------------------------------

def plan_counts(n_eval: list[int], weights: list[float], nominal: list[float], budget: int,
                pool: int) -> list[int]:
    """Integer queries per model for each round.

    Round ``r`` evaluates ``n_eval[r]`` models and is meant to cost ``weights[r] * budget``
    with ``q_r = floor(weights[r] * budget / nominal[r])`` queries per model (``nominal``
    are the un-rounded survivor counts, e.g. 12.5 for "100 halved three times", which makes
    per-model queries exactly double from round to round; ``nominal[r] >= n_eval[r]`` keeps
    the plan within budget).

    Caps: a model cannot answer more than ``pool`` distinct queries, so the cumulative
    count ``sum_{s<=r} q_s`` is capped at ``pool``.  Budget freed by the cap is given back
    *honestly*: all rounds are scaled up by a common factor ``lam >= 1`` (bisection; the
    total cost is monotone in ``lam`` because earlier rounds never have fewer models than
    later ones) until the budget is used or every round is capped.  Never exceeds ``budget``.
    """
    R = len(n_eval)

    def counts(lam: float) -> tuple[list[int], int]:
        out, used, cost = [], 0, 0
        for r in range(R):
            q = int(math.floor(lam * weights[r] * budget / nominal[r] + 1e-9))
            q = max(0, min(q, pool - used))
            used += q
            cost += q * n_eval[r]
            out.append(q)
        return out, cost

    q1, c1 = counts(1.0)
    if c1 > budget:   # defensive: nominal < n_eval somewhere; shrink instead
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if counts(mid)[1] <= budget else (lo, mid)
        return counts(lo)[0]
    capped = any(q1[r] < math.floor(weights[r] * budget / nominal[r] + 1e-9) for r in range(R))
    if not capped:
        return q1
    lo, hi = 1.0, 2.0
    while counts(hi)[1] <= budget:
        if counts(hi)[0] == counts(hi * 1e6)[0]:   # everything capped: nothing left to buy
            return counts(hi)[0]
        lo, hi = hi, hi * 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if counts(mid)[1] <= budget else (lo, mid)
    return counts(lo)[0]


def halving_sizes(start: int, stop: int) -> list[int]:
    """start, floor(start/2), ... while >= stop (at least [start])."""
    out = [int(start)]
    while out[-1] // 2 >= max(stop, 1) and out[-1] > 1:
        out.append(out[-1] // 2)
    return out
