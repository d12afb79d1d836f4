"""FIND ... LIKE with ``OPTIONS (query = 'full')``: search with the query model's fully
probed descriptor (the query side of ProbeLog's collaborative-probing protocol, where the
query descriptor is known on every probe and only the gallery is sampled and completed).

A query model that was probed with ``SAMPLE p PERCENT`` has a completed descriptor. With
``query = 'full'`` the plan gets a :class:`ProbeQueryFully` step that runs the model on its
*unobserved* probes only (its observed responses are stored), stores the now complete raw
logits, replaces its descriptor columns by the z-scored real responses and removes its
mask: the model is fully probed from then on (an anchor for the next completion), so the
next FIND needs no forward pass and no such step. A model that is fully probed already (or
not probed yet: FIND probes it fully on demand) needs nothing.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from zooql.methods.probelog import ops_probe as P
from zooql.plan.nodes import Operator, Rows
from zooql.errors import ExecutionError, StorageError

QUERY_MODES = ("stored", "full")


def sampled_run(con, ps_id: int | None, model_id: int) -> dict | None:
    """The mask record of a model's sampled run with a probe set (None: fully probed or not probed)."""
    from zooql.methods.probelog import completion as CP

    if ps_id is None:
        return None
    return CP.masks_of(con, ps_id).get(model_id)


def _run_missing(ctx, m: dict, images: np.ndarray, batch: int) -> np.ndarray:
    runtime = P.runtime_for(ctx, None)
    loaded = P.load_model(runtime, m)
    out = runtime.run(loaded, images, batch_size=batch,
                      progress=lambda d, t: ctx.report(f"probing {m['name']} (unobserved probes)", d, t))
    out = np.asarray(out, dtype=np.float32)
    if out.ndim != 2 or out.shape != (images.shape[0], m["num_logits"]):
        raise ExecutionError(f"probing {m['name']}: output shape {tuple(out.shape)} is not "
                             f"[{images.shape[0]} probes, {m['num_logits']} logits]")
    if not np.isfinite(out).all():
        raise ExecutionError(f"probing {m['name']}: logits contain NaN or infinity")
    return out


def probe_query_fully(ctx, ps_name: str, model: str, batch: int = P.DEFAULT_BATCH) -> tuple[int, int]:
    """Complete a sampled model's probing with real responses; returns (forward passes, columns).

    The forward passes and the file writes (raw logits, new descriptor columns) run over
    the statement's read-only connection; the catalog rows are written in one short
    read-write transaction at the end; the old columns (and the mask file) are deleted
    after it commits."""
    from zooql.methods.probelog.kernels import zscore_columns
    from zooql.storage import catalog as C

    ps = P.probe_set_row(ctx.con, ps_name)
    m = C.model_row(ctx.con, model)
    if ps is None or m is None:
        raise ExecutionError(f"probe set {ps_name!r} or model {model!r} no longer exists")
    info = sampled_run(ctx.con, ps["id"], m["id"])
    if info is None:
        return 0, 0
    first, ncols, raw_rel = ctx.con.execute(
        "SELECT first_col, n_cols, raw_file FROM probe_runs WHERE probe_set_id = ? AND model_id = ?",
        [ps["id"], m["id"]]).fetchone()
    root = str(ctx.store.path)
    files = P.ProbeSetFiles(ctx.store, ps)
    try:
        raw = np.array(np.load(os.path.join(root, raw_rel), allow_pickle=False), dtype=np.float32)
        mask = np.load(os.path.join(root, info["mask_file"]), allow_pickle=False).astype(bool)
    except OSError as exc:
        raise ExecutionError(f"raw logits of the sampled run of {model} are missing ({exc}); "
                             f"DROP and re-add the model, or PROBE it again") from None
    missing = np.flatnonzero(~mask)
    t0 = time.perf_counter()
    if missing.size:
        raw[missing] = _run_missing(ctx, m, np.asarray(files.images()[missing]), batch)
    P.save_npy(os.path.join(root, raw_rel), raw)
    desc = zscore_columns(raw)
    dm = P.open_matrix(files)
    start, end = dm.append_columns(desc)
    index = P.load_index(files) if files.has_index() else None
    if index is not None:
        index.add(desc.T.astype(np.float32), np.arange(start, end, dtype=np.int64), num_threads=1)
    con = ctx.begin_write()   # the short transaction: the new column map replaces the mask
    con.execute("UPDATE probe_runs SET first_col = ?, seconds = coalesce(seconds, 0) + ? "
                "WHERE probe_set_id = ? AND model_id = ?",
                [start, time.perf_counter() - t0, ps["id"], m["id"]])
    con.execute("DELETE FROM descriptor_columns WHERE probe_set_id = ? AND model_id = ?", [ps["id"], m["id"]])
    con.execute("INSERT INTO descriptor_columns SELECT ?, ? + i, ?, i FROM range(?) t(i)",
                [ps["id"], start, m["id"], end - start])
    con.execute("DELETE FROM probe_masks WHERE probe_set_id = ? AND model_id = ?", [ps["id"], m["id"]])
    ctx.commit()
    ctx.after_commit.append(_cleanup(ctx.store, files, dm, index, np.arange(first, first + ncols, dtype=np.int64),
                                     os.path.join(root, info["mask_file"])))
    return int(missing.size), int(end - start)


def _cleanup(store, files, dm, index, old_cols, mask_path):
    def after():  # once the new column map has committed: drop the old columns and the mask
        try:
            dm.delete_columns(old_cols)
            if index is not None:
                from zooql.methods.probelog import ops_find

                index.mark_deleted(old_cols)
                ops_find.save_index(None, files, index, store=store)
            os.unlink(mask_path)
        except (StorageError, OSError):
            pass  # the catalog no longer names them; the next PROBE deletes orphan columns
    return after


@dataclass(frozen=True)
class ProbeQueryFully(Operator):
    """Run a sampled query model on its unobserved probes so that FIND searches with its
    fully probed descriptor (``OPTIONS (query = 'full')``); stored, so it happens once."""

    probe_set: str = ""
    model: str = ""
    observed: int | None = None
    forward_passes: int | None = None
    child: Operator | None = None
    writes: ClassVar[bool] = True
    short_writes: ClassVar[bool] = True   # models run over a read-only connection; one short commit

    def explain_params(self):
        return {"probe_set": self.probe_set, "model": self.model, "observed": self.observed,
                "forward_passes": self.forward_passes}

    def run(self, ctx, inputs):
        passes, cols = probe_query_fully(ctx, self.probe_set, self.model)
        msg = (f"query model {self.model} probed on its {passes} unobserved probes of {self.probe_set}: "
               f"searching with its fully probed descriptor (stored; {self.model} is fully probed now)"
               if passes else f"query model {self.model} is fully probed with {self.probe_set}")
        if inputs and inputs[0].message:
            msg = inputs[0].message + "; " + msg
        return Rows(["model", "forward_passes", "columns"], [(self.model, passes, cols)], message=msg)
