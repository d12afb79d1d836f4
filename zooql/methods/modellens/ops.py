"""Operators of RECOMMEND MODELS and TRAIN RECOMMENDER (ModelLens, :mod:`zooql.methods.modellens.recommender`).

Plan shapes::

    Recommend: dataset=... metric=... method=modellens top=5 case=...
      TrainRecommender: reuse=true                 -- load the cached state_dict (read-only)
      TrainRecommender: reuse=false reason=stale   -- (re)train; the statement writes the cache

    Recommend: dataset=... method=avg_rank ...
      FitBaseline: method=avg_rank                 -- baselines are cheap and never cached

The trained ModelLens state is cached in the hub: ``recommender/modellens-<fp>-<cfg>.npz``
beside the catalog (written atomically) plus one row of the ``recommenders`` table with
the *fingerprint* of what it was trained on (see :func:`fingerprint`). A later RECOMMEND
reuses it while the fingerprint matches and the row is not marked stale; IMPORT
EVALUATIONS marks it stale (``IMPORT_HOOKS``), and any other change to the evaluations,
to the description of an evaluated dataset or to the metadata of an evaluated model
changes the fingerprint. The binder decides reuse at plan time, so only a RECOMMEND that
has to (re)train runs as a write statement.

Torch and the MiniLM text encoder are imported lazily inside ``run``: planning and
EXPLAIN never load them.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import duckdb

from zooql.plan.nodes import ExecContext, Expr, Operator, OpStats, Rows
from zooql.errors import ExecutionError, StorageError
from zooql.methods.modellens.catalog import (  # noqa: F401  (re-exported for the binder)
    RECOMMENDER_NAME, CACHE_DIR, FEATURES_VERSION, _LOADED, _EVAL_FILTER, evaluation_count,
    fingerprint, cached_row, cached_selection, hub_dir, default_config, config_tag, file_damaged,
    stored_config, recommender_status, load_records, dataset_text, catalog_dataset_text,
    name_features, model_features, side_info,
)

METHODS = ("modellens", "avg_rank", "imagenet", "size", "knn_dataset", "auto")
# the default: ModelLens, or what TRAIN RECOMMENDER's validation chose (recommend_select)
DEFAULT_METHOD = "auto"
# OPTIONS (...) a RECOMMEND accepts, per method (name -> python type).
COMMON_OPTIONS = {"include_observed": bool}
METHOD_OPTIONS = {"modellens": {}, "auto": {}, "avg_rank": {}, "imagenet": {"reference": str},
                  "size": {"key": str}, "knn_dataset": {"k": int}}
# Bump when the side features below change meaning: cached recommenders are retrained.
RESULT_COLUMNS = ["rank", "model", "predicted_score", "uncertainty", "observed"]
RESULT_TYPES = ["BIGINT", "VARCHAR", "DOUBLE", "DOUBLE", "BOOLEAN"]

# ---- the cache ------------------------------------------------------------------------------



def _load_cached(path: str, row: dict | None = None):
    """The cached Recommender of ``path``; StorageError naming the file when it is damaged
    (its size is not the recorded one, or it does not read back: the .npz's CRCs)."""
    rec = _LOADED.get(path)
    if rec is None:
        import zipfile

        import numpy as np

        from zooql.methods.modellens.recommender import Recommender

        why = file_damaged(path, row or {})
        if why is None:
            try:
                with np.load(path, allow_pickle=False) as z:
                    rec = Recommender.from_state({k: z[k] for k in z.files})
            except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
                why = f"it does not read back ({type(exc).__name__}: {str(exc)[:120]})"
        if why is not None:
            raise StorageError(f"recommender file {path} is damaged: {why}; TRAIN RECOMMENDER rebuilds it "
                               "(CHECK HUB lists every damaged file)")
        if len(_LOADED) >= 4:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[path] = rec
    return rec


# Columns of an evaluations file that are not side features.
_CORE_COLUMNS = {"model", "dataset", "metric", "score", "split", "source"}
_DATASET_TEXT_COLUMNS = {"dataset_description": "description", "description": "description",
                         "dataset_domain": "domain", "domain": "domain"}


def _plain(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v if isinstance(v, (str, int, float, bool)) else (None if v is None else str(v))


def ingest_side_columns(con, table) -> tuple[int, int]:
    """Keep the side information of an evaluations file (a pyarrow table).

    * ``dataset_description`` (or ``description``) and ``dataset_domain`` (or ``domain``)
      fill the datasets table where it has no value yet (ALTER DATASET wins);
    * every other extra column (``family``, ``params_m``, ``pretrain``, ...) is a feature
      of the row's model, kept in ``model_features`` (first non-null value per model;
      a later import overrides it). -> (datasets described, models with features)."""
    names = {n.lower(): n for n in table.column_names}
    if "model" not in names or "dataset" not in names:
        return 0, 0
    text_cols = {low: _DATASET_TEXT_COLUMNS[low] for low in names if low in _DATASET_TEXT_COLUMNS}
    feat_cols = [low for low in names if low not in _CORE_COLUMNS and low not in text_cols]
    if not text_cols and not feat_cols:
        return 0, 0
    cols = {low: table.column(names[low]).to_pylist() for low in ["model", "dataset", *text_cols, *feat_cols]}
    described: dict[tuple[str, str], str] = {}
    feats: dict[str, dict] = {}
    for i, (m, d) in enumerate(zip(cols["model"], cols["dataset"])):
        for low, target in text_cols.items():
            v = cols[low][i]
            if d is not None and isinstance(v, str) and v.strip():
                described.setdefault((str(d), target), v.strip())
        if m is None or not feat_cols:
            continue
        f = feats.setdefault(str(m), {})
        for low in feat_cols:
            v = _plain(cols[low][i])
            if v is not None and not (isinstance(v, str) and not v.strip()):
                f.setdefault(low, v)
    for (d, target), text in described.items():
        con.execute(f"UPDATE datasets SET {target} = ? WHERE name = ? AND {target} IS NULL", [text, d])
    n_models = 0
    for m, f in feats.items():
        if not f:
            continue
        row = con.execute("SELECT features FROM model_features WHERE model = ?", [m]).fetchone()
        merged = {**(json.loads(row[0]) if row and row[0] else {}), **f}
        con.execute("INSERT OR REPLACE INTO model_features VALUES (?, ?)", [m, json.dumps(merged, sort_keys=True)])
        n_models += 1
    return len({d for d, _ in described}), n_models


def _on_import(ctx: ExecContext, kind: str, table=None) -> None:
    """IMPORT hook: an evaluations import marks the cached recommender stale and, when
    the importer passes the file's full table, keeps its side columns."""
    if kind != "evaluations":
        return
    ctx.con.execute("UPDATE recommenders SET stale = true")
    if table is not None:
        ingest_side_columns(ctx.con, table)




# ---- operators ----------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainRecommender(Operator):
    """Fit ModelLens on the evaluations table, or load the cached fit (``reuse=true``).

    Writes (the .npz and the ``recommenders`` row) only when it trains, so a RECOMMEND
    that reuses the cache stays a read-only statement. ``explicit`` is the TRAIN
    RECOMMENDER statement itself (returns a summary row instead of the fitted model).

    The training reads the evaluations over a read-only connection and holds no DuckDB
    lock; the fit's file is written beside the catalog (atomically, under the hub's writer
    lock) and its row committed in one short read-write transaction (``short_writes``);
    if that commit fails the new file is removed, so a failed statement leaves nothing."""

    short_writes: ClassVar[bool] = True
    reuse: bool = False
    reason: str | None = None
    config: tuple = ()            # full Recommender config as sorted (key, value) pairs
    options: tuple = ()           # what the statement gave in WITH (...), for EXPLAIN
    explicit: bool = False
    chosen: str | None = None     # the cached validation choice (EXPLAIN TRAIN RECOMMENDER)
    weights: tuple = ()           # its blend weights as (method, weight) pairs
    validation: tuple = ()        # its (candidate, NDCG@5) pairs

    @property
    def writes(self) -> bool:  # type: ignore[override]
        return not self.reuse

    def explain_params(self):
        return {"reuse": self.reuse, "reason": self.reason,
                "with": dict(self.options) if self.options else None,
                "chosen": self.chosen, "weights": dict(self.weights) if self.weights else None,
                "validation": dict(self.validation) if self.validation else None}

    def _fit(self, ctx: ExecContext, config: dict):
        from zooql.methods.modellens.select import train_default

        recs = load_records(ctx.con)
        if len(recs) == 0:
            raise ExecutionError("no evaluations to train the recommender on; "
                                 "IMPORT EVALUATIONS FROM 'file.csv' first")
        side = side_info(ctx.con)
        steps = int(config.get("epochs", 1))

        def progress(step, total, loss):
            ctx.report("train recommender", step, total)

        def val_progress(done, total):
            ctx.report("validate recommender", done, total)

        t0 = time.perf_counter()
        try:
            rec = train_default(recs, side, config, progress=progress, val_progress=val_progress)
        except ImportError as exc:
            raise ExecutionError(f"training the recommender needs {exc.name or 'torch'}: {exc}") from None
        ctx.report("train recommender", steps, steps)
        return rec, recs, time.perf_counter() - t0

    def _save(self, ctx: ExecContext, rec, recs, seconds: float, fp: str, config: dict) -> str:
        import numpy as np

        from zooql.storage.hub import atomic_write_bytes

        fname = f"{RECOMMENDER_NAME}-{fp}-{config_tag(config)}.npz"
        path = ctx.store.file(CACHE_DIR, fname)
        buf = io.BytesIO()
        np.savez(buf, **rec.state_dict())
        data = buf.getvalue()
        previous = path.read_bytes() if path.exists() else None   # the same fit's older copy
        atomic_write_bytes(path, data)
        try:
            ctx.begin_write().execute(
                "INSERT OR REPLACE INTO recommenders (name, fingerprint, config, file, records, models, "
                "datasets, metrics, train_seconds, stale, trained_at, size, sha256) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, false, current_timestamp, ?, ?)",
                [RECOMMENDER_NAME, fp, json.dumps(config), fname, len(recs), len(set(recs.m_idx.tolist())),
                 len(set(recs.d_idx.tolist())), len(set(recs.k_idx.tolist())), round(seconds, 3),
                 len(data), hashlib.sha256(data).hexdigest()])
            ctx.commit()
        except BaseException:
            if previous is None:
                path.unlink(missing_ok=True)
            else:
                atomic_write_bytes(path, previous)
            raise
        _LOADED[str(path)] = rec
        folder = path.parent

        def cleanup():  # after COMMIT: drop the files of older fits
            for other in folder.glob(f"{RECOMMENDER_NAME}-*.npz"):
                if other.name != fname:
                    _LOADED.pop(str(other), None)
                    try:
                        other.unlink()
                    except OSError:
                        pass
        ctx.after_commit.append(cleanup)
        return fname

    def run(self, ctx, inputs):
        stats = ctx.stats.setdefault(id(self), OpStats())
        config = dict(self.config) or default_config()
        fp = fingerprint(ctx.con)
        row = cached_row(ctx.con)
        rec, fname, trained, seconds, recs = None, None, False, 0.0, None
        # Re-check at run time: another writer may have (re)trained or changed the data since
        # this statement was planned.
        if row is not None and not row["stale"] and row["fingerprint"] == fp \
                and (not self.explicit or stored_config(row) == config):
            path = os.path.join(str(ctx.store.path), CACHE_DIR, row["file"])
            if os.path.exists(path):
                try:
                    rec = _load_cached(path, row)
                    fname = row["file"]
                except StorageError:
                    if not self.writes:   # a RECOMMEND that planned to reuse it: say which file
                        raise
                    rec = None            # TRAIN RECOMMENDER (or a retraining RECOMMEND) rebuilds it
        if rec is None:
            rec, recs, seconds = self._fit(ctx, config)
            trained = True
            if self.writes:
                fname = self._save(ctx, rec, recs, seconds, fp, config)
        stats.extra["trained"] = trained
        sel = getattr(rec, "selection", None)
        if sel is not None:
            stats.extra["chosen"] = sel.method
            if sel.method == "blend":
                stats.extra["weights"] = sel.weights_text()
        if not self.explicit:
            msg = None
            if trained and not self.writes:
                msg = "recommender trained in memory (the data changed while planning; not cached)"
            return Rows(["recommender"], [(rec,)], message=msg)
        if trained:
            n_m, n_d, n_k = (len(set(recs.m_idx.tolist())), len(set(recs.d_idx.tolist())),
                             len(set(recs.k_idx.tolist())))
            n_r = len(recs)
            msg = (f"trained recommender on {n_r} records ({n_m} models, {n_d} datasets, "
                   f"{n_k} metrics) in {seconds:.1f}s" + (f"; cached as {CACHE_DIR}/{fname}" if fname else ""))
        else:
            n_r, n_m, n_d, n_k, seconds = (row["records"], row["models"], row["datasets"],
                                           row["metrics"], row["train_seconds"] or 0.0)
            msg = f"recommender is up to date (trained {row['trained_at']:%Y-%m-%d %H:%M:%S}); reused"
        if sel is not None:
            msg += "; " + sel.summary()
        return Rows(["records", "models", "datasets", "metrics", "seconds", "reused", "file"],
                    [(n_r, n_m, n_d, n_k, round(float(seconds), 3), not trained, fname)], message=msg)


@dataclass(frozen=True)
class FitBaseline(Operator):
    """Fit one of the baselines of :mod:`zooql.methods.modellens.baselines` (cheap, not cached)."""

    method: str = ""
    options: tuple = ()

    def explain_params(self):
        return {"method": self.method, "options": dict(self.options) if self.options else None}

    def run(self, ctx, inputs):
        from zooql.methods.modellens.baselines import BASELINES

        recs = load_records(ctx.con)
        if len(recs) == 0:
            raise ExecutionError("no evaluations to rank from; IMPORT EVALUATIONS FROM 'file.csv' first")
        model = BASELINES[self.method](**dict(self.options)).fit(recs, side_info(ctx.con))
        return Rows(["recommender"], [(model,)])


def _calibrate(preds: list[tuple[str, float, float]], observed: dict[str, float]):
    """Affine map of a baseline's own score onto the metric's scale, fitted on the models
    with an observed score (``score ~ a + b * baseline``, ``b >= 0``). -> (a, b, rms) or None."""
    pairs = [(p, observed[m]) for m, p, _ in preds
             if m in observed and math.isfinite(p) and p > -1e5]
    if not pairs:
        return None
    xs = [p for p, _ in pairs]
    ys = [y for _, y in pairs]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    vx = sum((x - mx) ** 2 for x in xs)
    b = max(sum((x - mx) * (y - my) for x, y in pairs) / vx, 0.0) if vx > 1e-12 else 0.0
    a = my - b * mx
    rms = math.sqrt(sum((y - a - b * x) ** 2 for x, y in pairs) / len(pairs))
    return a, b, rms


@dataclass(frozen=True)
class Recommend(Operator):
    """Rank the candidate models (every model of the evaluations table, narrowed by WHERE
    over registered model metadata) on one dataset; observed scores (records of the
    dataset on the metric, and GIVEN seeds) are shown as they are and rank with the rest."""

    child: Operator = None
    dataset: str = ""
    metric: str = ""
    method: str = "modellens"
    top: int = 10
    case: str = ""                # known | text | given | text+given | prior
    description: str | None = None
    given: tuple = ()             # (model, score) pairs
    filter_sql: str | None = None
    filter_params: tuple = ()
    filter_text: str | None = None
    include_observed: bool = True
    chosen: str | None = None     # method=auto: what ranks this dataset, when known at plan time
    weights: tuple = ()           # ... and its blend weights as (method, weight) pairs

    def explain_params(self):
        return {"dataset": self.dataset, "metric": self.metric, "method": self.method,
                "top": self.top, "case": self.case,
                "given": [m for m, _ in self.given] if self.given else None,
                "filter": Expr(self.filter_text) if self.filter_text else None,
                "include_observed": False if not self.include_observed else None,
                "chosen": self.chosen, "weights": dict(self.weights) if self.weights else None}

    def _candidates(self, con) -> list[str]:
        names = [r[0] for r in con.execute(
            f"SELECT DISTINCT model FROM evaluations WHERE {_EVAL_FILTER} ORDER BY 1").fetchall()]
        if self.filter_sql:
            allowed = {r[0] for r in con.execute(f"SELECT name FROM models WHERE {self.filter_sql}",
                                                 list(self.filter_params)).fetchall()}
            names = [n for n in names if n in allowed]
        return names

    def run(self, ctx, inputs):
        con = ctx.con
        model = inputs[0].rows[0][0]
        candidates = self._candidates(con)
        observed = {m: float(s) for m, s in con.execute(
            f"SELECT model, avg(score) FROM evaluations WHERE dataset = ? AND metric = ? AND {_EVAL_FILTER} "
            "GROUP BY model", [self.dataset, self.metric]).fetchall()}
        given = {m: float(s) for m, s in self.given}
        shown = {**observed, **given}
        if not candidates:
            return Rows(RESULT_COLUMNS, [], message="no candidate models"
                        + (f" match WHERE {self.filter_text}" if self.filter_text else ""), types=RESULT_TYPES)
        used = self.method
        if self.method == "auto":
            model, used = self._auto(con, model, given)
        if self.method in ("modellens", "auto"):
            preds = model.predict(self.dataset, metric=self.metric, models=candidates,
                                  description=self.description, given=given or None)
            calib, units = None, True
        else:
            # baselines: knn_dataset uses the observed scores of a known dataset as seeds
            preds = model.predict(self.dataset, metric=self.metric, models=candidates,
                                  description=self.description, given=shown or None)
            calib = _calibrate(preds, shown)
            units = calib is not None
        rows = []
        for pos, (m, p, u) in enumerate(preds):
            p, u = float(p), (float(u) if u is not None else None)
            if m in shown:
                if not self.include_observed:
                    continue
                rows.append((shown[m], pos, m, None, True))
                continue
            if self.method not in ("modellens", "auto"):
                if not (math.isfinite(p) and p > -1e5):   # the baseline has no score for it
                    p, u = math.nan, None
                elif calib is not None:
                    a, b, rms = calib
                    p, u = a + b * p, rms
                else:
                    u = u or None
            rows.append((p if math.isfinite(p) else None, pos, m, u, False))
        rows.sort(key=lambda r: (-(r[0] if r[0] is not None else -math.inf), r[1]))
        out = [(i + 1, m, v, (float(u) if u is not None else None), obs)
               for i, (v, _, m, u, obs) in enumerate(rows[: self.top])]
        n_obs = sum(1 for m in candidates if m in shown)
        head = self.method if used == self.method else f"{self.method} ({used})"
        msg = (f"{head}: top {len(out)} of {len(candidates)} candidate models for dataset "
               f"{self.dataset!r} ({self.case}), metric {self.metric}; {n_obs} observed")
        if not units:
            msg += (f"; predicted_score is the {self.method} baseline's own score, not in "
                    f"{self.metric} units (no observed scores to calibrate it)")
        return Rows(list(RESULT_COLUMNS), out, message=msg, types=RESULT_TYPES)

    def _auto(self, con, rec, given):
        """The default method: the validated choice of TRAIN RECOMMENDER for an unseen
        dataset without seeds, ModelLens otherwise. -> (predictor, what it is)."""
        from zooql.methods.modellens.select import AutoRecommender

        auto = AutoRecommender()
        auto.rec, auto.selection = rec, getattr(rec, "selection", None)
        if not auto.applies(self.dataset, given):
            return rec, "modellens"
        auto.attach(rec, load_records(con), side_info(con))
        return auto, auto.selection.describe()
