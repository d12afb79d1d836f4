"""Operators of FIND (ProbeLog search): query descriptors, exact / HNSW search, results.

A FIND plan is a chain (EXPLAIN prints it top-down)::

    Search: method=asymmetric topk_probes=20 index=exact reason='...' target=logits top=10 ...
      LogitQuery | ModelQuery | TextQuery          -- the query descriptor(s)
        ProbeModels: ... on_demand=true            -- only when gallery models are unprobed
          CreateProbeSet: name=builtin ... auto=true  -- only when the built-in set is new

Distances are the L2 distances of :mod:`zooql.methods.probelog.kernels` over the compared probes
(the query's top-k probes for ``asymmetric``, all probes for ``full`` / ``model``);
``score = 1 / (1 + distance / sqrt(probes compared))``: 1 for identical descriptors,
0.5 when they differ by one standard deviation per probe (root mean square).
"""
from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from zooql.methods.probelog import ops_probe as P
from zooql.methods.probelog import store as S
from zooql.methods.probelog.store import load_index, save_index, build_index  # noqa: F401
from zooql.plan.nodes import Expr, Operator, Rows
from zooql.errors import ExecutionError, StorageError

DEFAULT_TOP = 10

# Declared result types (the Arrow schema of FIND results does not depend on the data).
FIND_TYPES = {"rank": "BIGINT", "logit": "BIGINT", "distance": "DOUBLE", "score": "DOUBLE", "logits": "BIGINT"}


# ==== query descriptors ==========================================================================

def _probe_set(ctx, name: str) -> tuple[dict, S.ProbeSetFiles, Any]:
    ps = P.probe_set_row(ctx.con, name)
    if ps is None:
        raise ExecutionError(f"probe set {name!r} does not exist")
    files = S.ProbeSetFiles(ctx.store, ps)
    return ps, files, P.open_matrix(files)


def _run_of(ctx, ps: dict, model: str) -> tuple[dict, int, int]:
    from zooql.storage import catalog as C

    m = C.model_row(ctx.con, model)
    if m is None:
        raise ExecutionError(f"model {model!r} no longer exists")
    row = ctx.con.execute("SELECT first_col, n_cols FROM probe_runs WHERE probe_set_id = ? AND model_id = ?",
                          [ps["id"], m["id"]]).fetchone()
    if row is None:
        raise ExecutionError(f"model {model} is not probed with {ps['name']} (its probing failed; see PROBE)")
    return m, int(row[0]), int(row[1])


def _notes(inputs) -> list[str]:
    return [inputs[0].message] if inputs and inputs[0].message else []


@dataclass(frozen=True)
class LogitQuery(Operator):
    """The stored descriptor of one logit (FIND ... LIKE model.logit[i])."""

    probe_set: str = ""
    model: str = ""
    logit: int = 0
    label: str | None = None
    child: Operator | None = None
    descriptor: str | None = None   # OPTIONS (query = 'stored' | 'full'), shown when given

    def explain_params(self):
        return {"model": self.model, "logit": self.logit, "label": self.label, "descriptor": self.descriptor}

    def run(self, ctx, inputs):
        ps, files, dm = _probe_set(ctx, self.probe_set)
        m, first, n = _run_of(ctx, ps, self.model)
        q = np.asarray(dm.columns([first + self.logit]), dtype=np.float32)[:, 0]
        what = f"{self.model}.logit[{self.logit}]" + (f" (label {self.label!r})" if self.label else "")
        if not np.any(q):
            raise ExecutionError(f"{what} is constant over the probes of {ps['name']}: it has no descriptor "
                                 f"to compare (try a larger or more varied probe set)")
        info = {"query": what, "exclude": (m["id"],), "notes": _notes(inputs)}
        return Rows(["descriptor", "info"], [(q, info)])


@dataclass(frozen=True)
class ModelQuery(Operator):
    """All logit descriptors of a model (FIND MODELS LIKE model)."""

    probe_set: str = ""
    model: str = ""
    child: Operator | None = None
    descriptor: str | None = None   # OPTIONS (query = 'stored' | 'full'), shown when given

    def explain_params(self):
        return {"model": self.model, "descriptor": self.descriptor}

    def run(self, ctx, inputs):
        ps, files, dm = _probe_set(ctx, self.probe_set)
        m, first, n = _run_of(ctx, ps, self.model)
        Q = np.asarray(dm.columns(np.arange(first, first + n)), dtype=np.float32)
        Q = Q[:, np.any(Q != 0, axis=0)]
        if Q.shape[1] == 0:
            raise ExecutionError(f"every logit of {self.model} is constant over the probes of {ps['name']}")
        info = {"query": self.model, "exclude": (m["id"],), "notes": _notes(inputs)}
        return Rows(["descriptor", "info"], [(Q, info)])


@dataclass(frozen=True)
class TextQuery(Operator):
    """A text's descriptor from an aligner (see :mod:`zooql.methods.probelog.aligners`)."""

    probe_set: str = ""
    text: str = ""
    aligner: str = ""
    aligner_model: str | None = None
    why: str | None = None
    child: Operator | None = None

    def explain_params(self):
        return {"aligner": self.aligner, "model": self.aligner_model, "text": self.text, "chosen_by": self.why}

    def run(self, ctx, inputs):
        from zooql.methods.probelog.aligners import AlignerChoice, text_query

        ps, files, dm = _probe_set(ctx, self.probe_set)
        q, info = text_query(ctx, AlignerChoice(self.aligner, self.aligner_model, self.why or ""),
                             self.text, ps, files, dm)
        info = dict(info, query=repr(self.text), notes=_notes(inputs))
        return Rows(["descriptor", "info"], [(q, info)])


# ==== search ======================================================================================

def _search_fn(method: str, kp: int | None):
    from zooql.methods.probelog import kernels as PL

    if method == "asymmetric":
        return lambda q, store, top, cand: PL.asymmetric_search(q, store, kp, top, candidates=cand)
    return lambda q, store, top, cand: PL.full_search(q, store, top, candidates=cand)


def _map_columns(cols: np.ndarray, mids: np.ndarray, first: np.ndarray, ncols: np.ndarray):
    """column ids -> (model id, logit index); -1 model for columns of no (gallery) run."""
    if first.size == 0:
        return np.full(cols.shape, -1, np.int64), np.zeros(cols.shape, np.int64)
    pos = np.searchsorted(first, cols, side="right") - 1
    ok = pos >= 0
    pc = np.where(ok, pos, 0)
    idx = cols - first[pc]
    ok &= idx < ncols[pc]
    return np.where(ok, mids[pc], -1), np.where(ok, idx, 0)


@dataclass(frozen=True)
class Search(Operator):
    """Rank the gallery (models of the WHERE / IN filter probed with the probe set) by the
    discrepancy to the query descriptor; return the top results with model metadata."""

    method: str = "asymmetric"
    topk_probes: int | None = None
    index: str = "exact"
    reason: str = ""
    target: str = "logits"          # logits | models
    top: int = DEFAULT_TOP
    probe_set: str = ""
    probe_set_why: str | None = None   # how the default probe set was chosen (shown in the message)
    gallery_sql: str = ""
    gallery_params: tuple = ()
    filter: str | None = None
    gallery_models: int | None = None
    gallery_logits: int | None = None
    pool: int | None = None
    ef: int | None = None
    child: Operator | None = None
    n_probes: int = 0                  # of the probe set (the store's size, for the shard rule)
    total_logits: int = 0              # columns of the store once on-demand probing is done
    itemsize: int = 2                  # bytes of a descriptor value
    find_shards: int | None = None     # SET find_shards (None: the automatic rule)
    find_shard_mb: float | None = None  # SET find_shard_mb

    def explain_params(self):
        return {"method": self.method, "topk_probes": self.topk_probes, "index": self.index,
                "reason": self.reason, "target": self.target, "top": self.top, "probe_set": self.probe_set,
                "gallery_models": self.gallery_models, "gallery_logits": self.gallery_logits,
                "filter": Expr(self.filter) if self.filter else None, "pool": self.pool, "ef": self.ef}

    def executor_params(self, executor):
        """EXPLAIN: executor, shards and workers when the exact scan is sharded."""
        from zooql.runtime.shards import shard_count

        if self.target != "logits" or self.index in S.INDEX_KINDS:
            return None
        name = (executor or {}).get("executor", "local")
        workers = (executor or {}).get("workers", 1) if executor else 1
        nbytes = self.n_probes * self.total_logits * self.itemsize
        n = shard_count(nbytes, executor=name, workers=workers if isinstance(workers, int) else 1,
                        forced=self.find_shards, limit_mb=self.find_shard_mb)
        if not n:
            return None
        auto = self.find_shards is None and not isinstance(workers, int)
        return {"executor": name, "shards": f">={n}" if auto else n, "workers": workers}

    # -- helpers ------------------------------------------------------------------------------------
    def _gallery(self, ctx, ps, exclude):
        ids = {r[0] for r in ctx.con.execute(self.gallery_sql, list(self.gallery_params)).fetchall()}
        ids -= set(exclude)
        return P.runs_of(ctx.con, ps["id"], ids), len(ids)

    def _kp(self, n: int) -> int | None:
        return min(self.topk_probes, n) if self.method == "asymmetric" and self.topk_probes else None

    def run(self, ctx, inputs):
        q, info = inputs[0].rows[0]
        ps, files, dm = _probe_set(ctx, self.probe_set)
        n = ps["n_probes"]
        kp = self._kp(n)
        (mids, first, ncols), matched = self._gallery(ctx, ps, info.get("exclude", ()))
        _, all_first, all_ncols = P.runs_of(ctx.con, ps["id"])
        notes = list(info.get("notes", []))
        if self.target == "logits":
            found, used_index = self._search_logits(ctx, files, dm, q, kp, mids, first, ncols, all_ncols, notes)
            rows = self._logit_rows(ctx, found, mids, first, ncols, n if kp is None else kp)
        else:
            found = self._rank_models(dm, q, kp, mids, first, ncols)
            used_index = "exact"
            rows = self._model_rows(ctx, found, n if kp is None else kp)
        if "aligner" in info:
            rows = [r + (info["aligner"],) for r in rows]
        what = ("logit" if self.target == "logits" else "model") + ("" if len(rows) == 1 else "s")
        head = f"{len(rows)} {what} " + (f"recognizing {info['query']}" if "aligner" in info else f"like {info['query']}")
        parts = [head, f"probes: {ps['name']} ({n}" + (f"; {self.probe_set_why}" if self.probe_set_why else "") + ")",
                 f"method={self.method}" + (f" topk_probes={kp}" if kp else "") + f" index={used_index}"]
        if "aligner" in info:
            parts.insert(1, f"aligner: {info['aligner']}" + (f", {info['detail']}" if info.get("detail") else ""))
        if int(mids.size) == 0 and self.filter and not matched:
            notes.append(f"no model matches WHERE {P.bare(self.filter)}" + (" (besides the query's own model)"
                                                                    if info.get("exclude") else ""))
        elif int(mids.size) == 0:
            notes.append("no model in the gallery is probed with this probe set")
        msg = "; ".join(parts + notes)
        cols = ["rank", "model", "logit", "label", "distance", "score"]
        cols += ["source", "tree"] if self.target == "logits" else ["logits", "source", "tree"]
        if "aligner" in info:
            cols.append("aligner")
        return Rows(cols, rows, message=msg, types=[FIND_TYPES.get(c, "VARCHAR") for c in cols])

    # -- logits ---------------------------------------------------------------------------------------
    def _search_logits(self, ctx, files, dm, q, kp, mids, first, ncols, all_ncols, notes):
        search = _search_fn(self.method, kp)
        n_gallery = int(ncols.sum())
        top = min(int(self.top), n_gallery)  # never allocate for more results than logits exist
        if n_gallery == 0 or top <= 0:
            return (np.empty(0, np.int64), np.empty(0)), "exact"
        if self.index not in S.INDEX_KINDS:
            from zooql.methods.probelog import find_shards as FS

            if FS.wanted(ctx, dm.nbytes(), self.find_shards, self.find_shard_mb):
                found, info = FS.search(ctx, dm, q, kp, top, P.run_columns(first, ncols),
                                        forced=self.find_shards, limit_mb=self.find_shard_mb)
                notes.append(f"exact scan over {info['shards']} shards on the {info['executor']} executor "
                             f"({info['workers']} workers)")
                return found, "exact"
        extra = int(all_ncols.sum()) - n_gallery
        if dm.n_columns == int(all_ncols.sum()) and extra <= max(4 * top, 4096):
            # (almost) the whole matrix: dense scan for a few more and drop the others afterwards
            cand, want = None, top + extra
        else:
            cand, want = P.run_columns(first, ncols), top
        if self.index in S.INDEX_KINDS:
            found = self._hnsw(ctx, files, dm, q, kp, want, cand, first, ncols, search, notes)
            if found is not None:
                return found, self.index
        return search(q, dm, want, cand), "exact"

    def _hnsw(self, ctx, files, dm, q, kp, want, cand, first, ncols, search, notes):
        try:
            kind = self.index
            index = load_index(files, kind) if files.has_index(kind) else build_index(ctx, files, dm, kind)
        except (StorageError, ImportError) as exc:
            notes.append(f"HNSW unavailable ({exc}); exact scan")
            return None
        allowed = P.run_columns(first, ncols)
        indexed = np.asarray(index.ids, dtype=np.int64)
        unindexed = np.setdiff1d(allowed, indexed)
        # both indexes: max(10 * TOP, 200) candidates re-ranked exactly (the reduced index's
        # recall@10 at 1M benchmark logits was 1.000 with 200 and with 600; RESULTS.md, issue 14)
        pool = int(self.pool or max(10 * want, 200))
        hc = index.query(q, pool, filter_ids=cand, ef=self.ef or pool, k_probes=kp)
        ids, d = search(q, dm, want, np.union1d(hc, unindexed))
        if int(np.isin(ids, allowed).sum()) < min(int(self.top), int(allowed.size)):
            # never silently fewer than k results: exact scan of the admissible columns
            notes.append("HNSW found too few admissible candidates; exact scan of the gallery")
            return search(q, dm, min(int(self.top), int(allowed.size)), allowed)
        if unindexed.size:
            notes.append(f"{unindexed.size} logits not yet in the HNSW index were scanned exactly")
        return ids, d

    def _logit_rows(self, ctx, found, mids, first, ncols, kcmp):
        ids, d = found
        m, li = _map_columns(np.asarray(ids, np.int64), mids, first, ncols)
        keep = m >= 0
        m, li, d = m[keep][: self.top], li[keep][: self.top], np.asarray(d)[keep][: self.top]
        meta = _model_meta(ctx.con, set(int(x) for x in m))
        labels = _labels(ctx.con, list(zip(m.tolist(), li.tolist())))
        rows = []
        for r, (mid, i, dist) in enumerate(zip(m.tolist(), li.tolist(), d.tolist()), 1):
            name, source, tree, _ = meta[mid]
            rows.append((r, name, int(i), labels.get((mid, i)), round(float(dist), 6), _score(dist, kcmp),
                         source, tree))
        return rows

    # -- models -----------------------------------------------------------------------------------------
    def _rank_models(self, dm, q, kp, mids, first, ncols):
        """Per gallery model: min over its logits (one query descriptor), or the mean over the
        query model's logits of their best match (a whole model). Exact scan."""
        from zooql.methods.probelog import kernels as PL

        if mids.size == 0:
            return []
        Q = q[:, None] if q.ndim == 1 else q
        cand = P.run_columns(first, ncols)
        model_of = np.repeat(np.arange(mids.size), ncols)  # position in runs of each candidate column
        bounds = np.r_[0, np.cumsum(ncols)[:-1]]
        total = np.zeros(mids.size)
        best_d = np.full(mids.size, np.inf)
        best_c = np.zeros(mids.size, np.int64)
        for j in range(Q.shape[1]):
            cid, d = PL.all_distances(Q[:, j], dm, kp)
            pos = np.searchsorted(cid, cand)
            ok = (pos < cid.size)
            ok[ok] = cid[np.minimum(pos[ok], cid.size - 1)] == cand[ok]
            if not ok.all():
                raise ExecutionError("descriptor matrix is missing columns the catalog names; "
                                     "re-probe the affected models")
            dc = d[pos]
            order = np.lexsort((dc, model_of))  # by model, then distance: each model's best first
            arg = order[bounds]
            mins = dc[arg]
            total += mins
            better = mins < best_d
            best_d = np.where(better, mins, best_d)
            best_c = np.where(better, cand[arg], best_c)
        score = total / Q.shape[1]
        order = np.lexsort((mids, score))[: int(self.top)]
        return [(int(mids[g]), float(score[g]), int(best_c[g] - first[g])) for g in order]

    def _model_rows(self, ctx, found, kcmp):
        meta = _model_meta(ctx.con, {m for m, _, _ in found})
        labels = _labels(ctx.con, [(m, i) for m, _, i in found])
        rows = []
        for r, (mid, dist, li) in enumerate(found, 1):
            name, source, tree, nl = meta[mid]
            rows.append((r, name, li, labels.get((mid, li)), round(dist, 6), _score(dist, kcmp), nl, source, tree))
        return rows


def _score(d: float, k: int) -> float:
    return round(1.0 / (1.0 + float(d) / math.sqrt(max(1, k))), 6)


def _model_meta(con, ids: set[int]) -> dict[int, tuple]:
    if not ids:
        return {}
    ph = ", ".join("?" * len(ids))
    rows = con.execute(f"SELECT id, name, source, tree, num_logits FROM models WHERE id IN ({ph})",
                       list(ids)).fetchall()
    return {r[0]: r[1:] for r in rows}


def _labels(con, pairs: list[tuple[int, int]]) -> dict[tuple[int, int], str | None]:
    if not pairs:
        return {}
    ph = ", ".join("(?, ?)" for _ in pairs)
    flat = [x for p in pairs for x in p]
    rows = con.execute(f"SELECT model_id, idx, label FROM logits WHERE (model_id, idx) IN ({ph})", flat).fetchall()
    return {(r[0], r[1]): r[2] for r in rows}
