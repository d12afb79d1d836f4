"""The Ray executor (``SET executor = 'ray'``): model jobs fan out over Ray Core actors.

* Each actor (:class:`ModelWorker`) holds its own :class:`~zooql.runtime.models.ModelRuntime`
  with its LRU cache; a model is routed to a fixed actor (a stable hash of its name), so
  DISCOVER's rounds and repeated PROBEs find it loaded.
* Jobs carry model records by value (source, checkpoint path, preprocessing options) and
  the dotted name of a ZooQL worker function; no module is ever pickled. Large read-only
  inputs (the probe images) are put into the object store once (:meth:`RayExecutor.share`,
  keyed by content) and fetched once per actor.
* The driver keeps at most ``2 x workers`` jobs in flight and receives results in
  completion order; closing the iterator (an interrupt, Ctrl-C, an error) cancels the
  pending tasks, so an interrupt loses only in-flight work.
* A worker process that dies is restarted by Ray and its queued and running tasks are
  retried (``max_restarts`` / ``max_task_retries``).
* An actor that Ray gives a GPU runs its models on CUDA.
* Model files by value (``SET ray_ship_files``): with ``'auto'`` (the default) a worker
  that cannot read a record's checkpoint or TorchScript file (another node without the
  shared filesystem) answers so, and the driver puts the file's bytes into the object
  store (once per file) and sends them with that job and every later job of that worker;
  ``'always'`` sends them with every job, ``'never'`` lets the load fail. The worker
  writes the bytes once per content into its temp dir under the original file name and
  builds the model from there.

Ray is imported only here, when the executor is selected; without it the statement fails
with an ExecutionError saying what to install.
"""
from __future__ import annotations

import os
import zlib
from collections import OrderedDict
from typing import Any

from zooql.errors import ExecutionError
from zooql.runtime.jobs import (INSTALL_HINT, NEED_FILES, SHIP_MODES, Executor, JobResult, Shared, call_job,
                                materialize, read_files, record_files, unreadable_files)

MAX_RESTARTS = 4
MAX_TASK_RETRIES = 4
_SHARED_KEEP = 8
READY_TIMEOUT_S = float(os.environ.get("ZOOQL_RAY_READY_TIMEOUT", "180"))


def import_ray():
    """The ``ray`` module, or an ExecutionError saying how to install it."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise ExecutionError(f"the ray executor needs Ray, which is not installed: {INSTALL_HINT} "
                             f"(or SET executor = 'local')") from None
    return ray


class ModelWorker:
    """A Ray actor: one ModelRuntime (LRU cache) and the shared inputs it has fetched."""

    def __init__(self, device: str, trust_code: bool, memory_budget_bytes: int):
        import ray
        from zooql.runtime.models import ModelRuntime

        if ray.get_gpu_ids():
            device = "cuda"
        elif str(device).startswith("cuda"):
            device = "cpu"   # this actor was given no GPU
        self.runtime = ModelRuntime(device=device, trust_code=trust_code, memory_budget_bytes=memory_budget_bytes)
        self.shared: OrderedDict[str, Any] = OrderedDict()
        self.files: OrderedDict[str, str] = OrderedDict()   # shipped file key -> local copy
        self.name = f"{os.getpid()}@{ray.util.get_node_ip_address()}"

    def info(self) -> dict:
        import ray

        return {"pid": os.getpid(), "node_ip": ray.util.get_node_ip_address(), "device": self.runtime.device,
                "node_id": ray.get_runtime_context().get_node_id(), "cached": self.runtime.cached_names(),
                "shipped_files": list(self.files.values())}

    def _local_files(self, model: dict, files: dict) -> dict:
        """``model`` with its shipped files replaced by local copies (fetched once per key)."""
        import ray

        paths = {}
        for field_, (key, wrapped) in files.items():
            path = self.files.get(key)
            if path is None or not os.path.exists(path):
                path = record_files(materialize(model, {field_: ray.get(wrapped[0])}))[field_]
                self.files[key] = path
                while len(self.files) > 256:
                    self.files.popitem(last=False)
            paths[field_] = path
        out = dict(model)
        if "checkpoint" in paths:
            out["checkpoint"] = paths["checkpoint"]
        if "source" in paths:
            out["source"] = "torchscript:" + paths["source"]
        return out

    def run(self, fn: str, model: dict, args: dict, refs: dict, files: dict | None = None,
            ask: bool = False) -> tuple:
        import ray

        if files:
            model = self._local_files(model, files)
        elif ask:
            missing = unreadable_files(model)
            if missing:   # the driver resends the job with the bytes
                return NEED_FILES, missing, 0.0, self.runtime.device, self.name
        args = dict(args)
        for name, (key, wrapped) in refs.items():
            if key not in self.shared:
                self.shared[key] = ray.get(wrapped[0])
                while len(self.shared) > _SHARED_KEEP:
                    self.shared.popitem(last=False)
            self.shared.move_to_end(key)
            args[name] = self.shared[key]
        value, error, seconds = call_job(self.runtime, fn, model, args)
        return value, error, seconds, self.runtime.device, self.name


def route(name: str, n: int) -> int:
    """The actor index of model ``name`` (stable across processes and runs)."""
    return zlib.crc32(str(name).encode()) % max(1, n)


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, ray, *, workers: int | None, gpus: float, device: str, trust_code: bool,
                 memory_budget_bytes: int = 2 << 30):
        self.ray = ray
        total_cpu = float(ray.cluster_resources().get("CPU", 1) or 1)
        n = int(workers or max(1, int(total_cpu)))
        cpu_each = min(1.0, total_cpu / n)
        opts = dict(num_cpus=cpu_each, max_restarts=MAX_RESTARTS, max_task_retries=MAX_TASK_RETRIES)
        if gpus:
            opts["num_gpus"] = gpus
        cls = ray.remote(**opts)(ModelWorker)
        self.actors = [cls.remote(device, trust_code, memory_budget_bytes) for _ in range(n)]
        self.workers = n
        self.window = 2 * n
        self.ship = "auto"                       # SET ray_ship_files
        self._needs_files: set[int] = set()      # actors that could not read a model's files
        self._files: OrderedDict[tuple, Any] = OrderedDict()
        self._shared: OrderedDict[str, Any] = OrderedDict()
        self._wait_ready(n, cpu_each, gpus, total_cpu)

    def _wait_ready(self, n: int, cpu_each: float, gpus: float, total_cpu: float) -> None:
        """Fail clearly (instead of waiting forever) when Ray cannot place every actor."""
        ray = self.ray
        ready, _ = ray.wait([a.info.remote() for a in self.actors], num_returns=n, timeout=READY_TIMEOUT_S)
        if len(ready) < n:
            self.kill()
            gpu_text = f" and {gpus:g} GPU" if gpus else ""
            raise ExecutionError(f"Ray placed only {len(ready)} of {n} workers ({cpu_each:g} CPU{gpu_text} each) "
                                 f"within {READY_TIMEOUT_S:.0f} s; the cluster has {total_cpu:g} CPUs and "
                                 f"{ray.cluster_resources().get('GPU', 0):g} GPUs. Lower SET ray_workers or "
                                 f"ray_gpus_per_worker")

    def kill(self) -> None:
        for a in self.actors:
            try:
                self.ray.kill(a)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.actors = []

    def worker_info(self) -> list[dict]:
        return self.ray.get([a.info.remote() for a in self.actors])

    def share(self, value, key=None):
        import numpy as np

        key = key or os.urandom(8).hex()
        ref = self._shared.get(key)
        if ref is None:
            ref = self.ray.put(np.ascontiguousarray(value) if isinstance(value, np.ndarray) else value)
            self._shared[key] = ref
            while len(self._shared) > _SHARED_KEEP:
                self._shared.popitem(last=False)
        return Shared(key, None, ref)

    def _file_refs(self, model: dict) -> dict:
        """``{field: (key, [object ref])}`` of the record's files, put once per file version."""
        out = {}
        paths = record_files(model)
        for field_, path in paths.items():
            try:
                st = os.stat(path)
            except OSError as exc:
                raise ExecutionError(f"cannot read {path} to send it to the workers: {exc.strerror}") from None
            key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
            ref = self._files.get(key)
            if ref is None:
                ref = self._files[key] = self.ray.put(read_files({field_: path} if field_ == "checkpoint"
                                                                 else {"source": "torchscript:" + path})[field_])
                while len(self._files) > 64:
                    self._files.popitem(last=False)
            self._files.move_to_end(key)
            out[field_] = ("|".join(map(str, key)), [ref])
        return out

    def _submit(self, job, ship: bool = False):
        args = {k: v for k, v in job.args.items() if not isinstance(v, Shared)}
        refs = {k: (v.key, [v.ref]) for k, v in job.args.items() if isinstance(v, Shared)}
        i = route(job.model["name"], len(self.actors)) if job.route is None else int(job.route) % len(self.actors)
        ship = ship or self.ship == "always" or (self.ship == "auto" and i in self._needs_files)
        files = self._file_refs(job.model) if ship and record_files(job.model) else None
        if ship and self.ship == "auto":
            self._needs_files.add(i)
        return self.actors[i].run.remote(job.fn, job.model, args, refs, files, self.ship == "auto" and not files)

    def _result(self, job, ref) -> JobResult:
        ray = self.ray
        try:
            value, error, seconds, device, worker = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            msg = " ".join(str(cause).split())[:300]
            return JobResult(job.key, None, f"worker error: {msg}", 0.0, None, "ray")
        except ray.exceptions.RayActorError as exc:
            return JobResult(job.key, None, f"worker died and could not be restarted: "
                                            f"{' '.join(str(exc).split())[:200]}", 0.0, None, "ray")
        return JobResult(job.key, value, error and error[0], seconds, device, worker,
                         error_kind=error[1] if error else "ExecutionError")

    def map(self, jobs, progress=None):
        ray = self.ray
        it = iter(jobs)
        pending: dict = {}
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < self.window:
                    job = next(it, None)
                    if job is None:
                        exhausted = True
                        break
                    pending[self._submit(job)] = job
                if not pending:
                    return
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    job = pending.pop(ref)
                    res = self._result(job, ref)
                    if isinstance(res.value, str) and res.value == NEED_FILES:
                        pending[self._submit(job, ship=True)] = job   # again, with the files' bytes
                        continue
                    yield res
        finally:
            for ref in pending:   # an interrupt: drop the work not yet done
                try:
                    ray.cancel(ref)
                except Exception:  # noqa: BLE001 - best effort; the task may have finished
                    pass

    def describe(self):
        return {"executor": "ray", "workers": self.workers}


_CACHE: dict[tuple, RayExecutor] = {}


def connect_ray(address: str | None):
    """Ray, initialised: the running connection when there is one, else ``ray.init``
    (``address`` None starts a local Ray on 127.0.0.1 without a dashboard)."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    kw: dict[str, Any] = dict(log_to_driver=False, namespace="zooql")
    if address:
        kw["address"] = address
    else:
        kw.update(include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        ray.init(**kw)
    except Exception as exc:  # noqa: BLE001 - any failure to reach or start a cluster
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise ExecutionError(f"cannot connect to {where}: {' '.join(str(exc).split())[:300]}") from None
    return ray


def ray_executor(*, address: str | None, workers: int | None, gpus: float, device: str,
                 trust_code: bool, ship: str = "auto") -> RayExecutor:
    """The executor for these settings; its actors stay up (warm) across statements."""
    if ship not in SHIP_MODES:
        raise ExecutionError(f"setting ray_ship_files is one of {', '.join(map(repr, SHIP_MODES))}; got {ship!r}")
    ray = connect_ray(address)
    job = ray.get_runtime_context().get_job_id()
    key = (job, workers, gpus, device, trust_code)
    ex = _CACHE.get(key)
    if ex is None:
        release()   # one set of actors at a time: another configuration's would hold the CPUs
        ex = _CACHE[key] = RayExecutor(ray, workers=workers, gpus=gpus, device=device, trust_code=trust_code)
    ex.ship = ship
    return ex


def release() -> None:
    """Forget (and kill) the cached actors, e.g. before ``ray.shutdown()``."""
    for ex in _CACHE.values():
        if ex.ray.is_initialized():
            ex.kill()
    _CACHE.clear()
