"""Executors: where the model-running work of a statement happens.

Every operator that runs models (PROBE and FIND's on-demand probing, DISCOVER's live
evaluations, LABEL MODELS, RANK ... USING CONDUCTANCE) describes its work as
:class:`Job` s -- one model record *by value* (name, source, checkpoint path, options),
the dotted name of a worker function and its arguments -- and hands them to an executor:

* ``local`` (the default): runs the jobs one after the other in this process through the
  hub's :class:`~zooql.runtime.models.ModelRuntime` (its LRU cache of loaded models);
* ``ray``: :mod:`zooql.runtime.ray_executor`, Ray Core actors each holding their own
  ModelRuntime; Ray is imported only when this executor is selected.

:meth:`Executor.map` yields a :class:`JobResult` per job **in completion order**; the
caller (the driver) stays the single writer: it stores and commits each result as it
arrives, so an interrupt loses only the work in flight and a rerun resumes.
:meth:`Executor.share` puts a large read-only value (the probe images) where every
worker can read it once (the object store for Ray), instead of once per job.

A worker function is ``fn(runtime, model, args, progress)`` named ``"module:function"``
inside the ``zooql`` package (a worker imports it by name; nothing is pickled but plain
data). It returns plain data (numpy arrays, lists) and raises
:class:`~zooql.errors.ExecutionError` for a failure of the model, which the executor
reports as :attr:`JobResult.error` (other exceptions propagate).

This module imports neither torch nor ray (EXPLAIN and parsing use its settings).
"""
from __future__ import annotations

import os
from typing import Any, Callable

from zooql.errors import ExecutionError
from zooql.runtime.jobs import (FORWARD, INSTALL_HINT, SHIP_MODES, Executor, Job, JobResult, LocalExecutor,  # noqa: F401
                                Shared, call_job, forward, load, model_record)

__all__ = ["EXECUTORS", "SETTINGS", "FORWARD", "INSTALL_HINT", "Executor", "Job", "JobResult", "LocalExecutor",
           "Shared", "call_job", "forward", "load", "model_record", "executor_config", "explain_params", "executor_for"]

EXECUTORS = ("local", "ray")
#: settings of the executors (SET key = value; also Hub(..., executor=...) and CLI flags)
SETTINGS = {"executor": str, "ray_address": str, "ray_workers": int, "ray_gpus_per_worker": float,
            "ray_ship_files": str, "local_workers": int}


def executor_config(get: Callable[[str, Any], Any]) -> dict:
    """The executor settings read through ``get(key, default)``, validated."""
    name = str(get("executor", "local") or "local").strip().lower()
    if name not in EXECUTORS:
        raise ExecutionError(f"unknown executor {name!r}; use 'local' or 'ray'")
    workers = get("ray_workers", None)
    gpus = get("ray_gpus_per_worker", None)
    if workers is not None and int(workers) < 1:
        raise ExecutionError(f"setting ray_workers must be at least 1, got {workers}")
    if gpus is not None and float(gpus) < 0:
        raise ExecutionError(f"setting ray_gpus_per_worker must be >= 0, got {gpus}")
    ship = str(get("ray_ship_files", None) or "auto").strip().lower()
    if ship not in SHIP_MODES:
        raise ExecutionError(f"setting ray_ship_files is one of {', '.join(map(repr, SHIP_MODES))}; got {ship!r}")
    return {"executor": name, "address": get("ray_address", None) or os.environ.get("ZOOQL_RAY_ADDRESS") or None,
            "workers": None if workers is None else int(workers), "gpus": float(gpus or 0), "ship": ship}


def explain_params(get: Callable[[str, Any], Any]) -> dict | None:
    """What EXPLAIN prints on operators that run models: None for the local executor,
    ``{"executor": "ray", "workers": n | "auto"}`` for Ray (no ray import)."""
    try:
        cfg = executor_config(get)
    except ExecutionError:
        return None
    if cfg["executor"] == "local":
        return None
    return {"executor": cfg["executor"], "workers": cfg["workers"] or "auto",
            "gpus_per_worker": cfg["gpus"] or None}


def executor_for(ctx, device: str | None = None, *, models: bool = True, jobs: int | None = None) -> Executor:
    """The executor this statement's settings select (``SET executor = 'local' | 'ray'``).
    ``models=False``: the jobs run no model (a sharded scan), so the local executor gets
    no model runtime (torch is not imported). ``jobs``: how many model jobs the caller has
    (PROBE): the local executor may then run them on worker processes
    (:mod:`zooql.runtime.process_pool`, ``SET local_workers``)."""
    cfg = executor_config(ctx.setting)
    if cfg["executor"] == "local":
        if not models:
            return LocalExecutor(None)
        from zooql.runtime.loading import runtime_for
        from zooql.runtime.process_pool import PoolExecutor, pool_workers

        workers = pool_workers(ctx.setting("local_workers", None), device or ctx.setting("device", "cpu"), jobs)
        if workers > 1:
            return PoolExecutor(lambda: runtime_for(ctx, device), workers)
        return LocalExecutor(lambda: runtime_for(ctx, device))
    from zooql.runtime.ray_executor import ray_executor

    return ray_executor(address=cfg["address"], workers=cfg["workers"], gpus=cfg["gpus"],
                        device=device or ctx.setting("device", "cpu") or "cpu",
                        trust_code=bool(ctx.setting("trust_code", False)), ship=cfg["ship"])
