"""Operators of CREATE TASK and DISCOVER (Hidden Gems).

``Discover`` runs :func:`zooql.methods.hidden_gems.discover.discover` with an oracle that answers
each (model, query) pair from the hub's outcome cache (``discover_cache``) when it can and
from the task's evaluation source (:mod:`zooql.core.tasks`) otherwise, storing every new
evaluation in the cache inside the statement's transaction. Cached evaluations count
toward the search's budget (the method sees no difference) but not as new spend.

EXPLAIN prints the schedule before anything is spent: one ``Round`` line per planned round
of the SH-type strategies (``gems``, ``sequential_halving``, ``uniform``, ...), or one
``Adaptive`` line for strategies that decide as they go. EXPLAIN ANALYZE adds, on each
line, what actually happened (``actual=survivors x queries``, new and cached evaluations).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from zooql.plan.nodes import Detail, ExecContext, Expr, OpStats, Operator, Rows
from zooql.errors import ExecutionError

RESULT_COLUMNS = ("rank", "model", "score", "queries", "eliminated_round", "hidden_gem")
RESULT_TYPES = ("BIGINT", "VARCHAR", "DOUBLE", "BIGINT", "BIGINT", "BOOLEAN")


@dataclass(frozen=True)
class DiscoverRound(Detail):
    """One planned elimination round (a plan line of ``Discover``, which runs the search)."""

    name: ClassVar[str] = "Round"
    index: int = 0
    survivors: int = 0
    queries_per_model: int = 0
    cost: int = 0

    def explain_params(self):
        return {"index": self.index, "survivors": self.survivors,
                "queries_per_model": self.queries_per_model, "cost": self.cost}


@dataclass(frozen=True)
class DiscoverAdaptive(Detail):
    """An adaptive strategy: no fixed schedule, it decides as evaluations come in."""

    name: ClassVar[str] = "Adaptive"
    strategy: str = ""
    description: str = ""

    def explain_params(self):
        return {"strategy": self.strategy, "description": self.description}


@dataclass(frozen=True)
class Discover(Operator):
    tree: str = ""
    task: str = ""
    source: str = ""                 # recorded | live | python
    strategy: str = "sequential_halving"
    k: int = 1
    budget: int = 0                  # total evaluations planned (B), already capped at M * Q
    requested: int | None = None     # the BUDGET asked for, when it exceeded M * Q
    per_model: int | None = None     # N of BUDGET N PER MODEL
    n_models: int = 0
    n_queries: int = 0
    seed: int = 0
    filter: str | None = None
    models_sql: str = ""
    models_params: tuple = ()
    options: tuple = ()              # (key, value) pairs passed to the strategy
    show_all: bool = False
    batch_size: int = 64
    planned: int | None = None       # total cost of the planned rounds (SH-type strategies)
    rounds: tuple = ()               # plan details (Round / Adaptive lines)
    writes: ClassVar[bool] = True    # the outcome cache
    short_writes: ClassVar[bool] = True   # written in one short transaction at the end
    runs_models: ClassVar[bool] = True    # live evaluations run through the executor

    @property
    def details(self):
        return tuple(self.rounds)

    def explain_params(self):
        return {"tree": self.tree, "task": self.task, "source": self.source, "strategy": self.strategy,
                "k": self.k, "budget": self.budget, "requested": self.requested, "per_model": self.per_model,
                "models": self.n_models, "queries": self.n_queries, "planned": self.planned,
                "seed": self.seed, "filter": Expr(self.filter) if self.filter else None,
                "options": dict(self.options) if self.options else None}

    # ---- execution -----------------------------------------------------------------------
    def _models(self, ctx) -> list[dict]:
        cols = ("id", "name", "source", "checkpoint", "loadable", "downloads", "preprocess")
        rows = ctx.con.execute(self.models_sql, list(self.models_params)).fetchall()
        out = []
        for r in rows:
            d = dict(zip(cols, r))
            d["preprocess"] = json.loads(d["preprocess"]) if d["preprocess"] else None
            out.append(d)
        if not out:
            raise ExecutionError(f"tree {self.tree!r} has no models"
                                 + (f" matching WHERE {self.filter}" if self.filter else ""))
        return out

    def run(self, ctx: ExecContext, inputs):
        from zooql.core import evaluators as E
        from zooql.methods.hidden_gems import discover as D

        models = self._models(ctx)
        M = len(models)
        src = E.open_source(ctx.con, self.task, models, trusted=bool(ctx.setting("trust_code", False)),
                            runtime_fn=lambda: ctx.runtime, batch_size=self.batch_size)
        Q = len(src.query_ids)
        asked = self.per_model * M if self.per_model is not None else (self.requested or self.budget)
        B = int(min(asked, M * Q))
        from zooql.runtime.executors import executor_for

        oracle = _CachedOracle(src, Q, _load_cache(ctx.con, src, models, Q),
                               lambda done: ctx.report(f"discover {self.task}", done, B),
                               executor_for(ctx) if src.kind == "live" else None)
        try:
            res = D.discover(oracle, M, Q, B, strategy=self.strategy, seed=self.seed, k=self.k,
                             **dict(self.options))
        except D.DiscoverBudgetError as exc:  # pragma: no cover - a bug in a strategy
            raise ExecutionError(f"internal error in strategy {self.strategy}: {exc}") from None
        except TypeError as exc:
            raise ExecutionError(f"strategy {self.strategy} rejected its OPTIONS: {exc}") from None
        finally:
            src.close()
        _store_new(ctx, src, models, oracle)
        n_new = len(oracle.new_m)
        cached = res.spent - n_new
        rows = self._result_rows(models, res, self._hidden_gems(models, src, oracle.cache, Q))
        self._record_stats(ctx, res, oracle.calls, n_new, cached, [models[i]["name"] for i in res.ranking])
        best = ", ".join(models[i]["name"] for i in res.ranking)
        msg = (f"{self.strategy} searched {M} models of tree {self.tree} on {self.task}: spent {res.spent} "
               f"of budget {B} ({n_new} new evaluations, {cached} cached); best: {best}")
        if src.dropped:
            msg += f"; pool: {Q} queries every model has outcomes for ({src.dropped} left out)"
        if asked > B:
            msg += f"; budget capped at models x queries = {B}"
        return Rows(list(RESULT_COLUMNS), rows, message=msg, types=RESULT_TYPES)

    def _result_rows(self, models, res, gems) -> list[tuple]:
        est, elim = res.estimates, res.eliminated_round
        if self.show_all:
            key_est = np.where(np.isnan(est), -np.inf, est)
            order = [int(i) for i in np.lexsort((np.arange(len(models)), -key_est,
                                                 -np.where(elim < 0, 10**9, elim)))]
        else:
            order = list(res.ranking)
        return [(rank, models[i]["name"], None if np.isnan(est[i]) else float(est[i]),
                 int(res.n_evaluated[i]), None if elim[i] < 0 else int(elim[i]) + 1,
                 None if gems is None else bool(gems[i]))
                for rank, i in enumerate(order, 1)]

    def _hidden_gems(self, models, src, cache, Q):
        """is_hidden_gem per model when every model's full score is known, else None."""
        full = src.full_scores()
        M = len(models)
        if full is None and len(cache) >= M * Q:
            full = np.array([np.mean([cache[i * Q + j] for j in range(Q)]) for i in range(M)])
        downloads = [m["downloads"] for m in models]
        if full is None or all(d is None for d in downloads):
            return None
        from zooql.methods.hidden_gems.discover import is_hidden_gem

        d = np.array([0 if x is None else x for x in downloads], dtype=np.float64)
        return [is_hidden_gem(full, d, i) for i in range(M)]

    def _record_stats(self, ctx, res, calls, n_new, cached, best):
        st = ctx.stats.setdefault(id(self), OpStats())
        st.extra = {"spent": int(res.spent), "new": int(n_new), "cached": int(cached), "best": best}
        rounds = [r for r in self.rounds if isinstance(r, DiscoverRound)]
        actual = [r for r in res.rounds]
        if rounds:
            # SH-type strategies call the oracle once per round that spends anything
            it = iter(calls)
            for op, r in zip(rounds, actual):
                rst = ctx.stats.setdefault(id(op), OpStats())
                rst.rows = int(r.survivors)
                extra = {"actual": f"{r.survivors}x{r.queries_per_model}", "spent": int(r.cost)}
                if r.cost > 0:
                    c = next(it, None)
                    if c is not None and c[0] == r.cost:
                        extra.update(new=c[1], cached=c[0] - c[1])
                        rst.elapsed = c[2]
                rst.extra = extra
        else:
            for op in self.rounds:
                rst = ctx.stats.setdefault(id(op), OpStats())
                rst.rows = len(calls)
                rst.extra = {"batches": len(calls)}
                if actual:
                    rst.extra["rounds"] = [f"{r.survivors}x{r.queries_per_model}" for r in actual]


def _drop_cached(ctx: ExecContext, model_id: int, name: str) -> None:
    ctx.con.execute("DELETE FROM discover_cache WHERE model_id = ?", [model_id])


# ---- the outcome cache ---------------------------------------------------------------------

def _load_cache(con, src, models: list[dict], Q: int) -> dict[int, float]:
    """Cached evaluations of this task definition: (model index * Q + query index) -> score.
    A damaged score (not a finite number; CHECK HUB reports it) is not replayed: the pair is
    evaluated again."""
    id_to_idx = {m["id"]: i for i, m in enumerate(models)}
    q_to_idx = {q: j for j, q in enumerate(src.query_ids)}
    cache: dict[int, float] = {}
    for mid, qid, score in con.execute(
            "SELECT model_id, query_id, score FROM discover_cache WHERE task = ? AND fingerprint = ? "
            "AND list_contains(?, model_id) AND isfinite(score)", [src.task, src.fingerprint, list(id_to_idx)]).fetchall():
        j = q_to_idx.get(qid)
        if j is not None:
            cache[id_to_idx[mid] * Q + j] = float(score)
    return cache


class _CachedOracle:
    """The oracle DISCOVER's strategies call: answers (model, query) pairs from the cache
    when it can and from the task's evaluation source otherwise, remembering what was new."""

    def __init__(self, src, Q: int, cache: dict[int, float], report, executor=None):
        self.src, self.Q, self.cache, self.report = src, Q, cache, report
        self.executor = executor      # runs the live evaluations' forward passes (zooql.runtime.executors)
        self.recorded = src.kind == "recorded"
        self.new_m: list[int] = []
        self.new_q: list[int] = []
        self.new_s: list[float] = []
        self.calls: list[tuple[int, int, float]] = []     # (evaluations, new, seconds) per call
        self.done = 0

    def __call__(self, mi: np.ndarray, qi: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        keys = (mi * self.Q + qi).tolist()
        hit = np.fromiter((k in self.cache for k in keys), dtype=bool, count=len(keys))
        scores = np.empty(len(keys))
        if self.recorded:
            scores[:] = self.src.evaluate(mi, qi)
        else:
            if hit.any():
                scores[hit] = [self.cache[k] for k, h in zip(keys, hit) if h]
            miss = np.nonzero(~hit)[0]
            mm = mi[miss]
            groups = [miss[mm == m] for m in np.unique(mm)]
            if self.executor is not None and hasattr(self.src, "evaluate_many"):
                requests = [(int(mi[g[0]]), qi[g]) for g in groups]
                done = self.done
                for r, s in self.src.evaluate_many(requests, self.executor):
                    scores[groups[r]] = np.asarray(s, dtype=np.float64)
                    done += len(groups[r])
                    self.report(done)
            else:
                for sel in groups:
                    self.report(self.done)
                    scores[sel] = np.asarray(self.src.evaluate(int(mi[sel[0]]), qi[sel]), dtype=np.float64)
        miss = np.nonzero(~hit)[0]
        for j in miss:
            self.cache[keys[j]] = float(scores[j])
        self.new_m.extend(mi[miss].tolist())
        self.new_q.extend(qi[miss].tolist())
        self.new_s.extend(scores[miss].tolist())
        self.done += len(keys)
        self.calls.append((len(keys), int(miss.size), time.perf_counter() - t0))
        self.report(self.done)
        return scores


def _store_new(ctx, src, models: list[dict], oracle: _CachedOracle) -> None:
    """Insert the evaluations this search paid for into discover_cache, in one short write
    transaction (the evaluations ran without the catalog open read-write)."""
    if not oracle.new_m:
        return
    import pyarrow as pa

    n = len(oracle.new_m)
    data = pa.table({
        "task": pa.array([src.task] * n, pa.string()),
        "fingerprint": pa.array([src.fingerprint] * n, pa.string()),
        "model_id": pa.array([models[i]["id"] for i in oracle.new_m], pa.int32()),
        "model": pa.array([models[i]["name"] for i in oracle.new_m], pa.string()),
        "query_id": pa.array([src.query_ids[j] for j in oracle.new_q], pa.string()),
        "score": pa.array(oracle.new_s, pa.float64())})
    con = ctx.begin_write()
    con.execute("SELECT 1").fetchall()  # finish any pending result (register refuses otherwise)
    con.register("_zooql_discover_new", data)
    try:
        con.execute("INSERT INTO discover_cache (task, fingerprint, model_id, model, query_id, score) "
                    "SELECT task, fingerprint, model_id, model, query_id, score FROM _zooql_discover_new")
    finally:
        con.unregister("_zooql_discover_new")
