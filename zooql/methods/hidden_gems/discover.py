"""DISCOVER: find the best models of a repository under a fixed evaluation budget.

Implements the search method of *Discovering Hidden Gems in Model Repositories*
(Kahana, Horwitz & Hoshen, arXiv 2601.22157, 2026) as a pure-numpy engine module, plus
the bandit baselines it is compared against and our own variant ``gems_adaptive``.

Problem
-------
Fixed-budget best-arm identification: ``M`` models (arms), a pool of ``Q`` queries and
an oracle ``oracle(model_idx, query_idx) -> scores in [0, 1]`` (elementwise over the two
int arrays). A budget of ``N`` queries per model means a total of ``B = N * M``
evaluations. Every strategy spends at most ``B`` evaluations and never asks the same
(model, query) pair twice in one search (the :class:`~.discover_core.Search` object
enforces both and raises ``DiscoverBudgetError`` on a violation).

The paper's method (``gems``)
-----------------------------
Sequential Halving with two changes:

1. **Correlated sampling.** In each round all surviving models answer the *same*
   queries, drawn without replacement from the pool and disjoint from the queries of
   earlier rounds (one random permutation of the pool is consumed block by block).
   All survivors therefore always share an identical query set, so their running means
   are compared on the same questions: query difficulty cancels out of every comparison.
2. **Aggressive schedule.** Round 1 evaluates all ``M`` models with 60% of the budget
   (``q1 = 0.6 N``) and keeps a fixed ``K = 100`` models (all of them if ``M <= 100``).
   Then ``K, K/2, K/4, K/8`` models (100 -> 50 -> 25 -> 12, floor) share the remaining 40%
   *equally per round*; since the survivors halve, queries per model double:

       q_r = 0.4 * B / L / (K / 2**(r-2)),   r = 2..L+1,  L = 4 later rounds

   (nominal, un-rounded survivor counts, so the 12-model round gets ``12 * q`` and the
   plan stays within budget). The final answer is the top-k by running mean over all
   shared queries. ``L`` generalises as "halve while at least ``max(k+1, K//8)`` remain".

**How this rule relates to the paper's Table 4.** Table 4 lists, for N = 10/25/50/100/200,
queries per model 6/16/30/60/120, 15/40/75/150/300, 30/75/150/300/600, 60/150/300/600/1200
and 120/300/600/1200/2400. ``q1 = 0.6 N`` matches every row. The later rounds are
``1.5N, 3N, 6N, 12N`` for N >= 50 and ``3N, 6N, 12N`` in rounds 3-5 for every N: exactly the
equal-cost rule above with ``M = 1500`` (``0.4 * N * 1500 / 4 = 150 N`` per round). The
table therefore assumes a tree of about 1,500 models: for smaller trees the same per-model
numbers would overspend the budget, so they must scale with ``M``. Two cells do not
follow any proportional rule: round 2 at N = 10 (16, the rule gives 15) and at N = 25 (40,
rule 37.5). No rounding of ``c * N`` to a fixed granularity ``g`` can give both 40 (from 37.5)
and 75 (from 75): ``g`` would have to divide 40 and 75, so ``g`` in {1, 5}, and both map 15 to 15,
not 16. We read them as the paper's hand rounding. ``schedule(..., paper_table4=True)``
reproduces Table 4 *exactly* by scaling the printed later-round numbers by ``M / 1510``
(1510 being the smallest tree size at which all five rows fit their budget; the N = 10 and
25 rows overspend by 40 and 100 evaluations at ``M = 1500``). The default uses the
continuous rule, which differs from the table only in those two cells.

**Pool cap.** A model cannot answer more than ``Q`` distinct queries, so cumulative
per-model queries are capped at ``Q``; the budget this frees is given back by scaling
all rounds up by a common factor (:func:`~.discover_core.plan_counts`), i.e. mainly to
the earlier, larger rounds. With ``Q = 2,500``, ``M ~ 1,600`` and ``N >= 100`` the
finalists answer the whole pool, so their order is the full-evaluation order. A budget
of ``M * Q`` or more short-cuts every strategy to exhaustive evaluation.

Strategies
----------
``gems`` (the paper), ``gems_independent`` (aggressive schedule, each model its own random
queries), ``gems_sh_schedule`` (correlated sampling, standard halving schedule),
``sequential_halving`` (Karnin et al. 2013: ``ceil(log2(M/k))`` rounds, equal budget per
round, independent sampling), ``uniform`` (all models on the same ``B/M`` queries),
``successive_rejects`` (Audibert & Bubeck 2010), ``ucb`` (UCB1), ``ucb_e`` (UCB-E),
``ucb_stddev`` (UCB with empirical standard deviation), ``ttts`` (top-two Thompson
sampling) and ``gems_adaptive`` (ours, see :mod:`~.discover_adaptive`). The default is
``grouped_halving`` (see :mod:`~.grouped`: Sequential Halving's plan, shared queries
inside random groups of ~16 survivors, fresh queries across groups), chosen by the default
check of ``benchmarks/discover_bench.py --parts d``: on trees with dense clusters of
near-identical fine-tunes, sharing queries among all survivors lets copies share their
luck, and independent sampling loses the paired comparison everywhere else; groups get
both. The index
policies and TTTS are *batched* (``n_steps=50`` batches; within a batch, pulls are
allocated as the sequential policy would if means stayed fixed), independent sampling.

Hidden gems
-----------
:func:`is_hidden_gem`: a model that is *not* in the top 1% by downloads, *is* in the top
1% by performance, and is strictly better than the best popular (top-1%-downloads)
model.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from zooql.methods.hidden_gems.adaptive import run_gems_adaptive
from zooql.methods.hidden_gems.core import DiscoverBudgetError, DiscoverResult, Oracle, Round, Search
from zooql.methods.hidden_gems.grouped import run_grouped_halving
from zooql.methods.hidden_gems.strategies import (PAPER_TABLE4, PAPER_TABLE4_M, _rounds, aggressive_plan,
                                  halving_plan, run_gems, run_halving_hybrid, run_sequential_halving,
                                  run_successive_rejects, run_ttts, run_ucb, run_ucb_e,
                                  run_ucb_stddev, run_uniform)

__all__ = ["Round", "DiscoverResult", "DiscoverBudgetError", "schedule", "discover",
           "STRATEGIES", "is_hidden_gem", "PAPER_TABLE4", "PAPER_TABLE4_M", "describe"]


def _gems(S, k, **o):
    run_gems(S, k, correlated=True, schedule="aggressive", **o)


def _gems_independent(S, k, **o):
    run_gems(S, k, correlated=False, schedule="aggressive", **o)


def _gems_sh_schedule(S, k, **o):
    run_gems(S, k, correlated=True, schedule="halving", **o)


# name -> (runner, short description); order = how EXPLAIN/benchmarks list them
STRATEGIES: dict[str, tuple[Callable, str]] = {
    "gems": (_gems, "Sequential Halving, correlated sampling, aggressive schedule (paper)"),
    "gems_adaptive": (run_gems_adaptive, "ours: correlated sampling, halving re-planned each round (adaptive elimination factor), paired-difference elimination, exhaustive finals"),
    "gems_independent": (_gems_independent, "ablation: aggressive schedule, independent sampling"),
    "gems_sh_schedule": (_gems_sh_schedule, "ablation: correlated sampling, standard halving schedule"),
    "sequential_halving": (run_sequential_halving, "Sequential Halving (Karnin et al. 2013), independent sampling"),
    "grouped_halving": (run_grouped_halving, "Sequential Halving, shared queries inside random groups of ~16 survivors (paired comparisons), fresh queries across groups; the last ~32 survivors answer the queries most informative at their level first"),
    "halving_hybrid": (run_halving_hybrid, "Sequential Halving, independent sampling while many models survive, shared queries among the finalists"),
    "successive_rejects": (run_successive_rejects, "Successive Rejects (Audibert & Bubeck 2010)"),
    "uniform": (run_uniform, "every model on the same B/M queries"),
    "ucb": (run_ucb, "UCB1, batched"),
    "ucb_e": (run_ucb_e, "UCB-E (Audibert & Bubeck 2010), batched"),
    "ucb_stddev": (run_ucb_stddev, "UCB with empirical standard deviation, batched"),
    "ttts": (run_ttts, "top-two Thompson sampling (Russo 2016), Beta posterior, batched"),
}

_SH_TYPE = {"gems", "gems_independent", "gems_sh_schedule", "sequential_halving", "halving_hybrid", "grouped_halving",
            "uniform"}


def describe(strategy: str) -> str:
    _check(strategy)
    return STRATEGIES[strategy][1]


def _check(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown discover strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")


def schedule(strategy: str, n_models: int, budget_total: int, n_queries: int, k: int = 1,
             **opts) -> list[Round]:
    """The plan of an SH-type strategy, before anything is spent (for EXPLAIN).

    Adaptive strategies (UCB family, TTTS, successive rejects, gems_adaptive) decide as
    they go and return ``[]``; :func:`describe` gives their one-line description."""
    _check(strategy)
    M, Q = int(n_models), int(n_queries)
    B = int(max(0, min(budget_total, M * Q)))
    if M < 1:
        return []
    if strategy in ("gems", "gems_independent"):
        sizes, q = aggressive_plan(M, B, Q, k, **{n: opts[n] for n in ("keep", "first_frac", "final", "paper_table4") if n in opts})
    elif strategy in ("gems_sh_schedule", "sequential_halving", "halving_hybrid", "grouped_halving"):
        sizes, q = halving_plan(M, B, Q, k)
    elif strategy == "uniform":
        sizes, q = [M], [min(Q, B // M)]
    else:
        return []
    return _rounds(sizes, q)


def discover(oracle: Oracle, n_models: int, n_queries: int, budget_total: int,
             strategy: str = "grouped_halving", seed: int = 0, k: int = 1, **opts) -> DiscoverResult:
    """Search for the top-``k`` models with at most ``budget_total`` oracle evaluations.

    ``oracle(model_idx, query_idx)`` gets two equally long int64 arrays and returns the
    scores (in [0, 1]) of those pairs. It is called in batches (one call per round for the
    SH-type strategies, one per step for the adaptive ones). ``opts`` are passed to the
    strategy (e.g. ``keep=100, first_frac=0.6, paper_table4=True`` for ``gems``,
    ``n_steps=50`` for the batched policies, ``prior=`` scores for ``gems_adaptive``).
    ``strict=True`` additionally checks each batch for duplicate pairs."""
    _check(strategy)
    if k < 1:
        raise ValueError("k must be >= 1")
    M, Q = int(n_models), int(n_queries)
    strict = bool(opts.pop("strict", False))
    rng = np.random.default_rng(seed)
    S = Search(oracle, M, Q, int(budget_total), rng, strict=strict,
               keep_outcomes=(strategy == "gems_adaptive"))
    k = min(int(k), M)
    runner = STRATEGIES[strategy][0]
    if S.B >= M * Q:
        # the budget covers the whole matrix: every strategy reduces to full evaluation
        S.notes.append("budget covers every (model, query) pair: exhaustive evaluation")
        run_uniform(S, k, correlated=True)
    elif S.B > 0:
        runner(S, k, **opts)
    else:
        S.notes.append("zero budget: nothing evaluated, order is arbitrary")
        S.eliminated_round[:] = 0
        S.eliminated_round[S.rng.permutation(M)[:k]] = -1
    return S.result(strategy, k)


def is_hidden_gem(full_scores, downloads, idx) -> bool:
    """The paper's definition: model ``idx`` is a hidden gem iff it is *not* in the top 1%
    by downloads, *is* in the top 1% by performance (``full_scores``), and is strictly
    better than the best popular (top-1%-by-downloads) model. Top 1% means the
    ``max(1, ceil(0.01 * M))`` highest (ties at the threshold included)."""
    s = np.asarray(full_scores, dtype=np.float64)
    d = np.asarray(downloads, dtype=np.float64)
    if s.shape != d.shape or s.ndim != 1:
        raise ValueError("full_scores and downloads must be 1-d arrays of the same length")
    n_top = max(1, int(np.ceil(0.01 * s.size)))
    d_thr = np.sort(d)[::-1][n_top - 1]
    s_thr = np.sort(s)[::-1][n_top - 1]
    popular = d >= d_thr
    if popular[idx] or s[idx] < s_thr:
        return False
    return bool(s[idx] > s[popular].max())
