"""Binder and planner registration for CREATE TASK and DISCOVER (Hidden Gems).

The binder resolves the tree, the task (a CREATE TASK task, else a dataset with imported
outcomes), the strategy and its OPTIONS, compiles WHERE over the models table, and counts
the tree's models and the task's query pool so that the planner can print the schedule
(EXPLAIN) before anything is evaluated.
"""
from __future__ import annotations

from dataclasses import dataclass

from zooql.methods.hidden_gems import discover as D
from zooql.methods.hidden_gems import ops as OD
from zooql.core import tasks as T
from zooql.errors import BindError
from zooql.methods.hidden_gems import ast as A
from zooql.core.binder import BindContext, bind_model_filter, int_of, options_dict, value_of
from zooql.plan.hooks import binds
from zooql.plan.hooks import plans
from zooql.core.where import suggest
from zooql.storage import catalog as C
from zooql.plan.logical import Logical

DEFAULT_STRATEGY = "grouped_halving"

#: OPTIONS each strategy understands (passed to :func:`zooql.methods.hidden_gems.discover.discover`)
STRATEGY_OPTIONS: dict[str, tuple[str, ...]] = {
    "gems": ("keep", "first_frac", "final", "paper_table4", "cumulative"),
    "gems_independent": ("keep", "first_frac", "final", "paper_table4", "cumulative"),
    "gems_sh_schedule": (),
    "gems_adaptive": ("z", "eta", "qmin_auto", "cluster_cap", "cluster_eps"),
    "sequential_halving": ("correlated", "cumulative"),
    "halving_hybrid": ("switch", "min_count"),
    "grouped_halving": ("group", "rel_until", "lam", "focus", "irt", "early_group", "pool", "pool_until", "anchor", "kappa"),
    "uniform": ("correlated",),
    "successive_rejects": (),
    "ucb": ("n_steps", "c"),
    "ucb_e": ("n_steps", "a"),
    "ucb_stddev": ("n_steps", "c"),
    "ttts": ("n_steps", "beta", "n_samples", "posterior"),
}
#: OPTIONS of the statement itself (not the strategy)
STATEMENT_OPTIONS = ("show_all", "batch_size", "strict")
_INT_OPTIONS = {"group": 1, "early_group": 1, "pool_until": 1, "anchor": 0, "rel_until": 0, "focus": 0, "switch": 1, "min_count": 0, "keep": 1, "final": 1, "n_steps": 1, "n_samples": 1, "qmin_auto": 0, "batch_size": 1}
_BOOL_OPTIONS = ("irt", "pool", "paper_table4", "correlated", "cumulative", "show_all", "strict", "cluster_cap")
_FRACTION_OPTIONS = ("first_frac", "beta")
_SCHEDULE_OPTIONS = ("keep", "first_frac", "final", "paper_table4")
_MODEL_COLUMNS = "id, name, source, checkpoint, loadable, downloads, preprocess"


@dataclass(frozen=True)
class BoundDiscover(Logical):
    tree: str
    task: str
    source: str                # recorded | live | python
    strategy: str
    k: int
    budget: int                # B actually planned (capped at M * Q)
    requested: int             # B as asked (N * M or the TOTAL)
    per_model: int | None
    n_models: int
    n_queries: int
    seed: int
    filter: str | None
    models_sql: str
    models_params: tuple
    options: tuple             # strategy options, (key, value) pairs
    show_all: bool = False
    batch_size: int = 64


def _int_value(node, what: str, minimum: int) -> int:
    return int_of(value_of(node), what, minimum, integral_float=True)


def _strategy_options(strategy: str, opts: dict) -> tuple[dict, dict]:
    """Split OPTIONS into (strategy options, statement options), validating both."""
    known = STRATEGY_OPTIONS.get(strategy)
    strat, stmt = {}, {}
    for key, val in opts.items():
        if key in STATEMENT_OPTIONS:
            target = stmt
        elif known is None or key in known:
            target = strat
        else:
            allowed = list(known) + list(STATEMENT_OPTIONS)
            raise BindError(f"unknown option {key!r} for strategy {strategy}{suggest(key, allowed)} "
                            f"(options: {', '.join(allowed)})")
        if key in _BOOL_OPTIONS:
            if not isinstance(val, bool):
                raise BindError(f"option {key} must be true or false, got {val!r}")
        elif key in _INT_OPTIONS:
            if isinstance(val, float) and val.is_integer():
                val = int(val)
            if not isinstance(val, int) or isinstance(val, bool) or val < _INT_OPTIONS[key]:
                raise BindError(f"option {key} must be an integer >= {_INT_OPTIONS[key]}, got {val!r}")
        elif key in _FRACTION_OPTIONS:
            if not isinstance(val, (int, float)) or isinstance(val, bool) or not 0 < val < 1:
                raise BindError(f"option {key} must be a number between 0 and 1, got {val!r}")
        elif key in ("lam", "kappa"):
            if not isinstance(val, (int, float)) or isinstance(val, bool) or val < 0:
                raise BindError(f"option {key} must be a number >= 0, got {val!r}")
        elif key == "posterior":
            if val not in ("beta", "gaussian"):
                raise BindError(f"option posterior must be 'beta' or 'gaussian', got {val!r}")
        elif known is not None and (not isinstance(val, (int, float)) or isinstance(val, bool)):
            raise BindError(f"option {key} must be a number, got {val!r}")
        target[key] = val
    return strat, stmt


def _resolve_task(name: str, bc: BindContext) -> tuple[str, dict | None]:
    tasks = T.task_rows(bc.con)
    if name in tasks:
        t = tasks[name]
        return ("python" if t["evaluator"].lower().startswith("python:") else "live"), t
    recorded = T.recorded_datasets(bc.con)
    if name in recorded:
        return "recorded", None
    if name in C.dataset_names(bc.con):
        raise BindError(f"dataset {name!r} has no recorded outcomes to replay; import them with "
                        f"IMPORT OUTCOMES (model, dataset, query_id, score) or CREATE TASK {name} FROM ...")
    candidates = sorted(set(tasks) | set(recorded))
    listing = f" (tasks and datasets with outcomes: {', '.join(candidates)})" if candidates else ""
    raise BindError(f"unknown task {name!r}{suggest(name, candidates)}; create it with CREATE TASK or "
                    f"import outcomes for a dataset of that name{listing}")


@binds(A.Discover)
def _bind_discover(stmt: A.Discover, bc: BindContext):
    tree = value_of(stmt.tree)
    trees = C.tree_names(bc.con)
    if tree not in trees:
        listing = f" (trees: {', '.join(trees)})" if trees and len(trees) <= 10 else ""
        raise BindError(f"unknown tree {tree!r}{suggest(tree, trees)}{listing}")
    task = value_of(stmt.task)
    source, task_row = _resolve_task(task, bc)
    strategy = DEFAULT_STRATEGY if stmt.strategy is None else str(value_of(stmt.strategy))
    if strategy not in D.STRATEGIES:
        raise BindError(f"unknown strategy {strategy!r}{suggest(strategy, D.STRATEGIES)} "
                        f"(strategies: {', '.join(D.STRATEGIES)})")
    budget = _int_value(stmt.budget, "BUDGET", 1)
    seed = _int_value(stmt.seed, "SEED", 0) if stmt.seed is not None else 0
    if stmt.k < 1:
        raise BindError(f"DISCOVER BEST k needs k >= 1, got {stmt.k}")
    strat_opts, stmt_opts = _strategy_options(strategy, options_dict(stmt.options))

    where, where_text = bind_model_filter(stmt.where, bc)
    sql = f"SELECT {_MODEL_COLUMNS} FROM models WHERE tree = ?"
    params = [tree]
    if where is not None:
        sql += f" AND ({where.sql})"
        params += list(where.params)
    sql += " ORDER BY name"
    rows = bc.con.execute(sql, params).fetchall()
    if not rows:
        raise BindError(f"no model of tree {tree!r} matches WHERE {where_text}")
    names = [r[1] for r in rows]
    M = len(names)

    if source == "recorded":
        shared, missing, _ = T.recorded_pool(bc.con, task, names)
        if missing:
            raise BindError(f"model(s) {', '.join(missing)} of tree {tree!r} have no recorded outcomes on "
                            f"{task!r}; import them (IMPORT OUTCOMES) or leave them out with WHERE")
        if not shared:
            raise BindError(f"no query of {task!r} has a recorded outcome for every one of the {M} searched "
                            f"models; narrow the models with WHERE")
        Q = len(shared)
    else:
        Q = int(task_row["n_queries"])
        if source == "live" and task_row["info"].get("labelled") is False:
            raise BindError(f"task {task!r} holds unlabelled images (a folder without class sub-folders); "
                            f"DISCOVER scores answers against labels: use <folder>/<class>/<image>")
        if source == "live":
            responders = set(task_row["info"].get("responses") or ())
            images = bool(task_row["info"].get("images"))
            unable = [r[1] for r in rows if r[1] not in responders and not (images and r[4])]
            if unable:
                why = "registered by name only" if images else "without recorded responses in the task file"
                raise BindError(f"model(s) {', '.join(unable)} cannot be evaluated on task {task!r} ({why}); "
                                f"models registered by name only take part through recorded outcomes or a "
                                f"python evaluator; leave them out with WHERE")

    per_model = budget if stmt.per_model else None
    requested = budget * M if stmt.per_model else budget
    return BoundDiscover(tree=tree, task=task, source=source, strategy=strategy, k=min(stmt.k, M),
                         budget=min(requested, M * Q), requested=requested, per_model=per_model,
                         n_models=M, n_queries=Q, seed=seed, filter=where_text, models_sql=sql,
                         models_params=tuple(params), options=tuple(sorted(strat_opts.items())),
                         show_all=bool(stmt_opts.get("show_all", False)),
                         batch_size=int(stmt_opts.get("batch_size", 64)))


@plans(BoundDiscover)
def _plan_discover(b: BoundDiscover):
    opts = dict(b.options)
    sched = D.schedule(b.strategy, b.n_models, b.budget, b.n_queries, b.k,
                       **{k: v for k, v in opts.items() if k in _SCHEDULE_OPTIONS})
    if sched:
        rounds = tuple(OD.DiscoverRound(index=r.index + 1, survivors=r.survivors,
                                        queries_per_model=r.queries_per_model, cost=r.cost) for r in sched)
        planned = sum(r.cost for r in sched)
    else:
        rounds = (OD.DiscoverAdaptive(strategy=b.strategy, description=D.describe(b.strategy)),)
        planned = None
    return OD.Discover(tree=b.tree, task=b.task, source=b.source, strategy=b.strategy, k=b.k,
                       budget=b.budget, requested=b.requested if b.requested != b.budget else None,
                       per_model=b.per_model, n_models=b.n_models, n_queries=b.n_queries, seed=b.seed,
                       filter=b.filter, models_sql=b.models_sql, models_params=b.models_params,
                       options=b.options, show_all=b.show_all, batch_size=b.batch_size,
                       planned=planned, rounds=rounds)
