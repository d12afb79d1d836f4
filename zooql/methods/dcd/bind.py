"""Binder and planner of RANK MODELS FOR TASK t USING CONDUCTANCE (DCD).

The binder resolves the target task (a CREATE TASK task with images, labelled or not), the
ranked models (the hub's open_clip VLMs, narrowed by WHERE), the source tasks (SOURCES
(...), else every other image task whose name has evaluations) with the metric their
true ranks are read from, and checks which (model, task) conductance vectors are already
cached, so that EXPLAIN prints what the plan costs before anything runs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from zooql.methods.dcd import conductance as D
from zooql.methods.dcd import ops as OD
from zooql.core import tasks as T
from zooql.errors import BindError
from zooql.methods.dcd import ast as A
from zooql.core.binder import BindContext, bind_model_filter, int_of, options_dict, value_of
from zooql.plan.hooks import binds
from zooql.plan.hooks import plans
from zooql.core.where import suggest
from zooql.plan.logical import Logical
from zooql.methods.dcd.estimate import pass_seconds

METHODS = ("conductance",)
OPTIONS = ("eta", "gamma", "steps", "batch_size", "metric", "draws")


@dataclass(frozen=True)
class BoundRank(Logical):
    task: str
    task_images: int
    sources: tuple          # ((task, metric, n_images), ...)
    models: tuple           # ((name, source, checkpoint, preprocess json), ...)
    fingerprints: tuple     # per task (target first): ((model, fingerprint), ...)
    cached: tuple           # per task (target first): (model names cached, ...)
    eta: float
    gamma: float
    steps: int
    batch_size: int
    top: int | None
    filter: str | None
    draws: tuple = ()       # redrawn targets (draws = k): ((name, seed, image paths), ...), k - 1 of them
    pass_seconds: tuple = ()  # ((model, estimated seconds per pass, basis), ...) for EXPLAIN


def _number(opts: dict, key: str, default: float, minimum: float) -> float:
    v = opts.get(key, default)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or v < minimum:
        raise BindError(f"option {key} must be a number >= {minimum:g}, got {v!r}")
    return float(v)


def _integer(opts: dict, key: str, default: int, minimum: int) -> int:
    return int_of(opts.get(key, default), f"option {key}", minimum, integral_float=True)


def _image_task(name: str, tasks: dict, what: str) -> dict:
    t = tasks.get(name)
    if t is None:
        listing = f" (tasks: {', '.join(sorted(tasks))})" if tasks and len(tasks) <= 10 else ""
        raise BindError(f"unknown {what} task {name!r}{suggest(name, list(tasks))}; create it with "
                        f"CREATE TASK {name} FROM IMAGES 'folder'{listing}")
    if not t["info"].get("images"):
        raise BindError(f"{what} task {name!r} has no images; conductance is computed on a task's images "
                        f"(CREATE TASK {name} FROM IMAGES 'folder')")
    return t


def _target_draws(target: dict, k: int) -> list[tuple[str, int, tuple, str]]:
    """The k - 1 redraws of the target's LIMIT sample (seeds s+1, ..., s+k-1): per draw
    (name, seed, image paths, task fingerprint)."""
    import os

    sample = target["info"].get("sample")
    path = target.get("path")
    if not sample or not path or not os.path.isdir(path):
        raise BindError(f"OPTIONS (draws = {k}) redraws the target's random sample; create the target with "
                        f"CREATE TASK {target['name']} FROM IMAGES 'folder' LIMIT n [SEED s]")
    if sample["limit"] >= sample["of"]:
        raise BindError(f"OPTIONS (draws = {k}): target {target['name']!r} takes all {sample['of']} images of its "
                        f"folder (LIMIT {sample['limit']}), so every draw would be the same sample")
    out = []
    for d in range(1, k):
        seed = int(sample["seed"]) + d
        try:
            t = T.read_task(f"{target['name']}#draw{d}", path, images=True, evaluator="exact_match",
                            limit=int(sample["limit"]), base_dir="", seed=seed)
        except Exception as exc:
            raise BindError(f"cannot redraw target {target['name']!r} from {path}: {exc}") from None
        out.append((t.name, seed, tuple(q[1]["image"] for q in t.queries), t.fingerprint))
    return out


def _metrics(con, dataset: str, models: list[str]) -> list[str]:
    marks = ", ".join("?" for _ in models)
    rows = con.execute(f"SELECT DISTINCT metric FROM evaluations WHERE dataset = ? AND model IN ({marks}) "
                       f"AND score IS NOT NULL AND isfinite(score) ORDER BY 1", [dataset, *models]).fetchall()
    return [r[0] for r in rows]


def _ranked_models(stmt: A.RankModels, bc: BindContext) -> tuple[list[tuple], str | None]:
    """The ranked models: the registered open_clip VLMs (WHERE narrows them)."""
    where, where_text = bind_model_filter(stmt.where, bc)
    sql = "SELECT name, source, checkpoint, preprocess FROM models"
    params: list = []
    if where is not None:
        sql += f" WHERE {where.sql}"
        params += list(where.params)
    rows = bc.con.execute(sql + " ORDER BY name", params).fetchall()
    vlm = [r for r in rows if str(r[1]).lower().startswith("open_clip:")]
    if where is not None and len(vlm) < len(rows):
        bad = [f"{r[0]} ({r[1]})" for r in rows if r not in vlm]
        raise BindError(f"RANK MODELS ... USING CONDUCTANCE ranks open_clip VLMs only; model(s) "
                        f"{', '.join(bad[:5])}{'...' if len(bad) > 5 else ''} are not open_clip models "
                        f"(narrow WHERE, e.g. source LIKE 'open_clip:%')")
    if not vlm:
        why = f" matches WHERE {where_text}" if where is not None else " is registered"
        raise BindError(f"no open_clip VLM{why}; register one with ADD MODEL 'open_clip:<arch>' FROM '<weights>'")
    return vlm, where_text


def _sources(stmt: A.RankModels, bc: BindContext, tasks: dict, name: str, names: list[str],
             metric: str | None) -> list[tuple[str, str, int]]:
    """The source tasks, each with the metric of its true ranks and its image count; every
    ranked model must have evaluations on at least one of them."""
    evaluated = {r[0] for r in bc.con.execute("SELECT DISTINCT dataset FROM evaluations").fetchall()}
    if stmt.sources is not None:
        src_names = []
        for node in stmt.sources:
            s = str(value_of(node))
            if s == name:
                raise BindError(f"task {s!r} is the target; it cannot also be a source")
            if s in src_names:
                raise BindError(f"source task {s!r} is listed twice")
            _image_task(s, tasks, "source")
            src_names.append(s)
    else:
        src_names = sorted(s for s, t in tasks.items() if s != name and t["info"].get("images") and s in evaluated)
        if not src_names:
            raise BindError(f"no source task: none of the other image tasks ({', '.join(sorted(set(tasks) - {name})) or 'none'}) "
                            f"has evaluations; IMPORT EVALUATIONS with dataset = the source task's name")
    sources = []
    for s in src_names:
        found = _metrics(bc.con, s, names)
        if not found:
            raise BindError(f"no evaluations for source task {s!r} of the ranked models; IMPORT EVALUATIONS "
                            f"(model, dataset, metric, score) with dataset = {s!r}")
        if metric is not None:
            if metric not in found:
                raise BindError(f"source task {s!r} has no evaluations with metric {metric!r} "
                                f"(metrics: {', '.join(found)})")
            m = metric
        elif len(found) > 1:
            raise BindError(f"source task {s!r} has evaluations with several metrics ({', '.join(found)}); "
                            f"choose one with OPTIONS (metric = '...')")
        else:
            m = found[0]
        sources.append((s, m, int(tasks[s]["n_queries"])))
    _check_evaluated(bc, names, sources)
    return sources


def _check_evaluated(bc: BindContext, names: list[str], sources: list[tuple]) -> None:
    marks = ", ".join("?" for _ in names)
    conds = " OR ".join("(dataset = ? AND metric = ?)" for _ in sources)
    flat = [x for s, m, _ in sources for x in (s, m)]
    have = {r[0] for r in bc.con.execute(
        f"SELECT DISTINCT model FROM evaluations WHERE model IN ({marks}) AND ({conds}) "
        f"AND score IS NOT NULL AND isfinite(score)", [*names, *flat]).fetchall()}
    missing = [n for n in names if n not in have]
    if missing:
        raise BindError(f"model(s) {', '.join(missing)} have no evaluations on any source task "
                        f"({', '.join(s for s, _, _ in sources)}); IMPORT EVALUATIONS for them or leave them "
                        f"out with WHERE")


@binds(A.RankModels)
def _bind_rank(stmt: A.RankModels, bc: BindContext):
    method = "conductance" if stmt.method is None else str(value_of(stmt.method)).lower()
    if method not in METHODS:
        raise BindError(f"unknown ranking method {method!r}{suggest(method, METHODS)} (methods: {', '.join(METHODS)})")
    opts = options_dict(stmt.options)
    for key in opts:
        if key not in OPTIONS:
            raise BindError(f"unknown option {key!r} for RANK MODELS{suggest(key, OPTIONS)} "
                            f"(options: {', '.join(OPTIONS)})")
    eta = _number(opts, "eta", D.DEFAULT_ETA, 0)
    gamma = _number(opts, "gamma", D.DEFAULT_GAMMA, 0)
    steps = _integer(opts, "steps", D.DEFAULT_STEPS, 1)
    batch_size = _integer(opts, "batch_size", 8, 1)
    metric = opts.get("metric")
    if metric is not None and not isinstance(metric, str):
        raise BindError(f"option metric must be a 'string', got {metric!r}")
    top = int_of(value_of(stmt.top), "TOP") if stmt.top is not None else None
    n_draws = _integer(opts, "draws", 1, 1)

    tasks = T.task_rows(bc.con)
    name = str(value_of(stmt.task))
    target = _image_task(name, tasks, "target")
    redraws = _target_draws(target, n_draws) if n_draws > 1 else []

    vlm, where_text = _ranked_models(stmt, bc)
    names = [r[0] for r in vlm]

    sources = _sources(stmt, bc, tasks, name, names, metric)

    # ---- what is cached ----------------------------------------------------------------
    fps, cached = [], []
    redrawn = [{"name": n, "fingerprint": fp} for n, _, _, fp in redraws]
    for t in [target] + redrawn + [tasks[s] for s, _, _ in sources]:
        have_fp = OD.cached_fingerprints(bc.con, t["name"])
        pairs = tuple((r[0], D.vector_fingerprint(t["fingerprint"], r[1], r[2], steps)) for r in vlm)
        fps.append(pairs)
        cached.append(tuple(m for m, fp in pairs if have_fp.get(m) == fp))
    models = tuple((r[0], r[1], r[2], r[3] if isinstance(r[3], str) or r[3] is None else json.dumps(r[3]))
                   for r in vlm)
    return BoundRank(task=name, task_images=int(target["n_queries"]), sources=tuple(sources), models=models,
                     fingerprints=tuple(fps), cached=tuple(cached), eta=eta, gamma=gamma, steps=steps,
                     batch_size=batch_size, top=top, filter=where_text,
                     draws=tuple((n, seed, imgs) for n, seed, imgs, _ in redraws),
                     pass_seconds=tuple((m, *v) for m, v in pass_seconds(bc.con, names).items()))


@plans(BoundRank)
def _plan_rank(b: BoundRank):
    first = (0, b.draws[0][1] - 1) if b.draws else (None, None)     # draw 0 = the task's own sample
    tasks = ([(b.task, "target", b.task_images, (), *first)]
             + [(n, "target", len(imgs), imgs, d + 1, seed) for d, (n, seed, imgs) in enumerate(b.draws)]
             + [(s, "source", n, (), None, None) for s, _, n in b.sources])
    children = []
    for (task, role, n, imgs, draw, seed), pairs, cached in zip(tasks, b.fingerprints, b.cached):
        fp = dict(pairs)
        models = tuple((m[0], m[1], m[2], m[3], fp[m[0]]) for m in b.models)
        est = {m: (sec, basis) for m, sec, basis in b.pass_seconds}
        new = [m[0] for m in models if m[0] not in cached and m[0] in est]
        seconds = sum(est[m][0] for m in new) * n * b.steps if new else None
        basis = "+".join(sorted({est[m][1] for m in new})) if new else None
        children.append(OD.Conductance(task=task, role=role, n_images=n, steps=b.steps, batch_size=b.batch_size,
                                       models=models, cached=cached, images=imgs, draw=draw, seed=seed,
                                       est_seconds=seconds, est_basis=basis))
    return OD.RankModels(task=b.task, method="conductance", sources=tuple((s, m) for s, m, _ in b.sources),
                         n_models=len(b.models), eta=b.eta, gamma=b.gamma, top=b.top, filter=b.filter,
                         conductances=tuple(children), draws=1 + len(b.draws))
