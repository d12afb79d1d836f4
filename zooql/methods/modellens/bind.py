"""Binders and planners of RECOMMEND MODELS and TRAIN RECOMMENDER (ModelLens).

The binder reads the catalog to settle everything the plan shows: the metric (the
dataset's most common one by default), the effective description (DESCRIBED AS, else the
datasets table), the GIVEN seeds, the WHERE filter over registered model metadata, and
whether the cached recommender can be reused (fingerprint check). The last decides
whether the statement writes: a RECOMMEND that must (re)train caches the fit and so runs
as a write statement; one that reuses the cache is read-only.
"""
from __future__ import annotations

from dataclasses import dataclass

from zooql.methods.modellens import ops as R
from zooql.plan.nodes import Operator
from zooql.errors import BindError
from zooql.methods.modellens import ast as A
from zooql.core.binder import BindContext, bind_model_filter, options_dict, value_of
from zooql.plan.hooks import binds
from zooql.plan.hooks import plans
from zooql.core.where import Compiled, suggest
from zooql.plan.logical import Logical

DEFAULT_TOP = 10
_NO_EVALUATIONS = ("no evaluations in this hub; IMPORT EVALUATIONS FROM 'file.csv' first "
                   "(columns model, dataset, metric, score)")


@dataclass(frozen=True)
class BoundRecommend(Logical):
    dataset: str
    metric: str
    method: str
    top: int
    case: str                       # known | text | given | text+given | prior
    description: str | None
    given: tuple                    # (model, score) pairs
    where: Compiled | None
    where_text: str | None
    include_observed: bool
    options: tuple                  # baseline options as (key, value) pairs
    reuse: bool = True
    reason: str | None = None
    config: tuple = ()
    chosen: str | None = None       # method auto: what will rank the dataset (when known)
    weights: tuple = ()


@dataclass(frozen=True)
class BoundTrainRecommender(Logical):
    reuse: bool
    reason: str | None
    config: tuple
    options: tuple
    chosen: str | None = None       # the cached validation choice (when reused)
    weights: tuple = ()
    validation: tuple = ()


def _number(v, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise BindError(f"{what} must be a number, got {v!r}")
    return float(v)


def _check_option(key: str, value, want: type, method: str):
    if want is bool and isinstance(value, str) and value.lower() in ("true", "false", "on", "off"):
        value = value.lower() in ("true", "on")
    if want is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if value is None or isinstance(value, bool) != (want is bool) or not isinstance(value, want):
        what = {bool: "true or false", int: "an integer", str: "a 'string'"}.get(want, want.__name__)
        raise BindError(f"option {key} of RECOMMEND ... USING {method} expects {what}, got {value!r}")
    return value


def _recommend_options(stmt, method: str, con) -> tuple[bool, list]:
    """OPTIONS of RECOMMEND, validated for the method: (include_observed, [(key, value)])."""
    allowed = {**R.COMMON_OPTIONS, **R.METHOD_OPTIONS[method]}
    include_observed, options = True, []
    for key, value in options_dict(stmt.options).items():
        if key not in allowed:
            raise BindError(f"unknown option {key!r} for RECOMMEND ... USING {method}"
                            f"{suggest(key, allowed)} (options: {', '.join(sorted(allowed))})")
        value = _check_option(key, value, allowed[key], method)
        if key == "include_observed":
            include_observed = value
        else:
            options.append((key, value))
    if R.evaluation_count(con) == 0:
        raise BindError(f"RECOMMEND needs evaluations to learn from: {_NO_EVALUATIONS}")
    for key, value in options:
        if key == "reference":
            names = [r[0] for r in con.execute("SELECT DISTINCT dataset FROM evaluations ORDER BY 1").fetchall()]
            if value not in names:
                raise BindError(f"reference dataset {value!r} has no evaluations{suggest(value, names)}")
    return include_observed, options


def _given_scores(stmt, con) -> list[tuple[str, float]]:
    """GIVEN (model = score, ...): seed scores of evaluated models, each named once."""
    models = [r[0] for r in con.execute(
        "SELECT DISTINCT model FROM evaluations WHERE score IS NOT NULL AND isfinite(score) "
        "ORDER BY 1").fetchall()]
    model_set = set(models)
    given, seen = [], set()
    for opt in stmt.given:
        name = opt.key
        if name not in model_set:
            raise BindError(f"GIVEN model {name!r} has no evaluations{suggest(name, models)}; "
                            f"seed scores must be for models of the evaluations table")
        if name in seen:
            raise BindError(f"GIVEN model {name!r} appears twice")
        seen.add(name)
        given.append((name, _number(value_of(opt.value), f"GIVEN score of {name}")))
    return given


@binds(A.Recommend)
def _bind_recommend(stmt: A.Recommend, bc: BindContext):
    con = bc.con
    dataset = value_of(stmt.dataset)
    if not isinstance(dataset, str) or not dataset:
        raise BindError(f"RECOMMEND ... FOR DATASET needs a dataset name, got {dataset!r}")

    method = R.DEFAULT_METHOD
    if stmt.method is not None:
        method = str(value_of(stmt.method)).lower()
        if method not in R.METHODS:
            raise BindError(f"unknown recommendation method {method!r}{suggest(method, R.METHODS)} "
                            f"(methods: {', '.join(R.METHODS)})")

    include_observed, options = _recommend_options(stmt, method, con)
    metric_counts = con.execute(
        "SELECT metric, count(*) AS n FROM evaluations WHERE score IS NOT NULL AND isfinite(score) "
        "GROUP BY metric ORDER BY n DESC, metric").fetchall()
    own = con.execute(
        "SELECT metric, count(*) AS n FROM evaluations WHERE dataset = ? AND score IS NOT NULL "
        "AND isfinite(score) GROUP BY metric ORDER BY n DESC, metric", [dataset]).fetchall()
    known = bool(own)
    if stmt.metric is not None:
        metric = str(value_of(stmt.metric))
        names = [m for m, _ in metric_counts]
        if metric not in names:
            raise BindError(f"unknown metric {metric!r}{suggest(metric, names)} "
                            f"(metrics in the evaluations table: {', '.join(sorted(names))})")
    else:
        metric = own[0][0] if known else metric_counts[0][0]

    if stmt.description is not None:
        description = value_of(stmt.description)
        if not isinstance(description, str) or not description.strip():
            raise BindError(f"DESCRIBED AS needs a 'text', got {description!r}")
    else:
        description = R.catalog_dataset_text(con, dataset)

    given = _given_scores(stmt, con)
    case = "known" if known else {(True, True): "text+given", (True, False): "text",
                                  (False, True): "given"}.get((bool(description), bool(given)), "prior")
    if case == "prior" and method in ("modellens", "auto", "knn_dataset"):
        datasets = [r[0] for r in con.execute("SELECT DISTINCT dataset FROM evaluations").fetchall()]
        raise BindError(
            f"dataset {dataset!r} has no evaluations{suggest(dataset, datasets)}, no description and "
            f"no GIVEN scores, so there is nothing to rank its models from; add DESCRIBED AS "
            f"'what the data is', GIVEN (model = score, ...), or ALTER DATASET '{dataset}' SET "
            f"description = '...' (or use a dataset-free baseline such as USING avg_rank)")

    where, where_text = bind_model_filter(stmt.where, bc)

    top = DEFAULT_TOP
    if stmt.top is not None:
        top = value_of(stmt.top)
        if not isinstance(top, int) or isinstance(top, bool) or top < 1:
            raise BindError(f"TOP must be a positive integer, got {top!r}")

    reuse, reason, config = True, None, ()
    chosen, weights = None, ()
    if method in ("modellens", "auto"):
        reuse, reason, cfg = R.recommender_status(con)
        config = tuple(sorted(cfg.items()))
    if method == "auto":
        if case in ("known", "given", "text+given"):
            chosen = "modellens"            # the validated choice is for unseen datasets without seeds
        elif reuse and (sel := R.cached_selection(con)) is not None:
            chosen = sel.method
            weights = tuple(sel.weights_text().items()) if sel.method == "blend" else ()
    return BoundRecommend(dataset, metric, method, top, case, description, tuple(given), where,
                          where_text, include_observed, tuple(options), reuse, reason, config,
                          chosen, weights)


def _config_options() -> dict:
    import inspect

    from zooql.methods.modellens.recommender import Recommender

    sig = inspect.signature(Recommender.__init__)
    return {k: p.default for k, p in sig.parameters.items() if k not in ("self", "text_embedder")}


@binds(A.TrainRecommender)
def _bind_train(stmt: A.TrainRecommender, bc: BindContext):
    from zooql.methods.modellens.recommender import Recommender

    known = _config_options()
    opts = options_dict(stmt.options)
    for key, value in opts.items():
        if key not in known:
            raise BindError(f"unknown TRAIN RECOMMENDER option {key!r}{suggest(key, known)} "
                            f"(options: {', '.join(known)})")
        default = known[key]
        if default is None:        # an optional number (e.g. dataset_dropout): a number or null
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise BindError(f"TRAIN RECOMMENDER option {key} expects a number or null, got {value!r}")
            if value is not None and key.endswith("dropout") and not 0 <= value < 1:
                raise BindError(f"TRAIN RECOMMENDER option {key} must be in [0, 1), got {value!r}")
        elif isinstance(default, bool):
            if isinstance(value, str) and value.lower() in ("true", "false"):
                opts[key] = value = value.lower() == "true"
            if not isinstance(value, bool):
                raise BindError(f"TRAIN RECOMMENDER option {key} expects true or false, got {value!r}")
        elif isinstance(default, (int, float)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise BindError(f"TRAIN RECOMMENDER option {key} expects a number, got {value!r}")
            if isinstance(default, int) and not float(value).is_integer():
                raise BindError(f"TRAIN RECOMMENDER option {key} expects an integer, got {value!r}")
            if key in ("dim", "epochs", "hidden", "bpr_pairs", "max_tokens", "val_epochs") and value < 1:
                raise BindError(f"TRAIN RECOMMENDER option {key} must be at least 1, got {value!r}")
            if key == "val_folds" and value not in (0,) and value < 2:
                raise BindError(f"TRAIN RECOMMENDER option val_folds must be 0 (every dataset) or at "
                                f"least 2, got {value!r}")
            if key in ("lr", "temperature") and value <= 0:
                raise BindError(f"TRAIN RECOMMENDER option {key} must be positive, got {value!r}")
            if key.endswith("dropout") and not 0 <= value < 1:
                raise BindError(f"TRAIN RECOMMENDER option {key} must be in [0, 1), got {value!r}")
        elif not isinstance(value, str):
            raise BindError(f"TRAIN RECOMMENDER option {key} expects a 'string', got {value!r}")
    try:
        config = Recommender(**opts).config
    except (TypeError, ValueError) as exc:
        raise BindError(f"TRAIN RECOMMENDER: {exc}") from None
    if R.evaluation_count(bc.con) == 0:
        raise BindError(f"TRAIN RECOMMENDER: {_NO_EVALUATIONS}")
    reuse, reason, _ = R.recommender_status(bc.con, config)
    chosen, weights, validation = None, (), ()
    if reuse and (sel := R.cached_selection(bc.con)) is not None:
        chosen = sel.method
        weights = tuple(sel.weights_text().items()) if sel.method == "blend" else ()
        validation = tuple((m, round(v["ndcg5"], 3)) for m, v in sel.table.items())
    return BoundTrainRecommender(reuse, reason, tuple(sorted(config.items())),
                                 tuple(opts.items()), chosen, weights, validation)


@plans(BoundRecommend)
def _plan_recommend(b: BoundRecommend) -> Operator:
    if b.method in ("modellens", "auto"):
        child = R.TrainRecommender(reuse=b.reuse, reason=b.reason, config=b.config)
    else:
        child = R.FitBaseline(method=b.method, options=b.options)
    return R.Recommend(child=child, dataset=b.dataset, metric=b.metric, method=b.method, top=b.top,
                       case=b.case, description=b.description, given=b.given,
                       filter_sql=b.where.sql if b.where else None,
                       filter_params=tuple(b.where.params) if b.where else (),
                       filter_text=b.where_text, include_observed=b.include_observed,
                       chosen=b.chosen, weights=b.weights)


@plans(BoundTrainRecommender)
def _plan_train(b: BoundTrainRecommender) -> Operator:
    return R.TrainRecommender(reuse=b.reuse, reason=b.reason, config=b.config, options=b.options,
                              explicit=True, chosen=b.chosen, weights=b.weights, validation=b.validation)
