"""Tasks for DISCOVER and the evaluation sources behind them.

A *task* is a pool of queries plus a way to score a model on any of them, in [0, 1].
DISCOVER (:mod:`zooql.methods.hidden_gems.ops`) sees every task through one interface,
:class:`EvalSource`: ``query_ids`` (the pool), ``fingerprint`` (what the outcome cache is
keyed by) and ``evaluate(model, query_indices) -> scores``. Three sources:

``ExactMatchSource`` (live)
    ``CREATE TASK digits FROM 'digits.npz'`` (arrays ``images`` uint8 ``[N,H,W]`` or
    ``[N,H,W,C]`` and integer ``labels``), ``CREATE TASK t FROM IMAGES 'folder'`` (one
    sub-folder per class) or a ``.jsonl`` whose lines carry an ``image`` path and an
    ``answer``. A registered image classifier is run through the model runtime; a query
    scores 1 when the argmax equals the label (an integer label is a logit index, a text
    label is compared with the model's label names). A ``.jsonl`` line may also carry
    ``responses: {model: answer}``, recorded answers compared with ``answer`` (exact match
    after trimming and case folding; numbers compare numerically): that is how a model
    registered by name only takes part in an ``exact_match`` task.
``PythonSource`` (live)
    ``EVALUATOR 'python:<module or file.py>:<function>'``: ``function(model_name,
    queries) -> scores`` with ``queries`` a list of the task's query dicts (each with its
    ``id``); runs arbitrary code, so only with ``trust_code``.
``RecordedSource`` (replay)
    A dataset with outcomes imported by ``IMPORT OUTCOMES`` (model, dataset, query_id,
    score) is itself a task: the recorded scores are the oracle. The pool is the set of
    query ids that *every* searched model has an outcome for (other queries are left out
    and counted in ``dropped``); a searched model with no outcome at all is an error that
    names it. Several outcomes of one (model, query) are averaged.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zooql.core.sampling import sample_folder
from zooql.runtime.images import IMAGE_EXTS
from zooql.errors import ExecutionError
from zooql.storage.hub import sha256_file

EVALUATORS = ("exact_match",)
TRUST_HINT = "SET trust_code = true or --trust"
_ID_KEYS = ("id", "query_id")
_ANSWER_KEYS = ("answer", "label", "target")
_IMAGE_KEYS = ("image", "image_path")


# ==== task definitions ========================================================================

@dataclass
class TaskDef:
    """What CREATE TASK stores: one row of ``tasks`` plus the rows of ``task_queries``."""

    name: str
    kind: str                       # 'images' | 'queries'
    path: str
    evaluator: str
    queries: list[tuple[str, dict]]  # (query_id, payload) in pool order
    fingerprint: str
    info: dict = field(default_factory=dict)
    npz_source: str | None = None    # .npz to copy into the hub


def parse_evaluator(text: str | None) -> tuple[str, str | None, str | None]:
    """``'exact_match'`` -> ('exact_match', None, None); ``'python:mod:fn'`` ->
    ('python', 'mod', 'fn'). Raises ValueError with a readable message."""
    if text is None or text.strip().lower() == "exact_match":
        return "exact_match", None, None
    t = text.strip()
    if t.lower().startswith("python:"):
        module, sep, fn = t[7:].rpartition(":")
        if not sep or not module.strip() or not fn.strip().isidentifier():
            raise ValueError(f"python evaluator must be 'python:<module or file.py>:<function>', got {text!r}")
        return "python", module.strip(), fn.strip()
    raise ValueError(f"unknown evaluator {text!r}")


def _sha(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()[:32]


def _file_sha(path: str) -> bytes:
    return bytes.fromhex(sha256_file(path))


def _first(d: dict, keys) -> Any:
    for k in keys:
        if k in d:
            return d[k]
    return None


def read_task(name: str, path: str, *, images: bool, evaluator: str, limit: int | None,
              base_dir: str, seed: int | None = None) -> TaskDef:
    """Read a task file (no model is run, no user code is imported). ``LIMIT`` on an image
    folder draws a random sample (``seed``, default 0), stratified over class sub-folders
    (:func:`sample_folder`); on ``.npz`` / ``.jsonl`` it keeps the first ``limit``."""
    kind, module, fn = parse_evaluator(evaluator)
    if not os.path.exists(path):
        raise ExecutionError(f"task file not found: {path}")
    if seed is not None and not os.path.isdir(path):
        raise ExecutionError(f"SEED draws a random sample of an image folder; {os.path.basename(path)!r} is not one "
                             f"(LIMIT keeps the first n of an .npz or .jsonl task)")
    if os.path.isdir(path):
        if kind == "python":
            raise ExecutionError("a python evaluator takes a .jsonl file of queries, not an image folder")
        return _read_folder(name, path, limit, seed)
    if path.endswith(".npz"):
        if kind == "python":
            raise ExecutionError("a python evaluator takes a .jsonl file of queries, not an .npz image set")
        return _read_npz(name, path, limit)
    if images:
        raise ExecutionError(f"FROM IMAGES takes a folder of class sub-folders or an .npz file, got {os.path.basename(path)!r}")
    if not path.endswith((".jsonl", ".json")):
        raise ExecutionError(f"a task is read from .jsonl queries, an .npz image set or an image folder; "
                             f"got {os.path.basename(path)!r}")
    return _read_jsonl(name, path, limit, kind, module, fn, evaluator, base_dir)


def _read_npz(name: str, path: str, limit: int | None) -> TaskDef:
    images, labels = _npz_arrays(path)
    n = len(labels) if limit is None else min(limit, len(labels))
    queries = [(str(i), {"answer": int(labels[i])}) for i in range(n)]
    fp = _sha(b"npz", _file_sha(path), str(n).encode())
    info = {"images": True, "shape": list(images.shape[1:]), "classes": int(len(np.unique(labels[:n])))}
    return TaskDef(name, "images", path, "exact_match", queries, fp, info, npz_source=path)


def _npz_arrays(path: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            if "images" not in z.files or "labels" not in z.files:
                raise ExecutionError(f"{os.path.basename(path)} needs arrays 'images' and 'labels'; "
                                     f"found {', '.join(z.files) or 'none'}")
            images, labels = z["images"], z["labels"]
    except ExecutionError:
        raise
    except Exception as exc:
        raise ExecutionError(f"cannot read {path}: {exc}") from None
    if images.ndim not in (3, 4):
        raise ExecutionError(f"{os.path.basename(path)}: images must be [N,H,W] or [N,H,W,C], got shape {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ExecutionError(f"{os.path.basename(path)}: labels must be a 1-d array with one label per image "
                             f"({len(images)} images, labels shape {labels.shape})")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ExecutionError(f"{os.path.basename(path)}: labels must be integers (logit indices), got {labels.dtype}")
    if len(labels) == 0:
        raise ExecutionError(f"{os.path.basename(path)} holds no images")
    return images, labels


def _read_folder(name: str, path: str, limit: int | None, seed: int | None = None) -> TaskDef:
    classes, chosen, sample = sample_folder(path, limit, seed)
    if not classes and chosen:  # unlabelled images (RANK MODELS ... USING CONDUCTANCE needs no labels)
        stamp = "\n".join(f"{f}:{os.stat(os.path.join(path, f)).st_size}:"
                          f"{os.stat(os.path.join(path, f)).st_mtime_ns}" for f in chosen)
        info = {"images": True, "labelled": False, **({"sample": sample} if sample else {})}
        return TaskDef(name, "images", path, "exact_match", [(f, {"image": os.path.join(path, f)}) for f in chosen],
                       _sha(b"flat", stamp.encode()), info)
    if not classes:
        raise ExecutionError(f"image folder {path} has no class sub-folders (expected <folder>/<class>/<image>) "
                             f"and no images")
    numeric = all(c.isdigit() for c in classes)
    queries, stamp = [], []
    for rel in chosen:
        c = rel.split(os.sep, 1)[0]
        full = os.path.join(path, rel)
        st = os.stat(full)
        rel = rel.replace(os.sep, "/")
        queries.append((rel, {"image": full, "answer": int(c) if numeric else c}))
        stamp.append(f"{rel}:{st.st_size}:{st.st_mtime_ns}")
    if not queries:
        raise ExecutionError(f"image folder {path} holds no images ({', '.join(IMAGE_EXTS)})")
    fp = _sha(b"folder", "\n".join(stamp).encode())
    info = {"images": True, "classes": len(classes), **({"sample": sample} if sample else {})}
    return TaskDef(name, "images", path, "exact_match", queries, fp, info)


def _read_jsonl(name, path, limit, kind, module, fn, evaluator, base_dir) -> TaskDef:
    folder = os.path.dirname(path)
    queries, seen = [], set()
    raw = open(path, "rb").read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ExecutionError(f"task file {path} is not UTF-8 text") from None
    lines = text.splitlines()
    if path.endswith(".json") and text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ExecutionError(f"{path}: invalid JSON ({exc.msg})") from None
        items = [(i + 1, r) for i, r in enumerate(records)]
    else:
        items = []
        for lineno, line in enumerate(lines, 1):
            if line.strip():
                try:
                    items.append((lineno, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise ExecutionError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
    has_images = True
    responders: set[str] | None = None
    for lineno, rec in items:
        if limit is not None and len(queries) >= limit:
            break
        if not isinstance(rec, dict):
            raise ExecutionError(f"{path}:{lineno}: each query must be a JSON object")
        qid = _first(rec, _ID_KEYS)
        qid = str(len(queries)) if qid is None else str(qid)
        if qid in seen:
            raise ExecutionError(f"{path}:{lineno}: query id {qid!r} appears twice")
        seen.add(qid)
        rec = dict(rec)
        rec["id"] = qid
        img = _first(rec, _IMAGE_KEYS)
        if img is None:
            has_images = False
        else:
            rec["image"] = os.path.normpath(os.path.join(folder, os.path.expanduser(str(img))))
        resp = rec.get("responses")
        if resp is not None and not isinstance(resp, dict):
            raise ExecutionError(f"{path}:{lineno}: 'responses' must map model names to answers")
        names = set(resp or ())
        responders = names if responders is None else responders & names
        if kind == "exact_match" and _first(rec, _ANSWER_KEYS) is None:
            raise ExecutionError(f"{path}:{lineno}: query {qid!r} has no 'answer' (exact_match compares "
                                 f"a model's answer with it)")
        queries.append((qid, rec))
    if not queries:
        raise ExecutionError(f"task file {path} holds no queries")
    info: dict[str, Any] = {"images": has_images, "responses": sorted(responders or ())}
    parts = [b"jsonl", raw, str(len(queries)).encode(), evaluator.encode()]
    if kind == "python":
        target = resolve_python_module(module, base_dir)
        evaluator = f"python:{target}:{fn}"
        info["base_dir"] = base_dir
    return TaskDef(name, "queries", path, evaluator, queries, _sha(*parts), info)


def resolve_python_module(module: str, base_dir: str) -> str:
    """A ``.py`` file (or a path) becomes absolute; a dotted module name is kept."""
    if module.endswith(".py") or "/" in module or os.sep in module:
        return os.path.normpath(os.path.join(base_dir, os.path.expanduser(module)))
    return module


def stage_task_file(store, t: TaskDef) -> tuple[str, "os.PathLike | None"]:
    """Copy an .npz task into the hub (written beside and renamed), before the catalog is
    opened read-write. Returns (the path the task row records, the file this call created:
    the caller removes it when the commit fails; None when nothing was created)."""
    if not t.npz_source:
        return t.path, None
    final = store.named_file("tasks", t.name, f"-{t.fingerprint[:12]}.npz")
    t.info["original_path"] = t.npz_source
    if final.exists():
        return str(final), None
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        shutil.copyfile(t.npz_source, tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return str(final), final


def store_task(con, t: TaskDef, path: str) -> tuple[bool, int]:
    """Insert (or replace) a task's rows (``path``: from :func:`stage_task_file`), in the
    caller's transaction. Returns (replaced, cached evaluations dropped)."""
    import pyarrow as pa

    data = pa.table({"task": [t.name] * len(t.queries), "idx": list(range(len(t.queries))),
                     "query_id": [q for q, _ in t.queries],
                     "query": [json.dumps(p) for _, p in t.queries]})
    old = con.execute("SELECT fingerprint FROM tasks WHERE name = ?", [t.name]).fetchone()
    dropped = 0
    if old is not None:
        con.execute("DELETE FROM tasks WHERE name = ?", [t.name])
        con.execute("DELETE FROM task_queries WHERE task = ?", [t.name])
        if old[0] != t.fingerprint:
            dropped = con.execute("SELECT count(*) FROM discover_cache WHERE task = ? AND fingerprint <> ?",
                                  [t.name, "recorded"]).fetchone()[0]
            con.execute("DELETE FROM discover_cache WHERE task = ? AND fingerprint <> 'recorded'", [t.name])
    con.execute("INSERT INTO tasks (name, kind, path, evaluator, n_queries, fingerprint, info) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [t.name, t.kind, path, t.evaluator, len(t.queries), t.fingerprint, json.dumps(t.info)])
    con.execute("SELECT 1").fetchall()  # finish any pending result (register refuses otherwise)
    con.register("_zooql_task_queries", data)
    try:
        con.execute("INSERT INTO task_queries SELECT task, idx::INTEGER, query_id, query::JSON FROM _zooql_task_queries")
    finally:
        con.unregister("_zooql_task_queries")
    return old is not None, int(dropped)


# ==== catalog helpers (binder) ================================================================

def task_rows(con) -> dict[str, dict]:
    """All tasks by name (an old hub without the tables has none)."""
    try:
        rows = con.execute("SELECT name, kind, path, evaluator, n_queries, fingerprint, info FROM tasks").fetchall()
    except Exception:
        return {}
    cols = ("name", "kind", "path", "evaluator", "n_queries", "fingerprint", "info")
    out = {}
    for r in rows:
        d = dict(zip(cols, r))
        d["info"] = json.loads(d["info"]) if d["info"] else {}
        out[d["name"]] = d
    return out


def recorded_datasets(con) -> list[str]:
    return [r[0] for r in con.execute("SELECT DISTINCT dataset FROM outcomes ORDER BY 1").fetchall()]


def recorded_pool(con, dataset: str, models: list[str]) -> tuple[list[str], list[str], int]:
    """(shared query ids sorted, models without any outcome, size of the union of query ids)."""
    import pyarrow as pa

    con.execute("SELECT 1").fetchall()  # finish any pending result (register refuses otherwise)
    con.register("_zooql_pm", pa.table({"model": pa.array(models, pa.string())}))
    try:
        base = ("FROM outcomes o JOIN _zooql_pm m ON m.model = o.model WHERE o.dataset = ?")
        have = {r[0] for r in con.execute(f"SELECT DISTINCT o.model {base}", [dataset]).fetchall()}
        union = con.execute(f"SELECT count(DISTINCT o.query_id) {base}", [dataset]).fetchall()[0][0]
        shared = [r[0] for r in con.execute(
            f"SELECT o.query_id {base} GROUP BY o.query_id HAVING count(DISTINCT o.model) = ? "
            f"ORDER BY o.query_id", [dataset, len(models)]).fetchall()]
    finally:
        con.unregister("_zooql_pm")
    missing = [m for m in models if m not in have]
    return shared, missing, int(union)
