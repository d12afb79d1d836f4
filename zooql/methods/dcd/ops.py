"""Operators of RANK MODELS ... USING CONDUCTANCE (DCD, :mod:`zooql.methods.dcd.conductance`).

Plan shape::

    RankModels: task=t method=conductance models=3 sources=[s1, s2] metric=acc1 eta=2 gamma=5 top=5
      Conductance: task=t role=target images=1 steps=50 models=3 cached=0 new=3 passes=150 est_time=~13min est_basis=prior
      Conductance: task=s1 role=source images=25 steps=50 models=3 cached=3 new=0 passes=0

Each ``Conductance`` child yields the task vectors ``v_{m,tau}`` of one task for every
ranked model: read from the hub's cache (``dcd_vectors``, one row per (model, task)) when
the row's fingerprint matches (same task images, same model source and checkpoint file,
same captum steps), computed otherwise with captum's ``LayerConductance`` through the
model runtime. ``passes`` is what the new vectors cost: new models x images x steps
forward+backward passes of one interpolated image, per coarse block of the visual
encoder; ``est_time`` is their estimated time and ``est_basis`` where the seconds per pass
come from (:mod:`zooql.methods.dcd.estimate`: this hub's measured runs, or a CPU prior). A new vector is committed as soon as it is computed (like PROBE), so an
interrupted RANK keeps what it finished and the next one resumes. The binder decides what
is cached at plan time, so a RANK whose vectors are all cached runs read-only.

``RankModels`` then applies Eq. 5-11: source ranks come from the evaluations table
(``IMPORT EVALUATIONS``; dataset = the source task's name), taken among the ranked models.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from zooql.methods.dcd import conductance as D
from zooql.methods.dcd import estimate as E
from zooql.plan.nodes import ExecContext, Expr, Operator, OpStats, Rows
from zooql.errors import ExecutionError, ZooQLError

RESULT_COLUMNS = ["rank", "model", "predicted_rank", "nearest_source", "weight", "divergence", "sources"]
DRAW_COLUMNS = ["rank_std", "positions"]      # added by OPTIONS (draws = k > 1)
_EVAL_FILTER = "score IS NOT NULL AND isfinite(score)"


def vector_ok(blocks, vector) -> bool:
    """A stored vector is usable: one finite value per block (a damaged row is recomputed)."""
    if not blocks or vector is None or len(vector) != len(blocks):
        return False
    return bool(np.isfinite(np.asarray(vector, dtype=np.float64)).all())


def cached_fingerprints(con, task: str) -> dict[str, str]:
    """model -> fingerprint of the usable cached vectors of ``task`` (none on a hub without
    the table; a damaged vector counts as not cached, so RANK recomputes it)."""
    try:
        rows = con.execute("SELECT model, fingerprint, blocks, vector FROM dcd_vectors WHERE task = ?",
                           [task]).fetchall()
    except Exception:
        return {}
    return {r[0]: r[1] for r in rows if vector_ok(r[2], r[3])}


def task_images(con, task_row: dict):
    """The images of a task: an array batch (``.npz`` tasks) or a list of file paths."""
    from zooql.core import tasks as T

    if task_row["path"] and str(task_row["path"]).endswith(".npz"):
        images, _ = T._npz_arrays(task_row["path"])
        return images[:int(task_row["n_queries"])]
    rows = con.execute("SELECT query FROM task_queries WHERE task = ? ORDER BY idx", [task_row["name"]]).fetchall()
    paths = []
    for (q,) in rows:
        payload = json.loads(q) if q else {}
        if not payload.get("image"):
            raise ExecutionError(f"task {task_row['name']!r} has a query without an image")
        paths.append(payload["image"])
    return paths


@dataclass(frozen=True)
class Conductance(Operator):
    """The conductance task vectors of one task for every ranked model (cached or new)."""

    task: str = ""
    role: str = "source"            # target | source
    n_images: int = 0
    steps: int = D.DEFAULT_STEPS
    batch_size: int = 8
    models: tuple = ()              # ((name, source, checkpoint, preprocess json, fingerprint), ...)
    cached: tuple = ()              # names whose vector is cached with a matching fingerprint
    images: tuple = ()              # a redrawn target (draws = k): its image paths (else the task's)
    draw: int | None = None         # draw number of a redrawn target, with its sample seed
    seed: int | None = None
    est_seconds: float | None = None  # estimated time of the new vectors (zooql.methods.dcd.estimate)
    est_basis: str | None = None      # measured | scaled | prior
    short_writes: ClassVar[bool] = True
    runs_models: ClassVar[bool] = True

    @property
    def writes(self) -> bool:  # type: ignore[override]
        return len(self.cached) < len(self.models)

    @property
    def new(self) -> int:
        return len(self.models) - len(self.cached)

    def explain_params(self):
        return {"task": self.task, "role": self.role, "images": self.n_images, "steps": self.steps,
                "models": len(self.models), "cached": len(self.cached), "new": self.new,
                "passes": self.new * self.n_images * self.steps,
                "est_time": None if self.est_seconds is None else E.fmt_duration(self.est_seconds),
                "est_basis": self.est_basis, "draw": self.draw, "seed": self.seed}

    def run(self, ctx, inputs):
        from zooql.core import tasks as T

        have = {}
        for model, fp, blocks, vec in ctx.con.execute(
                "SELECT model, fingerprint, blocks, vector FROM dcd_vectors WHERE task = ?", [self.task]).fetchall():
            if vector_ok(blocks, vec):   # a damaged vector is recomputed, never used
                have[model] = (fp, list(blocks), np.asarray(vec, dtype=np.float64))
        todo = [m for m in self.models if m[0] not in have or have[m[0]][0] != m[4]]
        if todo and not self.writes:
            raise ExecutionError(f"the conductance cache of task {self.task!r} changed since the statement was "
                                 f"planned; run it again")
        out = [(m[0], self.task, have[m[0]][2], have[m[0]][1], "cached") for m in self.models if m not in todo]
        if todo:
            if self.images:
                images = list(self.images)
            else:
                task_row = T.task_rows(ctx.con).get(self.task)
                if task_row is None:
                    raise ExecutionError(f"task {self.task!r} no longer exists")
                images = task_images(ctx.con, task_row)
            from zooql.runtime.executors import Job, executor_for

            args = {"images": images, "steps": self.steps, "batch": self.batch_size}
            jobs = [Job(i, {"name": name, "source": source, "checkpoint": checkpoint,
                            "options": json.loads(pre) if pre else None}, fn="zooql.methods.dcd.ops:vector_job",
                        args=args) for i, (name, source, checkpoint, pre, fp) in enumerate(todo)]
            results = executor_for(ctx).map(jobs)
            try:
                self._store(ctx, todo, images, results, out)
            finally:
                results.close()
        st = ctx.stats.setdefault(id(self), OpStats())
        st.extra.update(computed=len(todo), cached=len(self.models) - len(todo))
        return Rows(["model", "task", "vector", "blocks", "status"], out)

    def _store(self, ctx, todo, images, results, out) -> None:
        """Write each vector as it arrives (completion order), one short transaction each."""
        for i, res in enumerate(results):
            name, _, _, _, fp = todo[res.key]
            vec, blocks = res.unwrap()
            vec, seconds = np.asarray(vec), res.seconds
            con = ctx.begin_write()  # a short transaction per vector: readers are not locked out
            con.execute("DELETE FROM dcd_vectors WHERE model = ? AND task = ?", [name, self.task])
            con.execute("INSERT INTO dcd_vectors (model, task, fingerprint, n_images, steps, blocks, vector, "
                            "seconds, device) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            [name, self.task, fp, len(images), self.steps, list(blocks), vec.tolist(), seconds,
                             res.device])
            # per-vector commit: an interrupted RANK keeps the vectors it finished
            ctx.commit()
            out.append((name, self.task, vec, list(blocks), "computed"))
            ctx.report(f"conductance {self.task}", i + 1, len(todo))


def vector_job(runtime, model: dict, args: dict, progress=None) -> tuple[np.ndarray, list[str]]:
    """Executor worker function (:mod:`zooql.runtime.executors`): :func:`compute_vector`."""
    return compute_vector(runtime, model["name"], model["source"], model.get("checkpoint"), model.get("options"),
                          args["images"], steps=int(args["steps"]), batch_size=int(args["batch"]))


def compute_vector(rt, name: str, source: str, checkpoint: str | None, preprocess: dict | None, images, *,
                   steps: int, batch_size: int) -> tuple[np.ndarray, list[str]]:
    """v_{m,tau} of one model on a task's images, loading the model through the runtime."""
    loaded = rt.load(name, source, checkpoint, preprocess)
    if loaded.kind != "open_clip":
        raise ExecutionError(f"model {name!r} is a {loaded.kind} model, not an open_clip VLM")
    blocks = [b for b, _ in D.coarse_blocks(loaded.module)]
    try:
        x = loaded.preprocess(images).to(rt.device)
        vec = D.task_vector(loaded.module, x, steps=steps, batch_size=batch_size,
                            internal_batch_size=max(64, 2 * batch_size))  # bounds captum's memory
    except ZooQLError:
        raise
    except Exception as exc:
        raise ExecutionError(f"layer conductance of model {name!r} failed: {' '.join(str(exc).split())[:300]}") from None
    if not np.all(np.isfinite(vec)):
        raise ExecutionError(f"layer conductance of model {name!r} is not finite")
    return vec, blocks


@dataclass(frozen=True)
class RankModels(Operator):
    """Eq. 5-11 over the children's task vectors and the sources' true ranks."""

    task: str = ""
    method: str = "conductance"
    sources: tuple = ()             # ((task, metric), ...)
    n_models: int = 0
    eta: float = D.DEFAULT_ETA
    gamma: float = D.DEFAULT_GAMMA
    top: int | None = None
    filter: str | None = None
    conductances: tuple = ()        # child operators: the target's draws first, then one per source
    draws: int = 1

    @property
    def children(self):
        return tuple(self.conductances)

    def explain_params(self):
        metrics = sorted({m for _, m in self.sources})
        return {"task": self.task, "method": self.method, "models": self.n_models,
                "sources": [s for s, _ in self.sources], "metric": metrics[0] if len(metrics) == 1 else metrics,
                "eta": float(self.eta), "gamma": float(self.gamma), "top": self.top,
                "filter": Expr(self.filter) if self.filter else None,
                "draws": self.draws if self.draws > 1 else None}

    def run(self, ctx, inputs):
        k = max(1, int(self.draws))
        targets = [{r[0]: r[2] for r in rs.rows} for rs in inputs[:k]]
        target = targets[0]
        vecs = {self.sources[j][0]: {r[0]: r[2] for r in rows.rows} for j, rows in enumerate(inputs[k:])}
        scores = {}
        for task, metric in self.sources:
            got = ctx.con.execute(f"SELECT model, avg(score) FROM evaluations WHERE dataset = ? AND metric = ? "
                                  f"AND {_EVAL_FILTER} GROUP BY model", [task, metric]).fetchall()
            scores[task] = {m: float(s) for m, s in got if m in target}
        if k > 1:
            ranked = D.rank_models_draws(targets, vecs, scores, eta=self.eta, gamma=self.gamma)
        else:
            ranked = D.rank_models(target, vecs, scores, eta=self.eta, gamma=self.gamma)
        rows = []
        for i, r in enumerate(ranked[:self.top] if self.top else ranked):
            used = {s: w for s, w in r["weights"].items() if w > 0}
            best = max(used, key=lambda s: (used[s], s)) if used else None
            row = (i + 1, r["model"], round(r["predicted_rank"], 4), best,
                   round(used[best], 4) if best else None,
                   round(r["divergences"][best], 4) if best else None, len(used))
            if k > 1:
                lo, hi = r["positions"]
                row += (round(r["rank_std"], 4), f"{lo}-{hi}" if lo != hi else str(lo))
            rows.append(row)
        computed = sum(1 for rs in inputs for row in rs.rows if row[4] == "computed")
        total = sum(len(rs.rows) for rs in inputs)
        msg = (f"ranked {len(target)} open_clip model{'s' if len(target) != 1 else ''} for task {self.task} by "
               f"directional conductance divergence over {len(self.sources)} source task"
               f"{'s' if len(self.sources) != 1 else ''} (eta={self.eta:g}, gamma={self.gamma:g}); "
               f"task vectors: {computed} computed, {total - computed} cached")
        if k > 1:
            msg += (f"; predicted_rank is the mean over {k} draws of the target's images, rank_std its spread, "
                    f"positions the best-worst place over the draws")
        return Rows(list(RESULT_COLUMNS) + (DRAW_COLUMNS if k > 1 else []), rows, message=msg)


def _drop_hook(ctx: ExecContext, model_id: int, name: str) -> None:
    """DROP MODEL: forget the model's conductance vectors."""
    ctx.con.execute("DELETE FROM dcd_vectors WHERE model = ?", [name])
