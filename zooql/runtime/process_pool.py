"""The local executor's worker processes: PROBE over many models on every core.

``torch.jit.load`` and a small model's forward passes hold the GIL, so threads do not make
PROBE over thousands of small models any faster; processes do. :class:`PoolExecutor` runs
the jobs of one statement on a pool of worker processes on this machine (``forkserver``,
like ADD MODELS' inspection pool, :mod:`zooql.runtime.procs`), each with its own
:class:`~zooql.runtime.models.ModelRuntime` (its LRU cache, ``memory budget / workers``)
and one torch thread per ``cores / workers``. It keeps the executor contract of
:mod:`zooql.runtime.executors`: results in completion order, at most ``2 x workers`` jobs
in flight, the driver stays the single writer, and closing the iterator (an interrupt, an
error) cancels what is queued and ends the workers, so only the work in flight is lost.

* **When.** ``SET local_workers = n`` (n >= 2: a pool of n; 1: every job in this process).
  Unset or 0 (``auto``): a pool of ``min(cores, 4)`` workers for a statement that runs at
  least :data:`POOL_MIN_JOBS` models on the CPU; otherwise, and always on a GPU, one
  process. Only callers that say how many jobs they have (PROBE) get a pool.
* **Shared inputs.** A shared array backed by a ``.npy`` file (the probe set's
  ``probes.npy``, memory-mapped) travels as its path: each worker maps it once per key.
  Anything else travels by value with every job.
* **Lifetime.** The pool outlives the statement (a worker pays the torch import once) and
  ends with the process; a worker ends by itself when its owner process is gone (kill -9).
  Statements of this process share it; one that needs another configuration while it is
  in use (another device, trust or memory budget, from another thread) gets a pool of its
  own for its duration. A worker that dies (out of memory) fails its in-flight jobs with a
  clear error and the statement's remaining jobs go to a fresh pool.

This module imports neither torch nor ray (the workers import torch).
"""
from __future__ import annotations

import atexit
import json
import os
import threading
import time
from collections import OrderedDict
from typing import Any

from zooql.runtime.jobs import JobResult, LocalExecutor, Shared, call_job
from zooql.runtime.procs import end_pool

#: a statement with fewer model jobs than this runs them in this process (``auto``)
POOL_MIN_JOBS = 32
#: at most this many workers by default (``auto``); ``SET local_workers = n`` may ask for more
MAX_AUTO_WORKERS = 4
#: a test hook, like zooql.runtime.inspect_pool.DELAY_ENV: ``{"seconds": s, "until": path}``
#: read by the driver and sent with every job (zooql.testing.zoo.slow_down('forward'))
DELAY_ENV = "ZOOQL_FORWARD_DELAY"
_SHARED_KEEP = 8


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def pool_workers(setting: Any, device: str | None, jobs: int | None) -> int:
    """How many worker processes a statement's model jobs get (1: none, this process)."""
    if jobs is None:
        return 1
    n = int(setting or 0)   # SET local_workers: 0 to 256 (checked by the binder)
    if n == 0:   # auto: only for many jobs on the CPU
        on_cpu = str(device or "cpu").strip().lower() == "cpu"
        n = min(cores(), MAX_AUTO_WORKERS) if on_cpu and jobs >= POOL_MIN_JOBS else 1
    return max(1, min(n, jobs))


# ---- the worker side ------------------------------------------------------------------------

_STATE: dict[str, Any] = {"runtime": None, "shared": OrderedDict()}


def _init(owner: int, device: str, trust_code: bool, budget: int, max_models: int, threads: int) -> None:
    import signal

    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the driver's: it ends the workers

    from zooql.runtime.models import ModelRuntime
    from zooql.runtime.procs import watch_owner

    torch.set_num_threads(max(1, threads))
    watch_owner(owner)
    _STATE["runtime"] = ModelRuntime(device=device, trust_code=trust_code, memory_budget_bytes=budget,
                                     max_models=max_models)


def _shared(wire: tuple):
    """A shared value as the worker sees it: ("npy", key, path) -> the file, mapped once."""
    import numpy as np

    _, key, path = wire
    cache = _STATE["shared"]
    hit = cache.get(key)
    if hit is None:
        hit = cache[key] = np.load(path, mmap_mode="r", allow_pickle=False)
        while len(cache) > _SHARED_KEEP:
            cache.popitem(last=False)
    cache.move_to_end(key)
    return hit


def _pause(delay: dict | None) -> None:
    if not delay:
        return
    deadline = time.monotonic() + float(delay.get("seconds") or 0)
    until = delay.get("until")
    while time.monotonic() < deadline and not (until and os.path.exists(until)):
        time.sleep(0.01 if until else max(0.0, min(0.05, deadline - time.monotonic())))


def _run(fn: str, model: dict, args: dict, delay: dict | None = None) -> tuple:
    """One job in a worker: (value, (message, class) or None, seconds, device, pid)."""
    _pause(delay)
    args = {k: (_shared(v) if isinstance(v, tuple) and v and v[0] == "npy" else v) for k, v in args.items()}
    rt = _STATE["runtime"]
    value, error, seconds = call_job(rt, fn, model, args, None)
    return value, error, seconds, rt.device, os.getpid()


# ---- the driver side ------------------------------------------------------------------------

_POOL: dict[str, Any] = {"key": None, "pool": None, "users": 0}
_LOCK = threading.Lock()


def _discard_pool() -> None:
    """End the kept pool's workers now (at exit; tests)."""
    with _LOCK:
        pool, _POOL["pool"], _POOL["key"], _POOL["users"] = _POOL["pool"], None, None, 0
    if pool is not None:
        end_pool(pool)


atexit.register(_discard_pool)


def _new_pool(key: tuple):
    from concurrent.futures import ProcessPoolExecutor

    from zooql.runtime.procs import context

    workers, device, trust_code, budget, max_models, threads = key
    return ProcessPoolExecutor(max_workers=workers, mp_context=context(), initializer=_init,
                               initargs=(os.getpid(), device, trust_code, budget, max_models, threads))


def _acquire(key: tuple) -> tuple[Any, bool]:
    """(a pool for ``key``, whether it is private to the caller). The kept pool is shared by
    the statements of this process; one that another thread is using with another
    configuration (or that broke while in use) is left alone and the caller gets a pool of
    its own, ended by :func:`_release`."""
    old = None
    with _LOCK:
        pool = _POOL["pool"]
        if pool is not None and _POOL["key"] == key and not getattr(pool, "_broken", False):
            _POOL["users"] += 1
            return pool, False
        if pool is not None and _POOL["users"] > 0:
            return _new_pool(key), True
        old = pool
        _POOL["pool"], _POOL["key"], _POOL["users"] = _new_pool(key), key, 1
        pool = _POOL["pool"]
    if old is not None:
        end_pool(old)
    return pool, False


def _release(pool, private: bool, abandon: bool) -> None:
    """The caller is done with ``pool``; ``abandon``: it left jobs running (an interrupt), so
    the workers are ended unless another statement is using the pool."""
    if private:
        end_pool(pool)
        return
    with _LOCK:
        if _POOL["pool"] is not pool:     # replaced meanwhile (it broke): already ended or ending
            return
        _POOL["users"] = max(0, _POOL["users"] - 1)
        if not (abandon and _POOL["users"] == 0):
            return
        _POOL["pool"], _POOL["key"] = None, None
    end_pool(pool)


class PoolExecutor(LocalExecutor):
    """The local executor on ``workers`` processes (see the module docstring). ``runtime``:
    the hub's ModelRuntime (or a function returning one, as for LocalExecutor) whose
    device, trust and memory budget the workers copy."""

    def __init__(self, runtime, workers: int):
        super().__init__(runtime)
        self.workers = int(workers)
        self.window = 2 * self.workers
        self._wired: dict[str, Any] = {}

    def _config(self) -> tuple:
        rt = self.runtime
        threads = max(1, cores() // self.workers)
        return (self.workers, rt.device, bool(rt.trust_code), max(1, rt.memory_budget_bytes // self.workers),
                max(1, rt.max_models // self.workers), threads)

    def _wire(self, value: Any) -> Any:
        """A Shared value as it travels: a whole ``.npy`` file by its path, else the value."""
        if not isinstance(value, Shared):
            return value
        if value.key not in self._wired:
            self._wired[value.key] = self._wire_value(value)
        return self._wired[value.key]

    @staticmethod
    def _wire_value(value: Shared) -> Any:
        v = value.value
        path = getattr(v, "filename", None)
        if path and str(path).endswith(".npy") and os.path.isfile(path):
            import numpy as np

            whole = np.load(path, mmap_mode="r", allow_pickle=False)
            if whole.shape == v.shape and whole.dtype == v.dtype and getattr(v, "offset", None) == whole.offset:
                return ("npy", value.key, str(path))
        return v

    def map(self, jobs, progress=None):
        from concurrent.futures import FIRST_COMPLETED, wait

        config = self._config()
        pool, private = _acquire(config)
        delay = json.loads(os.environ[DELAY_ENV]) if os.environ.get(DELAY_ENV) else None
        it = iter(jobs)
        pending: dict = {}
        exhausted = clean = False
        try:
            while True:
                while not exhausted and len(pending) < self.window:
                    job = next(it, None)
                    if job is None:
                        exhausted = True
                        break
                    args = {k: self._wire(v) for k, v in job.args.items()}
                    if getattr(pool, "_broken", False):   # a worker died: a fresh pool for the rest
                        _release(pool, private, abandon=True)
                        pool, private = _acquire(config)
                    pending[pool.submit(_run, job.fn, job.model, args, delay)] = job
                if not pending:
                    clean = True
                    return
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for fut in done:
                    yield self._result(pending.pop(fut), fut)
        finally:
            abandon = False
            if not clean:   # an interrupt or an error: the queued and running jobs are dropped
                for fut in pending:
                    fut.cancel()
                abandon = any(not f.done() for f in pending)
            _release(pool, private, abandon)

    @staticmethod
    def _result(job, fut) -> JobResult:
        from concurrent.futures.process import BrokenProcessPool

        try:
            value, error, seconds, device, pid = fut.result()
        except BrokenProcessPool:
            return JobResult(job.key, None, "the worker process running it died (out of memory, or killed); "
                             "rerun the statement to resume", 0.0, None, "pool")
        return JobResult(job.key, value, error and error[0], seconds, device, f"{pid}@local",
                         error_kind=error[1] if error else "ExecutionError")
