"""Instantiate many models (ADD MODELS of loadable sources) in a bounded pool of worker
processes: each worker builds one model at a time (its memory is bounded by the largest
model, and a worker is replaced after :data:`TASKS_PER_WORKER` models), the caller gets the
results in input order, so it can commit them in batches and an interrupt keeps a prefix.

The pool goes through the executor interface (:func:`inspect_for`): with the local
executor it is this module's process pool (:func:`inspect_many`); with ``SET executor =
'ray'`` every inspection is a job on the Ray actors (:func:`inspect_job`, model files by
value like every job), its results put back into input order, so the caller commits the
same batches and an interrupt (or a failed model) keeps the same prefix::

    inspect_for(ctx, jobs, workers, on_result)

``jobs`` are dicts ``{source, checkpoint, labels, options, trust_code}``; ``on_result(i,
info, error)`` is called once per job, in order, with the :class:`ModelInfo` as a dict or
the error (a :class:`~zooql.errors.ZooQLError`). One worker (or one job) runs in this process, without a pool.
"""
from __future__ import annotations

import os
from collections import deque
from typing import Callable

from zooql.runtime.procs import context as _context, end_pool, watch_owner

#: a worker process is replaced after this many models (bounds leaks and fragmentation)
TASKS_PER_WORKER = 32
#: seconds each inspection sleeps first (tests: makes a kill land mid-statement); read by
#: the caller, so it reaches worker processes too
DELAY_ENV = "ZOOQL_INSPECT_DELAY"


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def _inspect(job: dict):
    """One job -> ("ok", info dict) or ("error", message). Runs in a worker or here."""
    import time

    from zooql.errors import ZooQLError
    from zooql.runtime import models

    if job.get("delay"):
        time.sleep(job["delay"])
    try:
        info = models.inspect_model(job["source"], checkpoint=job.get("checkpoint"), labels=job.get("labels"),
                                    options=job.get("options"), trust_code=bool(job.get("trust_code")))
    except ZooQLError as exc:
        return "error", exc
    except Exception as exc:  # noqa: BLE001 - a model's own code may raise anything
        from zooql.errors import ExecutionError

        return "error", ExecutionError(f"{type(exc).__name__}: {exc}")
    return "ok", info.to_dict()


INSPECT = "zooql.runtime.inspect_pool:inspect_job"


def inspect_job(runtime, model: dict, args: dict, progress=None) -> dict:
    """Executor worker function: inspect one model (``args['job']``; the record's source and
    checkpoint replace the job's, so files shipped by value are used).
    ``{"info": dict}`` or ``{"error": message, "kind": class name}``."""
    job = dict(args["job"], source=model["source"], checkpoint=model.get("checkpoint"))
    status, out = _inspect(job)
    if status == "ok":
        return {"info": out}
    return {"error": getattr(out, "message", str(out)), "kind": type(out).__name__}


def _error(kind: str, message: str) -> Exception:
    from zooql import errors

    cls = getattr(errors, kind, None)
    return (cls if isinstance(cls, type) and issubclass(cls, errors.ZooQLError) else errors.ExecutionError)(message)


def inspect_on(executor, jobs: list[dict], on_result: Callable[[int, dict | None, Exception | None], None]) -> None:
    """:func:`inspect_many` through an executor's workers (Ray actors): ``on_result`` in
    input order (results that arrive early wait, at most the executor's in-flight window);
    an exception from ``on_result`` cancels the pending jobs."""
    import contextlib

    from zooql.runtime.jobs import Job

    delay = float(os.environ.get(DELAY_ENV) or 0)
    items = (Job(i, {"name": f"inspect{i}", "source": j["source"], "checkpoint": j.get("checkpoint")}, fn=INSPECT,
                 args={"job": dict(j, delay=delay) if delay else j}, route=i) for i, j in enumerate(jobs))
    waiting: dict[int, tuple] = {}
    nxt = 0
    with contextlib.closing(executor.map(items)) as results:
        for res in results:
            if res.error is not None:
                waiting[res.key] = (None, _error(res.error_kind, res.error))
            elif "error" in res.value:
                waiting[res.key] = (None, _error(res.value["kind"], res.value["error"]))
            else:
                waiting[res.key] = (res.value["info"], None)
            while nxt in waiting:
                info, error = waiting.pop(nxt)
                on_result(nxt, info, error)
                nxt += 1


def inspect_for(ctx, jobs: list[dict], workers: int,
                on_result: Callable[[int, dict | None, Exception | None], None]) -> None:
    """Inspect ``jobs`` where the statement's executor says: the local process pool
    (``workers`` processes) or the Ray actors (``SET executor = 'ray'``)."""
    from zooql.runtime.executors import executor_config, executor_for

    if executor_config(ctx.setting)["executor"] == "local" or not jobs:
        return inspect_many(jobs, workers, on_result)
    return inspect_on(executor_for(ctx, models=False), jobs, on_result)


def _init_worker(owner: int | None = None) -> None:
    import torch

    torch.set_num_threads(1)  # workers share the cores; one thread each
    if owner is not None:
        watch_owner(owner)


def inspect_many(jobs: list[dict], workers: int, on_result: Callable[[int, dict | None, Exception | None], None]) -> None:
    """Inspect ``jobs`` with up to ``workers`` processes; ``on_result`` in input order. An
    exception from ``on_result`` (or Ctrl-C) stops the pool: queued jobs are cancelled and
    the workers terminated."""
    delay = float(os.environ.get(DELAY_ENV) or 0)
    jobs = [dict(j, delay=delay) if delay else j for j in jobs]
    workers = max(1, min(int(workers), len(jobs)))
    if workers == 1:
        for i, job in enumerate(jobs):
            status, out = _inspect(job)
            on_result(i, out if status == "ok" else None, out if status == "error" else None)
        return
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(max_workers=workers, mp_context=_context(), initializer=_init_worker,
                               initargs=(os.getpid(),),
                               max_tasks_per_child=TASKS_PER_WORKER)
    ok = False
    try:
        window: deque = deque()
        nxt = 0
        for i in range(len(jobs)):
            while nxt < len(jobs) and len(window) < 2 * workers:  # bounded: results wait in order
                window.append(pool.submit(_inspect, jobs[nxt]))
                nxt += 1
            fut = window.popleft()
            try:
                status, out = fut.result()
            except BrokenProcessPool:
                from zooql.errors import ExecutionError

                status, out = "error", ExecutionError("the worker process inspecting it died (out of memory, "
                                                      "or killed); rerun to resume")
            on_result(i, out if status == "ok" else None, out if status == "error" else None)
        ok = True
    finally:
        if ok:
            pool.shutdown(wait=True)
        else:
            end_pool(pool)
