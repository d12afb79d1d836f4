"""FIND LOGITS | MODELS LIKE IMAGES 'folder/' -- query by example images.

What a logit "responds to these images" means here (the project's definition, built on
ProbeLog's notion of a logit's response over the probes): for every gallery logit ``j``
with raw probe responses ``x_j`` (its stored probe run), run its model on the ``E``
example images and z-score each response against the probes,
``z_{e,j} = (f_j(example_e) - mean(x_j)) / std(x_j)``. The **score** of the logit is
``mean_e z_{e,j}``: how many probe standard deviations above its usual response the examples
push it (a logit that fires on these images and not on the probes scores high). ``hit_rate``
is the fraction of examples on which the logit is its model's largest logit. FIND MODELS
ranks each model by its best logit. Cost: every gallery model runs once over the examples
(``forward_passes`` in EXPLAIN); models not probed with the probe set yet are probed first
(their probe statistics are needed). No descriptor of the examples is stored.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from zooql.core.binder import BindContext, string_of
from zooql.errors import BindError, ExecutionError
from zooql.plan.hooks import plans
from zooql.plan.nodes import Operator, Rows


@dataclass(frozen=True)
class BoundFindImages:
    target: str
    ps: object                     # bind.ProbeSetRef
    path: str
    n_examples: int
    top: int
    gallery_sql: str
    gallery_params: tuple
    filter: str | None
    gallery_models: int
    to_probe: tuple


def example_files(path: str) -> list[str]:
    from zooql.methods.probelog.probe_inputs import list_image_files

    return list_image_files(path) if os.path.isdir(path) else []


def bind_images(stmt, bc: BindContext, ps, top: int, gallery: list, gallery_sql: str, gallery_params: list,
                filter_text: str | None, probed: set[int]) -> BoundFindImages:
    if stmt.aligner is not None:
        raise BindError("USING ALIGNER applies to RECOGNIZING queries only")
    if stmt.options:
        raise BindError("FIND ... LIKE IMAGES takes no OPTIONS (it scores logits by their z-scored response "
                        "to the examples, not by a descriptor discrepancy)")
    path = bc.path(string_of(stmt.images, "LIKE IMAGES folder"))
    if os.path.isfile(path) and path.endswith(".npy"):
        n = int(np.load(path, mmap_mode="r").shape[0])
    elif os.path.isdir(path):
        n = len(example_files(path))
    else:
        raise BindError(f"example images not found: {path} (a folder of images or a .npy file)")
    if n == 0:
        raise BindError(f"no example images in {path}")
    to_probe = tuple(g[1] for g in gallery if g[0] not in probed)
    return BoundFindImages(stmt.target, ps, path, n, top, gallery_sql, tuple(gallery_params), filter_text,
                           len(gallery), to_probe)


@plans(BoundFindImages)
def _plan_find_images(b: BoundFindImages) -> Operator:
    from zooql.methods.probelog import ops_probe as P

    node = P.CreateProbeSet(probe_set=b.ps.name, kind="builtin", auto=True) if b.ps.create else None
    if b.to_probe:
        node = P.ProbeModels(probe_set=b.ps.name, models=b.to_probe, n_probes=b.ps.n_probes,
                             batch=P.DEFAULT_BATCH, on_demand=True, child=node)
    return ExampleSearch(target=b.target, probe_set=b.ps.name, probe_set_why=b.ps.why, path=b.path,
                         n_examples=b.n_examples, top=b.top, gallery_sql=b.gallery_sql,
                         gallery_params=b.gallery_params, filter=b.filter, gallery_models=b.gallery_models,
                         child=node)


def read_examples(path: str) -> np.ndarray:
    from zooql.methods.probelog.probe_inputs import read_folder, read_npy

    pi = read_npy(path, None, None) if path.endswith(".npy") else read_folder(path, None, None)
    return pi.images


def logit_scores(responses: np.ndarray, probe_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(score, hit_rate) per logit: the mean over the examples of the responses z-scored against
    the logit's probe responses (NaN probes, from sampled runs, ignored), and the fraction of
    examples on which the logit is the model's largest."""
    mu = np.nanmean(probe_raw, axis=0)
    sd = np.nanstd(probe_raw, axis=0)
    sd = np.where(sd > 0, sd, np.inf)          # a constant logit scores 0
    z = (responses - mu) / sd
    hits = np.bincount(np.argmax(responses, axis=1), minlength=responses.shape[1]) / responses.shape[0]
    return z.mean(axis=0), hits


@dataclass(frozen=True)
class ExampleSearch(Operator):
    target: str = "logits"
    probe_set: str = ""
    probe_set_why: str | None = None
    path: str = ""
    n_examples: int = 0
    top: int = 10
    gallery_sql: str = ""
    gallery_params: tuple = ()
    filter: str | None = None
    gallery_models: int = 0
    child: Operator | None = None

    def explain_params(self):
        from zooql.plan.nodes import Expr

        return {"target": self.target, "examples": os.path.basename(self.path.rstrip("/")) or self.path,
                "n_examples": self.n_examples, "top": self.top, "probe_set": self.probe_set,
                "gallery_models": self.gallery_models,
                "forward_passes": self.gallery_models * self.n_examples,
                "filter": Expr(self.filter) if self.filter else None}

    def run(self, ctx, inputs):
        from zooql.methods.probelog import ops_probe as P

        ps = P.probe_set_row(ctx.con, self.probe_set)
        if ps is None:
            raise ExecutionError(f"probe set {self.probe_set!r} does not exist")
        ids = [r[0] for r in ctx.con.execute(self.gallery_sql, list(self.gallery_params)).fetchall()]
        runs = ctx.con.execute("SELECT r.model_id, r.raw_file, r.raw_col, r.n_cols, m.name, m.source, "
                               "m.tree FROM probe_runs r "
                               "JOIN models m ON m.id = r.model_id WHERE r.probe_set_id = ? ORDER BY m.name",
                               [ps["id"]]).fetchall()
        runs = [r for r in runs if r[0] in set(ids)]
        images = read_examples(self.path)
        scored, notes = self._score(ctx, runs, images)
        rows = self._rows(ctx, scored)
        what = ("logit" if self.target == "logits" else "model") + ("" if len(rows) == 1 else "s")
        parts = [f"{len(rows)} {what} responding to {images.shape[0]} example images in {self.path}",
                 f"probes: {ps['name']} ({ps['n_probes']}" + (f"; {self.probe_set_why}" if self.probe_set_why else "")
                 + ")", "score = mean z-score of the examples' responses against the probes'"]
        if not ids and self.filter:
            notes.append(f"no model matches WHERE {P.bare(self.filter)}")
        msg = "; ".join(parts + notes + _child_notes(inputs))
        cols = ["rank", "model", "logit", "label", "score", "hit_rate"]
        cols += ["source", "tree"] if self.target == "logits" else ["logits", "source", "tree"]
        return Rows(cols, rows, message=msg)

    def _score(self, ctx, runs, images):
        from zooql.runtime.loading import load_model, runtime_for
        from zooql.storage import catalog as C

        runtime = runtime_for(ctx)
        out, failed = [], []
        from zooql.methods.probelog.store import load_raw

        for i, (mid, raw_file, raw_col, ncols, name, source, tree) in enumerate(runs):
            raw = load_raw(str(ctx.store.path), raw_file, raw_col, ncols)
            try:
                resp = np.asarray(runtime.run(load_model(runtime, C.model_row(ctx.con, name)), images),
                                  dtype=np.float64)
            except ExecutionError as exc:
                failed.append(f"{name} ({exc.message})")
                continue
            if resp.shape != (images.shape[0], raw.shape[1]):
                failed.append(f"{name} (output shape {resp.shape})")
                continue
            score, hits = logit_scores(resp, raw.astype(np.float64))
            out.append((mid, name, source, tree, score, hits))
            ctx.report("example images", i + 1, len(runs))
        notes = [f"{len(failed)} model(s) failed on the examples: {', '.join(failed[:5])}"] if failed else []
        return out, notes

    def _rows(self, ctx, scored):
        from zooql.storage import catalog as C

        cand = []
        for mid, name, source, tree, score, hits in scored:
            labels = C.model_labels(ctx.con, mid)
            order = np.argsort(-score, kind="stable")
            keep = order[:1] if self.target == "models" else order[: self.top]
            for j in keep:
                lab = labels[j] if j < len(labels) else None
                cand.append((float(score[j]), name, int(j), lab, float(hits[j]), len(score), source, tree))
        cand.sort(key=lambda c: (-c[0], c[1], c[2]))
        rows = []
        for r, (s, name, j, lab, h, n, source, tree) in enumerate(cand[: self.top], 1):
            row = (r, name, j, lab, round(s, 4), round(h, 4))
            rows.append(row + ((source, tree) if self.target == "logits" else (n, source, tree)))
        return rows


def _child_notes(inputs) -> list[str]:
    return [x.message for x in inputs if x is not None and x.message]
