"""CREATE TASK: a named evaluation task (queries file, image set or folder) that methods
evaluate models on (DISCOVER's oracles, RANK MODELS ... USING CONDUCTANCE's target images)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

from zooql.core import evaluators as E
from zooql.core import tasks as T
from zooql.core.binder import BindContext, int_of, string_of, value_of
from zooql.storage.names import check_name
from zooql.core.where import suggest
from zooql.errors import BindError
from zooql.lang import ast as A
from zooql.plan.hooks import binds, plans
from zooql.plan.nodes import Operator, Rows
from zooql.plan.logical import Logical


# ---- CREATE TASK --------------------------------------------------------------------------

@dataclass(frozen=True)
class CreateTask(Operator):
    """Read a task file (.jsonl queries, .npz image set, image folder) and store the task.

    The file is read (and an .npz copied into the hub) over a read-only connection; the
    task's rows are written in one short read-write transaction at the end (``short_writes``).
    If that commit fails, the copied .npz is removed, so a failed statement leaves nothing."""

    task: str = ""
    path: str = ""
    images: bool = False
    evaluator: str = "exact_match"
    limit: int | None = None
    base_dir: str = ""
    writes: ClassVar[bool] = True
    short_writes: ClassVar[bool] = True
    seed: int | None = None

    def explain_params(self):
        from zooql.core.sampling import describe_sample, sample_folder

        sample = None
        if self.limit is not None and os.path.isdir(self.path):
            try:
                sample = describe_sample(sample_folder(self.path, self.limit, self.seed)[2])
            except OSError:
                sample = None
        return {"task": self.task, "path": os.path.basename(self.path.rstrip("/")) or self.path,
                "images": True if self.images else None, "evaluator": self.evaluator, "limit": self.limit,
                "seed": self.seed, "sample": sample}

    def run(self, ctx, inputs):
        t = T.read_task(self.task, self.path, images=self.images, evaluator=self.evaluator,
                        limit=self.limit, base_dir=self.base_dir, seed=self.seed)
        if t.evaluator.lower().startswith("python:"):
            E.check_trust(bool(ctx.setting("trust_code", False)), f"evaluator {self.evaluator!r}")
            _, target, fn = T.parse_evaluator(t.evaluator)
            E.load_python_function(target, fn, t.info.get("base_dir"))  # fail now, not mid-search
        path, created = T.stage_task_file(ctx.store, t)
        try:
            replaced, dropped = T.store_task(ctx.begin_write(), t, path)
            ctx.commit()
        except BaseException:
            if created is not None:
                os.unlink(created)
            raise
        what = "replaced" if replaced else "created"
        msg = f"{what} task {t.name}: {len(t.queries)} queries, evaluator {self.evaluator}"
        if t.kind == "images":
            msg = f"{what} task {t.name}: {len(t.queries)} labelled images, evaluator exact_match (argmax = label)"
            if t.info.get("labelled") is False:
                msg = f"{what} task {t.name}: {len(t.queries)} unlabelled images (for RANK MODELS ... USING CONDUCTANCE)"
        if t.info.get("sample"):
            from zooql.core.sampling import describe_sample

            msg += f"; random sample {describe_sample(t.info['sample'])}"
        if dropped:
            msg += f" (definition changed: {dropped} cached evaluations dropped)"
        return Rows(["task", "kind", "queries", "evaluator"],
                    [(t.name, t.kind, len(t.queries), t.evaluator)], message=msg,
                    types=["VARCHAR", "VARCHAR", "BIGINT", "VARCHAR"])


@dataclass(frozen=True)
class BoundCreateTask(Logical):
    name: str
    path: str
    images: bool
    evaluator: str
    limit: int | None
    base_dir: str
    seed: int | None = None


@binds(A.CreateTask)
def _bind_create_task(stmt: A.CreateTask, bc: BindContext):
    name = check_name(value_of(stmt.name), "task")
    path = bc.path(string_of(stmt.path, "task file"))
    evaluator = "exact_match"
    if stmt.evaluator is not None:
        evaluator = string_of(stmt.evaluator, "EVALUATOR")
        try:
            kind, _, _ = T.parse_evaluator(evaluator)
        except ValueError as exc:
            raise BindError(f"{exc}{suggest(evaluator, T.EVALUATORS)}; evaluators: exact_match, "
                            f"'python:<module or file.py>:<function>'") from None
        if kind == "exact_match":
            evaluator = "exact_match"
    limit = int_of(value_of(stmt.limit), "LIMIT", 1, integral_float=True) if stmt.limit is not None else None
    seed = int_of(value_of(stmt.seed), "SEED", 0, integral_float=True) if stmt.seed is not None else None
    if seed is not None and limit is None:
        raise BindError("SEED draws the random sample of LIMIT n; give LIMIT n SEED s (without LIMIT the task "
                        "takes every image)")
    return BoundCreateTask(name, path, bool(stmt.images), evaluator, limit, bc.base_dir, seed)


@plans(BoundCreateTask)
def _plan_create_task(b: BoundCreateTask):
    return CreateTask(task=b.name, path=b.path, images=b.images, evaluator=b.evaluator,
                         limit=b.limit, base_dir=b.base_dir, seed=b.seed)
