"""Operators and storage of probe sets and probing (ProbeLog): CREATE PROBE SET, PROBE.

Storage of one probe set (``<hub>/<probe_sets.dir>/``, the folder named in the catalog)::

    probes.npy        the probe images, in probe order ([n, H, W] or [n, H, W, C])
    descriptors/      DescriptorMatrix: z-scored logit columns, probe-major
    raw/g<col>.npy    raw logits of one commit group's models side by side, float32 [n, sum L]
                      (probe_runs.raw_col: where a model's start; probe_raw_files: size, SHA-256)
    raw/m<id>.npy     raw logits of model <id> alone, float32 [n, L] (sampled runs, older hubs)
    hnsw/             HNSW index over the descriptors (built on first use, see ops_find)
    clip/, captions/  cached image / caption embeddings of the text aligners

The catalog holds the probe order and hashes (``probes``), which model was probed into
which descriptor columns (``probe_runs``: logit ``i`` of a model is column
``first_col + i``) and the explicit column map (``descriptor_columns``).

Consistency: raw and descriptor files are written before the catalog rows that point at
them and committed in groups on a writer thread (:mod:`zooql.methods.probelog.probe_commit`).
Columns and raw files of a group that never committed (an interrupt) are orphans: no
catalog row names them, searches only consider catalog columns, and the next PROBE
deletes them. DROP MODEL deletes the catalog rows in its transaction and tombstones the
matrix columns after the commit; a group file goes when its last model is dropped.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from zooql.runtime.loading import load_model, model_options, runtime_for  # noqa: F401  (re-exported)
from zooql.plan.nodes import ExecContext, Operator, Rows
from zooql.methods.probelog.probe_inputs import (  # noqa: F401  (re-exported for the binder)
    IMAGE_EXTS, ProbeImages, probe_source_kind, read_builtin, read_captions, read_folder, read_npy,
    read_parquet, select_indices,
)
from zooql.errors import ExecutionError, StorageError
from zooql.methods.probelog.store import (  # noqa: F401  (used here and re-exported)
    tables_exist, probe_set_row, probe_set_names, probed_model_ids, runs_of, run_columns, ProbeSetFiles, open_matrix, save_npy, load_index, save_index, INDEX_KINDS,
    delete_orphan_raw_files,
)

#: Probes of the auto-created built-in probe set (CREATE PROBE SET builtin FROM 'builtin' LIMIT n for others).
BUILTIN_DEFAULT_N = 256
BUILTIN_SIZE = 224
BUILTIN_MAX_N = 4096  # CREATE PROBE SET ... FROM 'builtin' LIMIT n: n <= this (150 KB per probe)
BUILTIN_NAME = "builtin"
DEFAULT_BATCH = 64


# ==== CREATE PROBE SET ========================================================================

def _safe(name: str) -> str:
    from zooql.storage.names import file_stem

    return file_stem(name)


def create_probe_set(ctx: ExecContext, name: str, kind: str, path: str | None, limit, seed,
                     captions_file: str | None) -> tuple[dict, str | None]:
    """Read, store and register a probe set; returns (catalog row, note)."""
    from zooql.methods.probelog.probesets import PROBESET_VERSION, probe_hashes
    from zooql.methods.probelog.descriptors import DescriptorMatrix

    if kind == "builtin":
        pi = read_builtin(limit, seed, BUILTIN_DEFAULT_N, BUILTIN_SIZE)
        source = f"builtin:v{PROBESET_VERSION}"
    else:
        if not os.path.exists(path):
            raise ExecutionError(f"probe images not found: {path}")
        reader = {"folder": read_folder, "npy": read_npy, "parquet": read_parquet}.get(kind)
        if reader is None:
            raise ExecutionError(f"probe images must be a folder, a .npy or a .parquet file: {path}")
        pi = reader(path, limit, seed)
        source = f"{kind}:{path}"
    n = int(pi.images.shape[0])
    if n < 2:
        raise ExecutionError(f"a probe set needs at least 2 probe images, {path or 'builtin'} gives {n}")
    captions = read_captions(captions_file, pi) if captions_file else pi.captions
    hashes = probe_hashes(pi.images)
    content = hashlib.sha256("".join(hashes).encode()).hexdigest()
    dtype = str(ctx.setting("descriptor_dtype", "float16") or "float16")
    if dtype not in ("float16", "float32"):
        raise ExecutionError(f"setting descriptor_dtype must be 'float16' or 'float32', got {dtype!r}")
    rel = f"probesets/{_safe(name)}-{content[:8]}-{uuid.uuid4().hex[:6]}"
    # the files first (slow), then the catalog rows in a short transaction
    root = ctx.store.file(*rel.split("/"), "probes.npy")
    save_npy(str(root), pi.images)
    DescriptorMatrix.create(os.path.join(str(ctx.store.path), rel, "descriptors"), n, dtype,
                            meta={"probe_set": name, "content_hash": content})
    con = ctx.begin_write()
    row = con.execute(
        "INSERT INTO probe_sets (name, source, n_probes, shape, dtype, dir, content_hash, probe_limit, seed, "
        "captions, descriptor_dtype) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        [name, source, n, json.dumps(list(pi.images.shape[1:])), str(pi.images.dtype), rel, content,
         limit, seed, captions_file or (pi.captions_from if captions else None), dtype]).fetchone()
    import pyarrow as pa

    tbl = pa.table({"probe_set_id": pa.array([row[0]] * n, pa.int32()), "idx": pa.array(range(n), pa.int32()),
                    "name": pa.array([str(x) for x in pi.names], pa.string()),
                    "sha256": pa.array(hashes, pa.string()),
                    "caption": pa.array(captions if captions else [None] * n, pa.string())})
    con.register("_zooql_probes", tbl)
    try:
        con.execute("INSERT INTO probes SELECT probe_set_id, idx, name, sha256, caption FROM _zooql_probes")
    finally:
        con.unregister("_zooql_probes")
    return probe_set_row(con, name), pi.note


@dataclass(frozen=True)
class CreateProbeSet(Operator):
    """Read probe images, store them (probes.npy) with their hashes, create the empty
    descriptor matrix and register the set. ``auto``: the built-in set made on first use."""

    probe_set: str = ""
    kind: str = ""            # folder | npy | parquet | builtin
    path: str | None = None
    limit: int | None = None
    seed: int | None = None
    captions: str | None = None
    auto: bool = False
    writes: ClassVar[bool] = True
    short_writes: ClassVar[bool] = True

    def explain_params(self):
        return {"name": self.probe_set, "source": self.kind,
                "path": os.path.basename(self.path) if self.path else None,
                "limit": self.limit if self.limit is not None else (BUILTIN_DEFAULT_N if self.kind == "builtin" else None),
                "seed": self.seed, "captions": os.path.basename(self.captions) if self.captions else None,
                "auto": self.auto or None}

    def run(self, ctx, inputs):
        if probe_set_row(ctx.con, self.probe_set) is not None:
            if self.auto:
                return Rows(["probe_set"], [])
            raise ExecutionError(f"probe set {self.probe_set!r} already exists")
        ctx.report(f"reading probes for {self.probe_set}", 0, 1)
        ps, note = create_probe_set(ctx, self.probe_set, self.kind, self.path, self.limit, self.seed, self.captions)
        ctx.report(f"reading probes for {self.probe_set}", 1, 1)
        msg = (f"created probe set {self.probe_set}: {ps['n_probes']} probes of shape "
               f"{ps['shape']} {ps['dtype']}" + (", with captions" if ps["has_captions"] else ""))
        if note:
            msg += f" ({note})"
        return Rows(["probe_set", "probes", "shape", "captions", "content_hash"],
                    [(self.probe_set, ps["n_probes"], ps["shape"], ps["has_captions"], ps["content_hash"][:16])],
                    message=msg)


# ==== PROBE ===================================================================================

def _delete_orphans(ctx: ExecContext, ps: dict, dm) -> int:
    """Delete matrix columns no catalog row names (left by an interrupted run)."""
    from zooql.methods.probelog.store import delete_orphan_columns

    return delete_orphan_columns(ctx.con, ps, dm)


def probe_models(ctx: ExecContext, ps_name: str, model_names, *, batch: int, device: str | None,
                 label: str = "probe", sample_pct: float | None = None, sample_seed: int | None = None,
                 reg: float | None = None) -> tuple[list[tuple], list[str]]:
    """Probe ``model_names`` (skipping those already probed) with a probe set, committing
    in groups of at most ``probe_commit_interval`` seconds of work (see
    :mod:`zooql.methods.probelog.probe_commit`). Returns (result rows, notes).

    ``sample_pct``: collaborative probing -- each model runs on its own random subset of
    the probes (:func:`zooql.methods.probelog.completion.sample_mask`); its raw logits are stored
    with NaN at the unobserved probes, its mask in ``probe_masks``, and its descriptors
    are completed against the stored probe factors (fold-in) or, when there are none
    yet, provisional (missing responses at the row mean) until CompleteDescriptors fits
    the factors."""
    from zooql.methods.probelog import completion as CP

    ps = probe_set_row(ctx.con, ps_name)
    if ps is None:
        raise ExecutionError(f"probe set {ps_name!r} does not exist")
    files = ProbeSetFiles(ctx.store, ps)
    dm = open_matrix(files)
    _delete_orphans(ctx, ps, dm)
    delete_orphan_raw_files(ctx.con, ps, files)
    todo, rows = _to_probe(ctx, ps, model_names)
    if not todo:
        return rows, []
    ctx.commit()  # what this statement wrote before (an auto-created probe set) is a unit too
    from zooql.runtime.executors import executor_for

    executor = executor_for(ctx, device, jobs=len(todo))
    run = _ProbeRun(ctx, ps, files, dm, executor, batch, sample_pct, sample_seed,
                    reg, CP.load_factors(files) if sample_pct is not None else None)
    failures = []
    by_id = {m["id"]: m for m in todo}
    results = executor.map((run.job(m) for m in todo),
                           progress=lambda job, d, t: ctx.report(f"probing {job.model['name']}", d, t))
    try:
        for i, res in enumerate(results):   # completion order; the writer thread commits in groups
            row = run.finish(by_id[res.key], res)
            if row[2].startswith("failed"):
                failures.append(row[0])
            rows.append(row)
            ctx.report(label, i + 1, len(todo))
    finally:
        try:
            results.close()   # an interrupt cancels the jobs in flight
        finally:
            run.close()       # the finished models are kept: only the work in flight is lost
            if run.writer.index_dirty:
                save_index(ctx, files, run.writer.index)
    notes = []
    done = sum(1 for r in rows if str(r[2]).startswith("probed"))
    if done:
        pool = executor.name == "local" and executor.workers > 1   # zooql.runtime.process_pool
        notes.append(f"probed {done} model{'s' if done != 1 else ''} with {ps_name} ({run.passes} forward passes"
                     + (f", SAMPLE {sample_pct:g} PERCENT" if sample_pct is not None else "")
                     + (f", on {executor.workers} worker processes" if pool else "") + ")")
    if failures:
        notes.append(f"{len(failures)} failed: {', '.join(failures[:5])}{'...' if len(failures) > 5 else ''}")
    return rows, notes


def _to_probe(ctx: ExecContext, ps: dict, model_names) -> tuple[list[dict], list[tuple]]:
    """(model rows to probe, result rows of those that need nothing: dropped, already
    probed, not probeable)."""
    from zooql.storage import catalog as C

    probed = probed_model_ids(ctx.con, ps["id"])
    todo, rows = [], []
    found = _model_rows(ctx.con, list(model_names))
    for name in model_names:
        m = found.get(name)
        if m is None:
            rows.append((name, None, "dropped", None))
        elif m["id"] in probed:
            rows.append((name, m["num_logits"], "already probed", None))
        elif not m["loadable"] or m["num_logits"] is None:
            rows.append((name, m["num_logits"], "not probeable (no loadable logits)", None))
        else:
            todo.append(m)
    return todo, rows


def _model_rows(con, names: list[str]) -> dict[str, dict]:
    """Catalog rows of ``names`` (as :func:`zooql.storage.catalog.model_row`), one query."""
    import json as _json
    import pyarrow as pa
    from zooql.storage.catalog import MODEL_COLUMNS

    if not names:
        return {}
    con.execute("SELECT 1").fetchall()  # finish any pending result (register refuses otherwise)
    con.register("_zooql_probe_names", pa.table({"name": pa.array(names, pa.string())}))
    try:
        rows = con.execute(f"SELECT {', '.join('m.' + c for c in MODEL_COLUMNS)} FROM models m "
                           f"JOIN _zooql_probe_names n ON n.name = m.name").fetchall()
    finally:
        con.unregister("_zooql_probe_names")
    out = {}
    for row in rows:
        d = dict(zip(MODEL_COLUMNS, row))
        for k in ("preprocess", "tags"):
            d[k] = _json.loads(d[k]) if d[k] else ({} if k == "tags" else None)
        out[d["name"]] = d
    return out


class _ProbeRun:
    """Probing of one statement: a job per model for the executor (run the model on the
    probes, or its sample of them), then, on the driver as each result arrives, its check
    and descriptors; storing and committing happen in groups on a writer thread
    (:class:`zooql.methods.probelog.probe_commit.GroupWriter`)."""

    def __init__(self, ctx, ps, files, dm, executor, batch, sample_pct, sample_seed, reg, factors):
        from zooql.methods.probelog.probe_commit import DEFAULT_INTERVAL, GroupWriter

        self.ctx, self.ps, self.files, self.dm, self.executor = ctx, ps, files, dm, executor
        self.batch, self.sample_pct, self.sample_seed, self.reg, self.factors = \
            batch, sample_pct, sample_seed, reg, factors
        self.images = files.images()
        self.n = ps["n_probes"]
        self.shared = executor.share(self.images, key=f"probes:{ps['content_hash']}")
        interval = ctx.setting("probe_commit_interval", None)
        self.writer = GroupWriter(ctx, ps, files, dm, interval=DEFAULT_INTERVAL if interval is None else float(interval),
                                  sample_pct=sample_pct, sample_seed=sample_seed,
                                  index=load_index(files) if files.has_index() else None)
        self.passes = 0

    def _mask(self, m: dict):
        from zooql.methods.probelog import completion as CP

        if self.sample_pct is None:
            return None
        return CP.sample_mask(self.n, self.sample_pct, self.sample_seed or 0, m["id"])

    def job(self, m: dict):
        """The executor job of model ``m``: its outputs on the probes (its sample of them)."""
        from zooql.runtime.executors import Job, model_record

        mask = self._mask(m)
        args = {"images": self.shared, "batch": self.batch}
        if mask is not None:
            args["indices"] = np.flatnonzero(mask)
        else:   # the same probes for every model: each worker preprocesses them once per preprocessing
            args["inputs_key"] = self.shared.key
        return Job(m["id"], model_record(m), args=args)

    def finish(self, m: dict, res) -> tuple:
        """Check one model's result and queue it for its group's commit; the result row
        (name, logits, status, seconds)."""
        from zooql.methods.probelog.probe_commit import Finished

        t0 = time.perf_counter()
        mask = self._mask(m)
        n_run = self.n if mask is None else int(mask.sum())
        logits, failure = self._check(m, res, n_run)
        if failure:
            return (m["name"], m["num_logits"], f"failed: {failure}", None)
        self.passes += n_run
        logits, desc, status, completion = self._descriptors(logits, mask)
        seconds = time.perf_counter() - t0 + res.seconds
        self.writer.add(Finished(m, logits, desc, mask, completion, seconds, res.device))
        return (m["name"], m["num_logits"], status, round(seconds, 3))

    @staticmethod
    def _check(m: dict, res, n_run: int) -> tuple[np.ndarray | None, str | None]:
        if res.error is not None:
            return None, res.error
        logits = np.asarray(res.value, dtype=np.float32)
        if logits.ndim != 2 or logits.shape[0] != n_run or logits.shape[1] != m["num_logits"]:
            return None, f"output shape {tuple(logits.shape)} is not [{n_run} probes, {m['num_logits']} logits]"
        if not np.isfinite(logits).all():
            return None, "logits contain NaN or infinity"
        return logits, None

    def _descriptors(self, logits, mask):
        """(raw logits over all probes, descriptors, status, completion kind)."""
        from zooql.methods.probelog import completion as CP
        from zooql.methods.probelog.kernels import zscore_columns

        if mask is None:
            return logits, zscore_columns(logits), "probed", None
        n = self.n
        full = np.full((n, logits.shape[1]), np.nan, np.float32)
        full[mask] = logits
        M = np.broadcast_to(mask, (full.shape[1], n))
        if self.factors is not None and self.factors[0].shape[0] == n:
            lam = self.reg if self.reg is not None else self.factors[1].get("reg", CP.DEFAULT_REG)
            return full, zscore_columns(CP.fold_in(full.T, M, self.factors[0], lam).T), "probed", "fold-in"
        Zc, _, _ = CP.standardize_rows(full.T, M)
        return full, zscore_columns(Zc.T), "probed (provisional)", "provisional"

    def close(self) -> None:
        """Commit what finished and wait for the writer (also after an interrupt)."""
        self.writer.close()


def bare(text: str) -> str:
    """A rendered WHERE without the outer parentheses, for messages."""
    if text.startswith("(") and text.endswith(")"):
        depth = 0
        for i, ch in enumerate(text):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0 and i < len(text) - 1:
                return text
        return text[1:-1]
    return text


@dataclass(frozen=True)
class ProbeModels(Operator):
    """Run models over a probe set; store raw logits and z-scored descriptor columns;
    commit in groups (each model atomic). ``on_demand``: inserted by FIND for models not probed yet."""

    probe_set: str = ""
    models: tuple = ()
    n_probes: int | None = None
    already_probed: tuple = ()   # names selected but already probed (reported, not run)
    batch: int = DEFAULT_BATCH
    device: str | None = None
    on_demand: bool = False
    sample_pct: float | None = None   # SAMPLE p PERCENT: collaborative probing
    sample_seed: int | None = None
    reg: float | None = None          # ridge penalty of the fold-in (None: the stored factors')
    where: str | None = None          # the PROBE's WHERE text (for "no model matches WHERE ...")
    child: Operator | None = None
    writes: ClassVar[bool] = True
    short_writes: ClassVar[bool] = True
    runs_models: ClassVar[bool] = True

    def explain_params(self):
        per = self.n_probes
        if per and self.sample_pct is not None:
            per = max(2, min(per, int(round(per * self.sample_pct / 100.0))))
        return {"probe_set": self.probe_set, "models": len(self.models),
                "forward_passes": len(self.models) * per if per else None,
                "sample_pct": self.sample_pct, "seed": self.sample_seed if self.sample_pct is not None else None,
                "already_probed": len(self.already_probed) or None, "batch": self.batch, "device": self.device,
                "on_demand": self.on_demand or None}

    def run(self, ctx, inputs):
        rows, notes = probe_models(ctx, self.probe_set, self.already_probed + self.models, batch=self.batch,
                                   device=self.device,
                                   label="on-demand probe" if self.on_demand else "probe",
                                   sample_pct=self.sample_pct, sample_seed=self.sample_seed, reg=self.reg)
        if notes:
            msg = "; ".join(notes)
        elif self.where is not None and not (self.already_probed or self.models):
            msg = f"nothing to probe: no model matches WHERE {bare(self.where)}"
        else:
            msg = f"nothing to probe: all selected models are probed with {self.probe_set}"
        if inputs and inputs[0].message and not self.on_demand:
            msg = inputs[0].message + "; " + msg
        return Rows(["model", "logits", "status", "seconds"], rows, message=msg)


# ==== hooks: DROP MODEL, DESCRIBE MODEL ========================================================

def _drop_hook(ctx: ExecContext, model_id: int, name: str) -> None:
    if not tables_exist(ctx.con):
        return
    runs = ctx.con.execute(
        "SELECT r.probe_set_id, r.first_col, r.n_cols, r.raw_file, r.raw_col, p.name, p.dir, k.mask_file "
        "FROM probe_runs r JOIN probe_sets p ON p.id = r.probe_set_id "
        "LEFT JOIN probe_masks k ON k.probe_set_id = r.probe_set_id AND k.model_id = r.model_id "
        "WHERE r.model_id = ?", [model_id]).fetchall()
    if not runs:
        return
    ctx.con.execute("DELETE FROM descriptor_columns WHERE model_id = ?", [model_id])
    ctx.con.execute("DELETE FROM probe_masks WHERE model_id = ?", [model_id])
    ctx.con.execute("DELETE FROM probe_runs WHERE model_id = ?", [model_id])
    unlink = [mask for *_, mask in runs if mask]
    for ps_id, _, _, raw, raw_col, *_ in runs:
        if raw and raw_col is None:
            unlink.append(raw)     # a file of this run alone
        elif raw and not ctx.con.execute("SELECT count(*) FROM probe_runs WHERE probe_set_id = ? AND raw_file = ?",
                                         [ps_id, raw]).fetchone()[0]:
            # the last model of its commit group: the file goes (a group that lost only some keeps
            # their bytes until its last model is dropped; the runs of the others still point into it)
            ctx.con.execute("DELETE FROM probe_raw_files WHERE probe_set_id = ? AND file = ?", [ps_id, raw])
            unlink.append(raw)
    store = ctx.store

    def after():  # runs once the DROP has committed
        for ps_id, first, ncols, raw, raw_col, ps_name, ps_dir, _ in runs:
            files = ProbeSetFiles(store, {"dir": ps_dir, "name": ps_name})
            cols = np.arange(first, first + ncols, dtype=np.int64)
            try:
                open_matrix(files).delete_columns(cols)   # tombstones: VACUUM reclaims the space
                for kind in INDEX_KINDS:
                    if files.has_index(kind):
                        idx = load_index(files, kind)
                        idx.mark_deleted(cols)
                        save_index(None, files, idx, store=store, kind=kind)
            except (StorageError, OSError):
                pass  # the catalog no longer names these columns; searches ignore them
        for rel in unlink:
            try:
                os.unlink(os.path.join(str(store.path), rel))
            except OSError:
                pass

    ctx.after_commit.append(after)


def _describe_hook(ctx: ExecContext, m: dict) -> list[tuple[str, Any]]:
    if not tables_exist(ctx.con):
        return []
    rows = ctx.con.execute(
        "SELECT p.name, p.n_probes, r.probed_at, k.n_observed, k.completion FROM probe_runs r "
        "JOIN probe_sets p ON p.id = r.probe_set_id "
        "LEFT JOIN probe_masks k ON k.probe_set_id = r.probe_set_id AND k.model_id = r.model_id "
        "WHERE r.model_id = ? ORDER BY p.name", [m["id"]]).fetchall()
    text = ", ".join(f"{name} ({n} probes, {str(at)[:19]})" for name, n, at, _, _ in rows)
    out = [("probed_with", text or None)]
    sampled = [(name, n, k, c) for name, n, _, k, c in rows if k is not None]
    if sampled:
        out.append(("observed_fraction", ", ".join(
            f"{name}: {k / n:.2f} ({k}/{n} probes observed, rest completed: {c})" for name, n, k, c in sampled)))
    return out
