"""Evaluation sources of tasks: one interface (:class:`EvalSource`) for replaying recorded
outcomes, scoring a classifier live on a labelled image set, or calling a trusted Python
evaluator; :func:`open_source` picks the one a task needs."""
from __future__ import annotations
import contextlib
import hashlib
import importlib
import importlib.util
import json
import math
import os
import shutil
import sys
from dataclasses import dataclass, field
from typing import Any, Callable
import numpy as np
from zooql.core.sampling import sample_folder
from zooql.runtime.images import IMAGE_EXTS
from zooql.errors import ExecutionError, SecurityError

from zooql.core.tasks import (_ANSWER_KEYS, TRUST_HINT, _file_sha, _first, _npz_arrays, _sha, parse_evaluator,  # noqa: F401
                              recorded_pool, task_rows)


# ==== evaluation sources ======================================================================

class EvalSource:
    """One interface for every way of scoring a model on a query.

    ``models`` is the list of searched model rows (dicts with id, name, source, checkpoint,
    loadable, downloads, preprocess) in search order; ``evaluate(i, q)`` scores model
    ``models[i]`` on the pool queries ``q`` (indices into ``query_ids``)."""

    kind = "source"
    task = ""
    fingerprint = ""
    query_ids: list[str] = []
    dropped = 0            # queries left out of the pool (recorded: not answered by every model)

    def evaluate(self, model_idx: int, queries: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def full_scores(self) -> np.ndarray | None:
        """Each model's score over the whole pool, when known without spending anything."""
        return None

    def close(self) -> None:
        pass


class RecordedSource(EvalSource):
    kind = "recorded"

    def __init__(self, con, dataset: str, models: list[dict]):
        self.task = dataset
        self.fingerprint = "recorded"
        names = [m["name"] for m in models]
        shared, missing, union = recorded_pool(con, dataset, names)
        if missing:
            raise ExecutionError(f"model(s) {', '.join(missing)} have no recorded outcomes on {dataset!r}; "
                                 f"import them (IMPORT OUTCOMES) or leave those models out with WHERE")
        if not shared:
            raise ExecutionError(f"no query of {dataset!r} has a recorded outcome for every searched model "
                                 f"({len(names)} models)")
        self.query_ids = shared
        self.dropped = union - len(shared)
        import pyarrow as pa

        self.matrix = np.full((len(names), len(shared)), np.nan)
        con.execute("SELECT 1").fetchall()  # finish any pending result (register refuses otherwise)
        con.register("_zooql_dm", pa.table({"model": names, "mi": np.arange(len(names), dtype=np.int64)}))
        con.register("_zooql_dq", pa.table({"query_id": shared, "qi": np.arange(len(shared), dtype=np.int64)}))
        try:
            got = con.execute(
                "SELECT m.mi, q.qi, avg(o.score) AS s FROM outcomes o JOIN _zooql_dm m ON m.model = o.model "
                "JOIN _zooql_dq q ON q.query_id = o.query_id WHERE o.dataset = ? GROUP BY m.mi, q.qi",
                [dataset]).fetchnumpy()
        finally:
            con.unregister("_zooql_dm")
            con.unregister("_zooql_dq")
        self.matrix[np.asarray(got["mi"], dtype=np.int64), np.asarray(got["qi"], dtype=np.int64)] = \
            np.asarray(got["s"], dtype=np.float64)
        lo, hi = float(np.nanmin(self.matrix)), float(np.nanmax(self.matrix))
        if lo < 0 or hi > 1:
            raise ExecutionError(f"outcomes of {dataset!r} must be scores in [0, 1]; found {lo:g} .. {hi:g}")

    def evaluate(self, model_idx, queries):
        return self.matrix[model_idx, queries]

    def full_scores(self):
        return self.matrix.mean(axis=1)


def _norm_answer(x: Any) -> Any:
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, (int, float)):
        return float(x)
    s = " ".join(str(x).split()).strip().casefold()
    try:
        f = float(s.replace(",", ""))
        if math.isfinite(f):
            return f
    except ValueError:
        pass
    return s.rstrip(".")


def answers_match(pred: Any, answer: Any) -> bool:
    return _norm_answer(pred) == _norm_answer(answer)


class ExactMatchSource(EvalSource):
    """Live exact-match scoring: image classifiers run through the model runtime, or the
    recorded ``responses`` of a .jsonl task."""

    kind = "live"

    def __init__(self, con, store_task_row: dict, models: list[dict], *, runtime_fn: Callable,
                 batch_size: int = 64, progress: Callable | None = None):
        from zooql.storage import catalog as C

        t = store_task_row
        self.task = t["name"]
        self.fingerprint = t["fingerprint"]
        rows = con.execute("SELECT query_id, query FROM task_queries WHERE task = ? ORDER BY idx",
                           [t["name"]]).fetchall()
        self.query_ids = [r[0] for r in rows]
        self.queries = [json.loads(r[1]) if r[1] else {} for r in rows]
        self.answers = [_first(q, _ANSWER_KEYS) for q in self.queries]
        self.models = models
        self.runtime_fn = runtime_fn
        self.batch_size = batch_size
        self.progress = progress
        self.images = None
        if t["path"] and t["path"].endswith(".npz") and t["kind"] == "images":
            self.images, _ = _npz_arrays(t["path"])
        self.has_images = bool(t["info"].get("images"))
        responders = set(t["info"].get("responses") or ())
        self.mode = []
        unable = []
        for m in models:
            if m["name"] in responders:
                self.mode.append("responses")
            elif self.has_images and m["loadable"]:
                self.mode.append("classifier")
            else:
                self.mode.append(None)
                unable.append(m["name"])
        if unable:
            why = ("registered by name only" if self.has_images else "without recorded responses")
            raise ExecutionError(f"model(s) {', '.join(unable)} cannot be evaluated on task {self.task!r} "
                                 f"({why}); models registered by name only take part through recorded "
                                 f"outcomes or a python evaluator; leave them out with WHERE")
        self.labels = {i: C.model_labels(con, m["id"]) for i, m in enumerate(models)}
        self.loaded = 0

    def _images(self, queries: np.ndarray):
        if self.images is not None:
            return self.images[queries]
        return [self.queries[int(q)]["image"] for q in queries]

    def evaluate(self, model_idx, queries):
        if self.mode[model_idx] == "responses":
            return self._responses(model_idx, queries)
        m = self.models[model_idx]
        rt = self.runtime_fn()
        loaded = rt.load(m["name"], m["source"], m["checkpoint"], m["preprocess"])
        self.loaded += 1
        return self.score(model_idx, queries, rt.run(loaded, self._images(queries), batch_size=self.batch_size))

    def _responses(self, model_idx, queries):
        m = self.models[model_idx]
        return np.array([float(answers_match(self.queries[int(q)]["responses"].get(m["name"]),
                                             self.answers[int(q)])) for q in queries])

    def evaluate_many(self, requests: list[tuple[int, np.ndarray]], executor) -> Any:
        """Yield ``(request index, scores)`` for ``requests`` of ``(model index, queries)``,
        the classifier forward passes run by ``executor`` (results in completion order)."""
        from zooql.runtime.executors import Job

        live = []
        for r, (mi, q) in enumerate(requests):
            if self.mode[mi] == "responses":
                yield r, self._responses(mi, q)
            else:
                live.append(r)
        if not live:
            return
        if self.images is not None:
            shared = executor.share(self.images, key=f"task:{self.task}:{self.fingerprint}")
            args = lambda q: {"images": shared, "indices": np.asarray(q, dtype=np.int64), "batch": self.batch_size}  # noqa: E731
        else:
            args = lambda q: {"images": self._images(q), "batch": self.batch_size}  # noqa: E731
        jobs = (Job(r, _record(self.models[requests[r][0]]), args=args(requests[r][1])) for r in live)
        results = executor.map(jobs)
        try:
            for res in results:
                mi, q = requests[res.key]
                self.loaded += 1
                yield res.key, self.score(mi, q, res.unwrap())
        finally:
            results.close()

    def score(self, model_idx, queries, logits) -> np.ndarray:
        """Exact-match scores of a classifier's logits on ``queries``."""
        m = self.models[model_idx]
        logits = np.asarray(logits)
        if logits.ndim != 2 or logits.shape[0] != len(queries):
            raise ExecutionError(f"model {m['name']!r} returned output of shape {logits.shape} for "
                                 f"{len(queries)} images; a classifier must return [N, classes] logits")
        pred = logits.argmax(axis=1)
        labels = self.labels.get(model_idx) or []
        out = np.zeros(len(queries))
        for j, (p, q) in enumerate(zip(pred, queries)):
            ans = self.answers[int(q)]
            if isinstance(ans, (int, np.integer)) and not isinstance(ans, bool):
                out[j] = float(int(p) == int(ans))
            elif isinstance(ans, str) and ans.strip().isdigit() and not any(labels):
                out[j] = float(int(p) == int(ans))
            else:
                name = labels[int(p)] if int(p) < len(labels) else None
                if name is None and not any(labels):
                    raise ExecutionError(f"model {m['name']!r} has no label names, so its predictions "
                                         f"cannot be compared with text labels such as {ans!r}; give "
                                         f"LABELS when adding it, or use integer labels")
                out[j] = float(name is not None and answers_match(name, ans))
        return out


def _record(m: dict) -> dict:
    """The executor's model record of a searched model row (its stored preprocessing)."""
    return {"name": m["name"], "source": m["source"], "checkpoint": m["checkpoint"],
            "options": m["preprocess"], "num_logits": None}


def load_python_function(target: str, fn_name: str, base_dir: str | None = None) -> Callable:
    """Import ``fn_name`` from a ``.py`` file or a dotted module (trust is checked by the caller)."""
    if target.endswith(".py") or os.sep in target or "/" in target:
        if not os.path.isfile(target):
            raise ExecutionError(f"python evaluator file not found: {target}")
        mod_name = "zooql_task_" + hashlib.sha1((target + str(os.stat(target).st_mtime_ns)).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(mod_name, target)
        mod = importlib.util.module_from_spec(spec)
        folder = os.path.dirname(target)
        sys.path.insert(0, folder)
        try:
            spec.loader.exec_module(mod)
        except Exception as exc:
            raise ExecutionError(f"python evaluator file {target} failed to import: {_short(exc)}") from exc
        finally:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)
    else:
        added = bool(base_dir) and base_dir not in sys.path
        if added:
            sys.path.insert(0, base_dir)
        try:
            mod = importlib.import_module(target)
        except ImportError as exc:
            raise ExecutionError(f"cannot import python evaluator module '{target}': {_short(exc)}") from None
        except Exception as exc:
            raise ExecutionError(f"python evaluator module '{target}' failed to import: {_short(exc)}") from exc
        finally:
            if added:
                with contextlib.suppress(ValueError):
                    sys.path.remove(base_dir)
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise ExecutionError(f"python evaluator module '{target}' has no function '{fn_name}'")
    return fn


def evaluator_code_sha(target: str) -> bytes:
    """Hash of the evaluator's source file, so that editing it starts a fresh cache."""
    path = target
    if not (target.endswith(".py") or os.sep in target or "/" in target):
        with contextlib.suppress(Exception):
            spec = importlib.util.find_spec(target)
            path = spec.origin if spec and spec.origin else ""
    try:
        return _file_sha(path)
    except OSError:
        return b""


def check_trust(trusted: bool, what: str) -> None:
    if not trusted:
        raise SecurityError(f"{what} runs arbitrary Python code; refusing. Enable it with {TRUST_HINT}")


class PythonSource(EvalSource):
    kind = "python"

    def __init__(self, con, task_row: dict, models: list[dict], *, trusted: bool):
        t = task_row
        check_trust(trusted, f"evaluator {t['evaluator']!r} of task {t['name']!r}")
        _, target, fn_name = parse_evaluator(t["evaluator"])
        self.task = t["name"]
        self.fingerprint = _sha(t["fingerprint"].encode(), evaluator_code_sha(target))
        rows = con.execute("SELECT query_id, query FROM task_queries WHERE task = ? ORDER BY idx",
                           [t["name"]]).fetchall()
        self.query_ids = [r[0] for r in rows]
        self.queries = [json.loads(r[1]) for r in rows]
        self.models = models
        self.fn = load_python_function(target, fn_name, t["info"].get("base_dir"))
        self.label = t["evaluator"]

    def evaluate(self, model_idx, queries):
        name = self.models[model_idx]["name"]
        batch = [dict(self.queries[int(q)]) for q in queries]
        try:
            out = self.fn(name, batch)
        except Exception as exc:
            raise ExecutionError(f"evaluator {self.label} failed on model {name!r}: {_short(exc)}") from exc
        try:
            scores = np.asarray(list(out), dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise ExecutionError(f"evaluator {self.label} must return a sequence of numbers, "
                                 f"got {type(out).__name__}") from None
        if scores.size != len(batch):
            raise ExecutionError(f"evaluator {self.label} returned {scores.size} scores for "
                                 f"{len(batch)} queries (model {name!r})")
        if np.isnan(scores).any() or (scores < 0).any() or (scores > 1).any():
            raise ExecutionError(f"evaluator {self.label} must return scores in [0, 1] "
                                 f"(model {name!r} got {scores.min():g} .. {scores.max():g})")
        return scores


def open_source(con, task_name: str, models: list[dict], *, trusted: bool, runtime_fn: Callable,
                batch_size: int = 64) -> EvalSource:
    """The evaluation source DISCOVER uses for ``task_name`` (a task, else a recorded dataset)."""
    t = task_rows(con).get(task_name)
    if t is None:
        return RecordedSource(con, task_name, models)
    if t["evaluator"].lower().startswith("python:"):
        return PythonSource(con, t, models, trusted=trusted)
    return ExactMatchSource(con, t, models, runtime_fn=runtime_fn, batch_size=batch_size)


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[:limit] + "..."
