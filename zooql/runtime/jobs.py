"""The executor interface's data and worker side (see :mod:`zooql.runtime.executors`):
jobs, results, shared values, worker functions and the local executor. Imports neither
torch nor ray."""
from __future__ import annotations

import importlib
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from zooql.errors import ExecutionError

FORWARD = "zooql.runtime.jobs:forward"
INSTALL_HINT = "pip install 'zooql[ray]'"


@dataclass
class Shared:
    """A read-only value every worker can read (see :meth:`Executor.share`)."""

    key: str
    value: Any = None
    ref: Any = None      # the Ray object reference (ray executor)


@dataclass
class Job:
    key: Any                       # returned unchanged with the result
    model: dict                    # model record by value: name, source, checkpoint, options
    fn: str = FORWARD              # "zooql.module:function" run by the worker
    args: dict = field(default_factory=dict)   # plain data and Shared values
    route: int | None = None       # a fixed worker (index modulo the workers); None: by the model's name


@dataclass
class JobResult:
    key: Any
    value: Any = None
    error: str | None = None       # an ExecutionError's message (the model failed)
    seconds: float = 0.0           # time the worker spent on the job
    device: str | None = None      # the device the model ran on
    worker: str = "local"          # which worker ran it (ray: "pid@node")
    error_kind: str = "ExecutionError"   # the class of the failure (SecurityError, ...)

    def unwrap(self) -> Any:
        """The value, or the failure raised again (ExecutionError or its subclass)."""
        if self.error is not None:
            from zooql import errors

            cls = getattr(errors, self.error_kind, ExecutionError)
            raise (cls if isinstance(cls, type) and issubclass(cls, ExecutionError) else ExecutionError)(self.error)
        return self.value


def model_record(m: dict) -> dict:
    """The record a worker needs to load catalog model ``m`` (a models-table row dict)."""
    from zooql.runtime.loading import model_options

    return {"name": m["name"], "source": m["source"], "checkpoint": m.get("checkpoint"),
            "options": model_options(m), "num_logits": m.get("num_logits")}


# ---- model files by value (checkpoint bytes in the object store) -----------------------------------

#: what a worker answers when it cannot read a file of the model record (the driver then
#: ships the bytes, ``SET ray_ship_files = 'auto'``)
NEED_FILES = "__zooql_need_files__"
SHIP_MODES = ("auto", "always", "never")


def record_files(model: dict) -> dict[str, str]:
    """The files a model record is loaded from: ``{"checkpoint": path}`` and, for a
    ``torchscript:`` source, ``{"source": path}``."""
    out = {}
    if model.get("checkpoint"):
        out["checkpoint"] = str(model["checkpoint"])
    src = str(model.get("source") or "")
    if src.startswith("torchscript:"):
        out["source"] = src.split(":", 1)[1]
    return out


def unreadable_files(model: dict) -> list[str]:
    """The fields of :func:`record_files` this process cannot read."""
    return [k for k, p in record_files(model).items() if not os.access(p, os.R_OK)]


def read_files(model: dict) -> dict[str, bytes]:
    """The bytes of the record's files (the driver side of shipping them)."""
    out = {}
    for k, p in record_files(model).items():
        try:
            with open(p, "rb") as f:
                out[k] = f.read()
        except OSError as exc:
            raise ExecutionError(f"cannot read {p} to send it to the workers: {exc.strerror}") from None
    return out


def materialize(model: dict, blobs: dict[str, bytes], folder: str | None = None) -> dict:
    """A copy of ``model`` whose files are local copies of ``blobs`` (``{field: bytes}``,
    as :func:`read_files` gives them), written once per content into ``folder`` (default:
    ``zooql-model-files`` in the temp dir) under the original file name, so the model
    builds exactly as from the original path (the file type is kept)."""
    import hashlib

    folder = folder or os.path.join(tempfile.gettempdir(), "zooql-model-files")
    os.makedirs(folder, exist_ok=True)
    out = dict(model)
    for field_, data in blobs.items():
        orig = record_files(model)[field_]
        digest = hashlib.sha256(data).hexdigest()[:24]
        path = os.path.join(folder, f"{digest}-{os.path.basename(orig)}")
        if not os.path.exists(path) or os.path.getsize(path) != len(data):
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        if field_ == "checkpoint":
            out["checkpoint"] = path
        else:
            out["source"] = "torchscript:" + path
    return out


def resolve_fn(path: str) -> Callable:
    """The worker function ``"zooql.module:function"`` (only ZooQL's own functions)."""
    mod, _, name = path.partition(":")
    if not (mod == "zooql" or mod.startswith("zooql.")) or not name:
        raise ExecutionError(f"worker function {path!r} is not a zooql 'module:function'")
    return getattr(importlib.import_module(mod), name)


def call_job(runtime, fn: str, model: dict, args: dict, progress=None) -> tuple[Any, tuple | None, float]:
    """Run one job on ``runtime``: (value, (error message, error class name) or None,
    seconds). Used by every worker."""
    t0 = time.perf_counter()
    try:
        value = resolve_fn(fn)(runtime, model, args, progress)
    except ExecutionError as exc:
        return None, (exc.message, type(exc).__name__), time.perf_counter() - t0
    return value, None, time.perf_counter() - t0


def load(runtime, model: dict):
    """Load a model record into ``runtime`` (its LRU cache)."""
    return runtime.load(model["name"], model["source"], model.get("checkpoint"), model.get("options"),
                        num_logits=model.get("num_logits"))


def forward(runtime, model: dict, args: dict, progress=None):
    """Worker function: the model's outputs (logits, or embeddings of open_clip models) on
    ``args['images']`` (rows ``args['indices']`` of it when given), float32 [N, L].
    ``args['inputs_key']``: a key naming the images' content (PROBE: the probe set's hash), so
    that the runtime preprocesses them once per preprocessing, not once per model."""
    import numpy as np

    images = args["images"]
    if args.get("indices") is not None:
        images = np.asarray(images[np.asarray(args["indices"], dtype=np.int64)])
    kw = {"inputs_key": args["inputs_key"]} if args.get("inputs_key") and args.get("indices") is None else {}
    return runtime.run(load(runtime, model), images, batch_size=int(args.get("batch", 64)), progress=progress, **kw)


class Executor:
    """The interface (see the module docstring)."""

    name = "executor"
    workers = 1

    def share(self, value: Any, key: str | None = None) -> Shared:
        """A handle on ``value`` for this executor's workers (this machine: the value itself;
        Ray: an object-store reference)."""
        return Shared(key or uuid.uuid4().hex, value)

    def map(self, jobs: Iterable[Job], progress: Callable | None = None) -> Iterator[JobResult]:  # pragma: no cover
        raise NotImplementedError

    def describe(self) -> dict:
        return {"executor": self.name, "workers": self.workers}


class LocalExecutor(Executor):
    """Today's behaviour: the jobs run one after the other, here, through ``runtime`` (a
    ModelRuntime, or a function returning one, called on the first job).
    ``progress(job, done, total)`` receives the per-batch progress of the running job."""

    name = "local"

    def __init__(self, runtime):
        self._runtime = runtime

    @property
    def runtime(self):
        if callable(self._runtime) and not hasattr(self._runtime, "run"):
            self._runtime = self._runtime()
        return self._runtime

    def map(self, jobs, progress=None):
        for job in jobs:
            args = {k: (v.value if isinstance(v, Shared) else v) for k, v in job.args.items()}
            cb = (lambda d, t, _j=job: progress(_j, d, t)) if progress is not None else None
            value, error, seconds = call_job(self.runtime, job.fn, job.model, args, cb)
            yield JobResult(job.key, value, error and error[0], seconds, getattr(self.runtime, "device", None),
                            error_kind=error[1] if error else "ExecutionError")


def noop(runtime, model: dict, args: dict, progress=None):
    """Worker function that does nothing (measures an executor's per-job overhead)."""
    return args.get("echo")
