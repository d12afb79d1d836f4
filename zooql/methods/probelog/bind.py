"""Binder and planner of the ProbeLog statements: CREATE PROBE SET, PROBE, FIND.

Binding resolves the probe set (creating the built-in one on first use), the gallery
(models with loadable logits matching ``IN (...)`` / ``WHERE``), the query (a logit, a
model or a text with its aligner) and counts the models that still need probing, so the
plan -- and whether the statement writes -- is fixed before it runs and EXPLAIN shows it.
"""
from __future__ import annotations

import dataclasses

import os
from dataclasses import dataclass

from zooql.methods.probelog import ops_find as F
from zooql.methods.probelog import ops_probe as P
from zooql.plan.nodes import Operator
from zooql.errors import BindError
from zooql.storage.names import check_name
from zooql.methods.probelog import ast as A
from zooql.core.binder import (BindContext, bind_model_filter, binds, int_of, options_dict, string_of,
                                value_of)
from zooql.plan.hooks import plans, rule
from zooql.core.where import suggest
from zooql.storage import catalog as C
from zooql.plan.logical import Logical

FIND_OPTIONS = ("topk_probes", "method", "index", "pool", "ef", "query")
METHODS = ("asymmetric", "full", "model")
INDEXES = ("auto", "exact", "hnsw", "hnsw_reduced")


# ---- bound statements ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ProbeSetRef:
    name: str
    n_probes: int
    id: int | None = None          # None: the built-in set, created by the statement
    has_captions: bool = False
    why: str | None = None         # how a default probe set was chosen (None: named or the only one)
    itemsize: int = 2              # bytes of a stored descriptor value (float16: 2, float32: 4)

    @property
    def create(self) -> bool:
        return self.id is None


@dataclass(frozen=True)
class BoundCreateProbeSet(Logical):
    name: str
    kind: str
    path: str | None
    limit: int | None
    seed: int | None
    captions: str | None


@dataclass(frozen=True)
class BoundProbe(Logical):
    ps: ProbeSetRef
    models: tuple
    already: tuple
    batch: int
    device: str | None
    sample_pct: float | None = None
    seed: int | None = None
    completion: dict | None = None   # rank / reg / iters / mode of the completion step
    where: str | None = None         # the WHERE text, for "no model matches WHERE ..."


@dataclass(frozen=True)
class BoundRefresh(Logical):
    ps: ProbeSetRef
    params: dict


@dataclass(frozen=True)
class BoundFind(Logical):
    target: str
    ps: ProbeSetRef
    query: str                     # text | logit | model
    text: str | None = None
    model: str | None = None
    logit: int | None = None
    label: str | None = None
    aligner: str | None = None
    aligner_model: str | None = None
    aligner_why: str | None = None
    method: str = "asymmetric"
    topk_probes: int | None = None
    index: str = "auto"            # auto (the choose_find_index rule decides) | exact | hnsw
    reason: str = ""
    top: int = F.DEFAULT_TOP
    gallery_sql: str = ""
    gallery_params: tuple = ()
    filter: str | None = None
    gallery_models: int = 0
    gallery_logits: int = 0
    to_probe: tuple = ()
    pool: int | None = None
    ef: int | None = None
    sampled: bool = False           # the probe set has sampled (completed) runs: add `observed`
    query_mode: str | None = None   # OPTIONS (query = ...): None / 'stored' = the stored descriptor
    full_query: tuple | None = None  # (model, observed, forward passes): a sampled query model to probe fully
    total_logits: int = 0           # logits in the probe set after on-demand probing (the index's size)
    find_shards: int | None = None  # SET find_shards / find_shard_mb (sharded exact scan)
    find_shard_mb: float | None = None


# ---- helpers ---------------------------------------------------------------------------------------

def _int(node, what: str, minimum: int = 0) -> int | None:
    return None if node is None else int_of(value_of(node), what, minimum)


def _probe_set_ref(bc: BindContext, name: str) -> ProbeSetRef:
    row = P.probe_set_row(bc.con, name)
    if row is not None:
        return ProbeSetRef(name, row["n_probes"], row["id"], row["has_captions"],
                           itemsize=4 if row.get("descriptor_dtype") == "float32" else 2)
    if name == P.BUILTIN_NAME:
        return ProbeSetRef(name, P.BUILTIN_DEFAULT_N)
    names = P.probe_set_names(bc.con)
    raise BindError(f"unknown probe set {name!r}{suggest(name, names + [P.BUILTIN_NAME])}",
                    hint=f"probe sets: {', '.join(names) or 'none yet'}; create one with CREATE PROBE SET "
                         f"<name> FROM '<folder | .npy | .parquet>' (or use the built-in set '{P.BUILTIN_NAME}')")


def _default_probe_set(bc: BindContext, query_model: str | None = None) -> ProbeSetRef:
    """WITH PROBES omitted: the ``probe_set`` setting, else the only probe set, else ``builtin``;
    with several sets and no setting, among the sets the query model (a LIKE query) is probed
    with (all sets when none), the one that probes the most models (ties: the oldest)."""
    setting = C.get_setting(bc.con, "probe_set")
    if setting:
        return _with_why(_probe_set_ref(bc, str(setting)), "the hub's probe_set setting")
    names = P.probe_set_names(bc.con)
    if len(names) == 1:
        return _probe_set_ref(bc, names[0])
    if not names:
        return _probe_set_ref(bc, P.BUILTIN_NAME)
    counts = bc.con.execute(
        "SELECT p.name, count(r.model_id), min(p.id), "
        "count(r.model_id) FILTER (WHERE m.name = ?) FROM probe_sets p "
        "LEFT JOIN probe_runs r ON r.probe_set_id = p.id LEFT JOIN models m ON m.id = r.model_id "
        "GROUP BY p.name", [query_model or ""]).fetchall()
    pool = [c for c in counts if c[3]] or counts
    best = sorted(pool, key=lambda c: (-c[1], c[2]))[0]
    why = (f"{query_model} is probed with it" if best[3] and len(pool) == 1 else
           f"of {len(names)} probe sets, the one probing the most models ({best[1]})"
           + (f" among those {query_model} is probed with" if best[3] else ""))
    return _with_why(_probe_set_ref(bc, best[0]), why + "; SET probe_set = '<name>' or WITH PROBES to choose")


def _with_why(ref: ProbeSetRef, why: str) -> ProbeSetRef:
    from dataclasses import replace

    return replace(ref, why=why)


def _probeable_sql(extra: list[str], params: list) -> tuple[str, list]:
    conds = ["loadable", "num_logits IS NOT NULL"] + extra
    return f"SELECT id FROM models WHERE {' AND '.join(conds)}", params


def _model_probe_info(bc: BindContext, name: str, what: str) -> dict:
    m = C.model_row(bc.con, bc.require_model(name))
    if not m["loadable"] or m["num_logits"] is None:
        raise BindError(f"{what} {name!r} has no loadable logits to probe (source {m['source']})")
    return m


# ---- CREATE PROBE SET ----------------------------------------------------------------------------------

@binds(A.CreateProbeSet)
def _bind_create_probe_set(stmt: A.CreateProbeSet, bc: BindContext):
    name = check_name(stmt.name.value, "probe set")
    if P.probe_set_row(bc.con, name) is not None:
        raise BindError(f"probe set {name!r} already exists")
    raw = string_of(stmt.path, "probe images")
    path = bc.path(raw)
    if raw.lower() in ("builtin", "builtin:") and not os.path.exists(path):
        kind, path = "builtin", None
    else:
        if not os.path.exists(path):
            raise BindError(f"probe images not found: {path}")
        kind = P.probe_source_kind(path)
        if kind == "unknown":
            raise BindError(f"probe images must be a folder of images, a .npy or a .parquet file, "
                            f"got {os.path.basename(path)!r}")
    limit = _int(stmt.limit, "LIMIT", 2)
    if limit is not None:  # a source never holds more images than this; the reader clamps further
        limit = min(limit, 2 ** 31 - 1)
    if kind == "builtin" and limit is not None and limit > P.BUILTIN_MAX_N:
        raise BindError(f"the built-in probes are generated, at most {P.BUILTIN_MAX_N} of them "
                        f"(LIMIT {limit} asked); bring a folder, .npy or .parquet for more")
    seed = _int(stmt.seed, "SEED", 0)
    captions = None
    if stmt.captions is not None:
        if kind == "builtin":
            raise BindError("the built-in probes have no captions file")
        captions = bc.path(string_of(stmt.captions, "CAPTIONS FROM"))
        if not os.path.isfile(captions):
            raise BindError(f"captions file not found: {captions}")
    return BoundCreateProbeSet(name, kind, path, limit, seed, captions)


@plans(BoundCreateProbeSet)
def _plan_create_probe_set(b: BoundCreateProbeSet) -> Operator:
    return P.CreateProbeSet(probe_set=b.name, kind=b.kind, path=b.path, limit=b.limit, seed=b.seed,
                            captions=b.captions)


def _builtin_op(ps: ProbeSetRef) -> Operator | None:
    return P.CreateProbeSet(probe_set=ps.name, kind="builtin", auto=True) if ps.create else None


# ---- PROBE ------------------------------------------------------------------------------------------------

@binds(A.Probe)
def _bind_probe(stmt: A.Probe, bc: BindContext):
    if stmt.seed is not None and stmt.sample is None:
        raise BindError("SEED in PROBE only applies to SAMPLE p PERCENT")
    sample = None
    if stmt.sample is not None:
        sample = value_of(stmt.sample)
        if isinstance(sample, bool) or not isinstance(sample, (int, float)) or not 0 < sample <= 100:
            raise BindError(f"SAMPLE p PERCENT needs 0 < p <= 100, got {sample!r}")
        sample = float(sample)
    seed = _int(stmt.seed, "SEED", 0)
    ps = _probe_set_ref(bc, str(value_of(stmt.probe_set)))
    where, where_text = bind_model_filter(stmt.where, bc)
    sql = "SELECT id, name, loadable, num_logits FROM models"
    params: list = []
    if where is not None:
        sql += f" WHERE {where.sql}"
        params = list(where.params)
    rows = bc.con.execute(sql + " ORDER BY name", params).fetchall()
    probed = P.probed_model_ids(bc.con, ps.id)
    todo = tuple(r[1] for r in rows if r[2] and r[3] is not None and r[0] not in probed)
    already = tuple(r[1] for r in rows if r[0] in probed)
    batch = _int(stmt.batch, "BATCH", 1) or P.DEFAULT_BATCH
    device = None
    if stmt.device is not None:
        device = string_of(stmt.device, "DEVICE").lower()
        if not (device in ("cpu", "cuda", "auto") or device.startswith("cuda:")):
            raise BindError(f"DEVICE must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}")
    completion = None
    if sample is not None:
        from zooql.methods.probelog import completion as CP

        fac = CP.factors_row(bc.con, ps.id)
        completion = CP.completion_params(None, fac)
        completion["mode"] = "fold-in" if fac is not None else "fit"
    return BoundProbe(ps, todo, already, batch, device, sample, seed if sample is not None else None, completion,
                      where_text)


@plans(BoundProbe)
def _plan_probe(b: BoundProbe) -> Operator:
    node = P.ProbeModels(probe_set=b.ps.name, models=b.models, n_probes=b.ps.n_probes,
                         already_probed=b.already, batch=b.batch, device=b.device, child=_builtin_op(b.ps),
                         sample_pct=b.sample_pct, sample_seed=b.seed, where=b.where)
    if b.sample_pct is None:
        return node
    from zooql.methods.probelog import completion as CP

    c = b.completion
    return CP.CompleteDescriptors(probe_set=b.ps.name, rank=c["rank"], iters=c["iters"], reg=c["reg"],
                                  mode=c["mode"], child=node)


# ---- REFRESH DESCRIPTORS ------------------------------------------------------------------------------

@binds(A.RefreshDescriptors)
def _bind_refresh(stmt: A.RefreshDescriptors, bc: BindContext):
    from zooql.methods.probelog import completion as CP

    ps = (_probe_set_ref(bc, str(value_of(stmt.probe_set))) if stmt.probe_set is not None
          else _default_probe_set(bc))
    if ps.id is None:
        raise BindError(f"probe set {ps.name!r} has no probed models yet")
    opts = options_dict(stmt.options)
    for k, v in opts.items():
        if k not in CP.OPTIONS:
            raise BindError(f"unknown REFRESH DESCRIPTORS option {k!r}{suggest(k, CP.OPTIONS)} "
                            f"(options: {', '.join(CP.OPTIONS)})")
        if k in ("rank", "iters") and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise BindError(f"option {k} must be a positive integer, got {v!r}")
        if k == "reg" and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
            raise BindError(f"option reg must be a number >= 0, got {v!r}")
    if not CP.has_sampled(bc.con, ps.id):
        raise BindError(f"probe set {ps.name!r} has no sampled runs (PROBE ... SAMPLE p PERCENT): "
                        f"its descriptors are complete, nothing to refresh")
    params = CP.completion_params({k: (float(v) if k == "reg" else int(v)) for k, v in opts.items()},
                                  CP.factors_row(bc.con, ps.id))
    return BoundRefresh(ps, params)


@plans(BoundRefresh)
def _plan_refresh(b: BoundRefresh) -> Operator:
    from zooql.methods.probelog import completion as CP

    p = b.params
    return CP.CompleteDescriptors(probe_set=b.ps.name, rank=p["rank"], iters=p["iters"], reg=p["reg"], mode="refit")


# ---- VACUUM ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BoundVacuum(Logical):
    probe_sets: tuple


@binds(A.Vacuum)
def _bind_vacuum(stmt: A.Vacuum, bc: BindContext):
    if stmt.probe_set is None:
        return BoundVacuum(tuple(P.probe_set_names(bc.con)))
    ref = _probe_set_ref(bc, str(value_of(stmt.probe_set)))
    if ref.id is None:
        raise BindError(f"probe set {ref.name!r} does not exist yet: nothing to vacuum")
    return BoundVacuum((ref.name,))


@plans(BoundVacuum)
def _plan_vacuum(b: BoundVacuum) -> Operator:
    from zooql.methods.probelog.vacuum import Vacuum

    return Vacuum(probe_sets=b.probe_sets)


# ---- FIND ----------------------------------------------------------------------------------------------------

def _find_options(stmt: A.Find) -> dict:
    opts = options_dict(stmt.options)
    for k in opts:
        if k not in FIND_OPTIONS:
            raise BindError(f"unknown FIND option {k!r}{suggest(k, FIND_OPTIONS)} (options: {', '.join(FIND_OPTIONS)})")
    out = {"method": "asymmetric", "index": "auto", "topk_probes": None, "pool": None, "ef": None, "query": None}
    for key in ("topk_probes", "pool", "ef"):
        if opts.get(key) is not None:
            v = opts[key]
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise BindError(f"option {key} must be a positive integer, got {v!r}")
            out[key] = v
    from zooql.methods.probelog.query_full import QUERY_MODES

    for key, allowed in (("method", METHODS), ("index", INDEXES), ("query", QUERY_MODES)):
        if opts.get(key) is not None:
            v = str(opts[key]).lower()
            if v not in allowed:
                raise BindError(f"option {key} must be one of {', '.join(allowed)}, got {opts[key]!r}")
            out[key] = v
    return out


def _resolve_logit(bc: BindContext, m: dict, node) -> tuple[int, str | None]:
    v = value_of(node)
    labels = C.model_labels(bc.con, m["id"])
    if isinstance(v, int) and not isinstance(v, bool):
        if not 0 <= v < m["num_logits"]:
            raise BindError(f"{m['name']} has logits 0..{m['num_logits'] - 1}; logit[{v}] does not exist")
        return v, labels[v] if v < len(labels) else None
    if isinstance(v, str):
        if v in labels:
            return labels.index(v), v
        low = [str(x).lower() if x is not None else None for x in labels]
        if v.lower() in low:
            i = low.index(v.lower())
            return i, labels[i]
        known = [x for x in labels if x is not None]
        if not known:
            raise BindError(f"{m['name']} has no logit labels; refer to its logits by index, e.g. "
                            f"{m['name']}.logit[0]")
        raise BindError(f"{m['name']} has no logit labelled {v!r}{suggest(v, known)}")
    raise BindError(f"logit must be an index or a label, got {v!r}")


def _find_query(stmt: A.Find, bc: BindContext, ps: ProbeSetRef, probed: set[int]):
    """The query of a FIND: (kind, text, model, logit, label, aligner, excluded ids, models to probe)."""
    from zooql.methods.probelog.aligners import resolve_aligner

    query, text, model, logit, label = "text", None, None, None, None
    aligner = None
    exclude: set[int] = set()
    extra_probe: list[str] = []
    if stmt.images is not None:
        pass                       # LIKE IMAGES: find_images.bind_images, once the gallery is known
    elif stmt.text is not None:
        text = string_of(stmt.text, "RECOGNIZING text").strip()
        if not text:
            raise BindError("RECOGNIZING needs a non-empty text")
        requested = str(value_of(stmt.aligner)) if stmt.aligner is not None else None
        aligner = resolve_aligner(bc.con, requested, setting=C.get_setting(bc.con, "aligner"), ps_name=ps.name,
                                  has_captions=ps.has_captions, probed=probed)
        if aligner.kind == "teacher":
            t = C.model_row(bc.con, aligner.model)
            exclude.add(t["id"])
            if t["id"] not in probed:
                extra_probe.append(t["name"])
    elif isinstance(stmt.like, A.LogitRef):
        if stmt.aligner is not None:
            raise BindError("USING ALIGNER applies to RECOGNIZING queries only")
        m = _model_probe_info(bc, stmt.like.model.value, "model")
        query, model = "logit", m["name"]
        logit, label = _resolve_logit(bc, m, stmt.like.logit)
        exclude.add(m["id"])
        if m["id"] not in probed:
            extra_probe.append(m["name"])
    else:
        if stmt.aligner is not None:
            raise BindError("USING ALIGNER applies to RECOGNIZING queries only")
        name = str(value_of(stmt.like))
        if stmt.target == "logits":
            raise BindError(f"FIND LOGITS LIKE needs one logit, e.g. {name}.logit[0] or {name}.logit['label']; "
                            f"FIND MODELS LIKE {name} compares whole models")
        m = _model_probe_info(bc, name, "model")
        query, model = "model", m["name"]
        exclude.add(m["id"])
        if m["id"] not in probed:
            extra_probe.append(m["name"])
    return query, text, model, logit, label, aligner, exclude, extra_probe


@binds(A.Find)
def _bind_find(stmt: A.Find, bc: BindContext):
    opts = _find_options(stmt)
    qname = (stmt.like.model.value if isinstance(stmt.like, A.LogitRef)
             else str(value_of(stmt.like)) if stmt.like is not None else None)
    ps = (_probe_set_ref(bc, str(value_of(stmt.probe_set))) if stmt.probe_set is not None
          else _default_probe_set(bc, qname))
    probed = P.probed_model_ids(bc.con, ps.id)
    top = _int(stmt.top, "TOP", 1) or F.DEFAULT_TOP
    method = opts["method"]
    if method == "model" and stmt.target == "logits":
        raise BindError("method 'model' ranks whole models; use FIND MODELS (or method 'asymmetric' / 'full')")
    if opts["query"] is not None and stmt.text is not None:
        raise BindError("option query applies to LIKE queries (a query model's descriptor); a RECOGNIZING "
                        "text's descriptor is always computed on every probe")

    # the query
    query, text, model, logit, label, aligner, exclude, extra_probe = _find_query(stmt, bc, ps, probed)

    gallery_sql, gallery_params, texts, gallery = _find_gallery(stmt, bc, exclude)
    if stmt.images is not None:
        from zooql.methods.probelog.find_images import bind_images

        return bind_images(stmt, bc, ps, top, gallery, gallery_sql, gallery_params, " AND ".join(texts) or None,
                           probed)
    to_probe = [g[1] for g in gallery if g[0] not in probed]
    for name in extra_probe:
        if name not in to_probe:
            to_probe.append(name)
    g_logits = sum(g[2] for g in gallery)
    total = _index_size(bc, ps, gallery, probed, g_logits)
    topk = _topk(method, opts, ps)
    index, reason = _check_index(stmt.target, opts["index"])
    return BoundFind(stmt.target, ps, query, text, model, logit, label,
                     aligner.kind if aligner else None, aligner.model if aligner else None,
                     aligner.why if aligner else None, method, topk, index, reason, top,
                     gallery_sql, tuple(gallery_params), " AND ".join(texts) or None, len(gallery), g_logits,
                     tuple(to_probe), opts["pool"], opts["ef"], _sampled(bc, ps), opts["query"],
                     _full_query(bc, ps, model, opts["query"]), total,
                     *_shard_settings(bc))


def _shard_settings(bc: BindContext) -> tuple[int | None, float | None]:
    from zooql.methods.probelog.find_shards import shard_settings

    return shard_settings(lambda k, d=None: C.get_setting(bc.con, k, d))


def _find_gallery(stmt: A.Find, bc: BindContext, exclude) -> tuple[str, list, list, list]:
    """The searched models (IN (...) and WHERE): (SQL of their ids, its parameters, the
    filter's text parts, [(id, name, num_logits)] without the excluded ids)."""
    conds, params, texts = [], [], []
    if stmt.models is not None:
        names = [bc.require_model(str(value_of(x))) for x in stmt.models]
        conds.append(f"name IN ({', '.join('?' * len(names))})")
        params += names
        texts.append("name IN (" + ", ".join(repr(n) for n in names) + ")")
    where, where_text = bind_model_filter(stmt.where, bc)
    if where is not None:
        conds.append(f"({where.sql})")
        params += list(where.params)
        texts.append(where_text)
    gallery_sql, gallery_params = _probeable_sql(conds, params)
    gallery = bc.con.execute(
        f"SELECT id, name, num_logits FROM models WHERE id IN ({gallery_sql}) ORDER BY name", gallery_params).fetchall()
    return gallery_sql, gallery_params, texts, [g for g in gallery if g[0] not in exclude]


def _index_size(bc: BindContext, ps: ProbeSetRef, gallery: list, probed: set, g_logits: int) -> int:
    """Logits in the probe set once this FIND's on-demand probing is done."""
    total = 0
    if ps.id is not None:
        total = bc.con.execute("SELECT coalesce(sum(n_cols), 0) FROM probe_runs WHERE probe_set_id = ?",
                               [ps.id]).fetchone()[0]
    total += sum(g[2] for g in gallery if g[0] not in probed)
    return max(int(total), g_logits)


def _topk(method: str, opts: dict, ps: ProbeSetRef) -> int | None:
    """The asymmetric search's top-k probes (the default grows with the probe set)."""
    if method == "asymmetric":
        from zooql.methods.probelog.kernels import default_k_probes

        return min(opts["topk_probes"] or default_k_probes(ps.n_probes), ps.n_probes)
    if opts["topk_probes"] is not None:
        raise BindError(f"topk_probes applies to method 'asymmetric', not {method!r}")
    return None


def _full_query(bc: BindContext, ps: ProbeSetRef, model: str | None, mode: str | None) -> tuple | None:
    """(model, observed probes, forward passes) when ``query = 'full'`` names a sampled query model."""
    from zooql.methods.probelog.query_full import sampled_run

    if mode != "full" or model is None:
        return None
    info = sampled_run(bc.con, ps.id, C.model_row(bc.con, model)["id"])
    if info is None:
        return None   # fully probed already, or probed fully on demand by this FIND
    return (model, int(info["observed"]), int(ps.n_probes - info["observed"]))


def _sampled(bc: BindContext, ps: ProbeSetRef) -> bool:
    from zooql.methods.probelog import completion as CP

    return CP.has_sampled(bc.con, ps.id)


def _check_index(target: str, requested: str) -> tuple[str, str]:
    """The index the user asked for, validated; ``auto`` is left to :func:`choose_find_index`."""
    from zooql.methods.probelog import ann

    if target == "models":
        if requested in ("hnsw", "hnsw_reduced"):
            raise BindError(f"FIND MODELS ranks every gallery model with an exact scan; index = '{requested}' "
                            f"applies to FIND LOGITS")
        return "exact", "FIND MODELS ranks every gallery model: exact scan"
    if requested == "exact":
        return "exact", "OPTIONS (index = 'exact')"
    if requested in ("hnsw", "hnsw_reduced"):
        if requested == "hnsw" and ann.hnswlib is None:   # the reduced index is numpy only
            raise BindError(f"index = '{requested}' needs hnswlib, which is not installed")
        return requested, f"OPTIONS (index = '{requested}')"
    return "auto", ""


@rule("choose_find_index")
def choose_find_index(b):
    """FIND LOGITS with ``index = 'auto'``: exact scan or HNSW from the index's size and the
    share of it the gallery filter admits (:func:`zooql.methods.probelog.ann.plan_index`)."""
    if not isinstance(b, BoundFind) or b.index != "auto":
        return b
    from zooql.methods.probelog import ann

    total = b.total_logits
    index, reason = ann.plan_index(total, b.gallery_logits / total if total else 1.0)
    if index.startswith("hnsw") and ann.hnswlib is None:
        index, reason = "exact", reason + "; but hnswlib is not installed: exact scan"
    return dataclasses.replace(b, index=index, reason=reason)


@plans(BoundFind)
def _plan_find(b: BoundFind) -> Operator:
    node = _builtin_op(b.ps)
    if b.to_probe:
        node = P.ProbeModels(probe_set=b.ps.name, models=b.to_probe, n_probes=b.ps.n_probes,
                             batch=P.DEFAULT_BATCH, on_demand=True, child=node)
    if b.full_query is not None:
        from zooql.methods.probelog.query_full import ProbeQueryFully

        node = ProbeQueryFully(probe_set=b.ps.name, model=b.full_query[0], observed=b.full_query[1],
                               forward_passes=b.full_query[2], child=node)
    if b.query == "logit":
        q = F.LogitQuery(probe_set=b.ps.name, model=b.model, logit=b.logit, label=b.label, child=node,
                         descriptor=b.query_mode)
    elif b.query == "model":
        q = F.ModelQuery(probe_set=b.ps.name, model=b.model, child=node, descriptor=b.query_mode)
    else:
        q = F.TextQuery(probe_set=b.ps.name, text=b.text, aligner=b.aligner, aligner_model=b.aligner_model,
                        why=b.aligner_why, child=node)
    search = F.Search(method=b.method, topk_probes=b.topk_probes, index=b.index, reason=b.reason,
                      target=b.target, top=b.top, probe_set=b.ps.name, probe_set_why=b.ps.why,
                      gallery_sql=b.gallery_sql,
                      gallery_params=b.gallery_params, filter=b.filter, gallery_models=b.gallery_models,
                      gallery_logits=b.gallery_logits, pool=b.pool, ef=b.ef, child=q,
                      n_probes=b.ps.n_probes, total_logits=b.total_logits, itemsize=b.ps.itemsize,
                      find_shards=b.find_shards, find_shard_mb=b.find_shard_mb)
    if not b.sampled:
        return search
    from zooql.methods.probelog import completion as CP

    return CP.MarkObserved(probe_set=b.ps.name, child=search)
