"""Binder: AST -> bound statement. Substitutes parameters, evaluates literal values,
resolves names against the catalog (with "did you mean" suggestions), resolves paths
against the statement's base folder and compiles WHERE clauses to parameterised SQL.

Binders are tagged with :func:`zooql.plan.hooks.binds`; the method registry collects them.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Callable

from zooql.errors import BindError
from zooql.lang import ast as A
from zooql.core.params import check_literals, check_value
from zooql.core.where import Compiled, ExprCompiler, render, suggest
from zooql.plan.hooks import binds
from zooql.storage import catalog as C
from zooql.plan.logical import Logical
from zooql.storage.names import check_name
from zooql.runtime.executors import EXECUTORS, SHIP_MODES, SETTINGS as EXECUTOR_SETTINGS

PREPROCESS_KEYS = ("input_size", "channels", "mean", "std", "interpolation", "num_classes")
# Settings the core owns; methods declare theirs in their Method (BindContext.settings has all).
SETTINGS = {"trust_code": bool, "device": str, "lock_timeout": float, "inspect_workers": int,
            "inspect_batch": int, **EXECUTOR_SETTINGS}
# Value kinds of the models table's columns (schema.sql): WHERE compares like with like.
MODEL_COLUMN_KINDS = {"id": "number", "downloads": "number", "params": "number", "num_logits": "number",
                      "input_size": "number", "loadable": "bool", "added_at": "time",
                      **{c: "text" for c in ("name", "source", "checkpoint", "tree", "parent", "task",
                                             "family", "description")}}


@dataclass
class BindContext:
    con: Any                 # read connection to the catalog
    base_dir: str
    params: Any = None       # list/tuple (positional) or dict (named)
    dispatch: Any = None     # zooql.plan.hooks.Dispatch: binders of the core and every method
    settings: dict = dataclasses.field(default_factory=dict)   # setting -> type, core and methods
    objects: dict = dataclasses.field(default_factory=dict)    # kind -> core.objects.ObjectKind
    grammar: str = ""        # the full grammar text (HELP renders statements from it)
    relations: dict = dataclasses.field(default_factory=dict)  # method relations: name -> SQL (SELECT)
    parse: Callable | None = None    # text -> one statement (the full parser), for views
    generation: Any = None   # the catalog's generation (HubStore.generation); None: no statement cache

    # ---- catalog names (cached per statement) ----------------------------------------
    def models(self) -> list[str]:
        if not hasattr(self, "_models"):
            self._models = C.model_names(self.con)
        return self._models

    def has_model(self, name: str) -> bool:
        """Whether model ``name`` is registered (a point query; no list of every name)."""
        if hasattr(self, "_models"):
            return name in self._models
        return self.con.execute("SELECT 1 FROM models WHERE name = ?", [name]).fetchone() is not None

    def require_model(self, name: A.Name | str) -> str:
        value = name.value if isinstance(name, A.Name) else name
        if not self.has_model(value):
            raise BindError(f"unknown model {value!r}{suggest(value, C.similar_model_names(self.con, value))}")
        return value

    def path(self, value: str) -> str:
        if "\x00" in value:
            raise BindError(f"path {value[:60]!r} contains a NUL character")
        return os.path.normpath(os.path.join(self.base_dir, os.path.expanduser(value)))


# ---- parameters and literal values ---------------------------------------------------------

def substitute(node: Any, params: Any) -> Any:
    """Return ``node`` with every Param replaced by a Literal of its bound value."""
    if isinstance(node, A.Param):
        try:
            if isinstance(node.key, int):
                if isinstance(params, dict) or params is None:
                    raise KeyError
                value = params[node.key]
            else:
                if not isinstance(params, dict):
                    raise KeyError
                value = params[node.key]
        except (KeyError, IndexError, TypeError):
            what = f":{node.key}" if isinstance(node.key, str) else f"? #{node.key + 1}"
            raise BindError(f"no value given for parameter {what}") from None
        if isinstance(value, (list, tuple)):
            return A.TupleValue(tuple(A.Literal(v) for v in value), span=node.span)
        return A.Literal(value, span=node.span)
    if isinstance(node, tuple):
        return tuple(substitute(x, params) for x in node)
    if dataclasses.is_dataclass(node) and isinstance(node, A.Node):
        changes = {}
        for f in dataclasses.fields(node):
            v = getattr(node, f.name)
            nv = substitute(v, params)
            if nv is not v:
                changes[f.name] = nv
        return dataclasses.replace(node, **changes) if changes else node
    return node


def value_of(node: A.Node | None) -> Any:
    if node is None:
        return None
    if isinstance(node, A.Literal):
        return node.value
    if isinstance(node, A.TupleValue):
        return [value_of(x) for x in node.items]
    if isinstance(node, A.Name):
        return node.value
    raise BindError(f"expected a value, got {type(node).__name__}")


def int_of(v: Any, what: str, minimum: int = 1, *, integral_float: bool = False) -> int:
    """``v`` (an already evaluated value) as an integer ``>= minimum``, else a BindError
    "<what> must be an integer >= <minimum>". ``integral_float`` also admits ``2.0``."""
    if integral_float and isinstance(v, float) and v.is_integer():
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise BindError(f"{what} must be an integer >= {minimum}, got {v!r}")
    return v


def string_of(node: A.Node, what: str) -> str:
    v = value_of(node)
    if not isinstance(v, str):
        raise BindError(f"{what} must be a 'string', got {v!r}")
    return v


def options_dict(options: tuple) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for opt in options:
        key = opt.key.lower() if "." not in opt.key else opt.key
        if key in out:
            raise BindError(f"option {key!r} given twice")
        out[key] = value_of(opt.value)
    return out


# ---- bound statements ---------------------------------------------------------------------

@dataclass(frozen=True)
class BoundAddModels(Logical):
    specs: tuple = ()            # tuple of dicts (inline ADD MODEL)
    path: str | None = None      # ADD MODELS FROM file


@dataclass(frozen=True)
class BoundShow(Logical):
    what: str                    # models | trees | datasets
    where: Compiled | None = None
    where_text: str | None = None
    order: tuple = ()            # tuple of (sql, params, desc, text)
    limit: int | None = None


@dataclass(frozen=True)
class BoundName(Logical):
    what: str                    # describe_model | describe_dataset | drop_model
    name: str
    if_exists: bool = False


@dataclass(frozen=True)
class BoundAlter(Logical):
    what: str                    # model | dataset
    name: str
    assignments: tuple           # tuple of (key, value)


@dataclass(frozen=True)
class BoundImport(Logical):
    kind: str
    path: str
    source: str | None
    on_conflict: str = "error"


@dataclass(frozen=True)
class BoundSet(Logical):
    key: str
    value: Any


@dataclass(frozen=True)
class BoundExplain(Logical):
    statement: Any
    analyze: bool
    verbose: bool = False


def model_spec(source: str, *, name: str | None, checkpoint: str | None, labels, labels_file,
               options: dict, resolve: Callable[[str], str]) -> dict:
    """Normalise one model to register (from ADD MODEL or a models file row)."""
    if not source or not isinstance(source, str):
        raise BindError("a model needs a 'source' such as 'timm:resnet18'")
    if name is None:
        tail = source.split(":", 1)[1] if ":" in source else source
        if source.startswith("torchscript:") or source.startswith("python:"):
            tail = os.path.splitext(os.path.basename(tail.split(":")[0]))[0]
        name = tail.replace(":", "-")
    check_name(name, "model")
    spec = {"name": name, "source": source, "checkpoint": resolve(checkpoint) if checkpoint else None,
            "labels": list(labels) if labels is not None else None,
            "labels_file": resolve(labels_file) if labels_file else None,
            "columns": {}, "preprocess": {}, "tags": {}}
    if source.startswith("torchscript:"):
        spec["source"] = "torchscript:" + resolve(source.split(":", 1)[1])
    for key, val in options.items():
        k = key.lower()
        if k in C.SETTABLE_MODEL_COLUMNS:
            if k == "downloads" and val is not None:
                try:
                    val = int(val)
                except (TypeError, ValueError, OverflowError):
                    raise BindError(f"downloads must be an integer, got {val!r}") from None
                check_value(val, "downloads")
            spec["columns"][k] = val
        elif k in PREPROCESS_KEYS:
            spec["preprocess"][k] = val
        else:
            spec["tags"][key] = val
    return spec


@binds(A.AddModel)
def _bind_add(stmt: A.AddModel, bc: BindContext):
    source = string_of(stmt.source, "model source")
    name = value_of(stmt.alias) if stmt.alias else None
    labels = [str(value_of(x)) for x in stmt.labels] if stmt.labels else None
    spec = model_spec(source, name=name,
                      checkpoint=string_of(stmt.checkpoint, "FROM checkpoint") if stmt.checkpoint else None,
                      labels=labels,
                      labels_file=string_of(stmt.labels_file, "LABELS FROM") if stmt.labels_file else None,
                      options=options_dict(stmt.options), resolve=bc.path)
    if spec["name"] in bc.models():
        raise BindError(f"model {spec['name']!r} already exists (use AS <name> to register it "
                        f"under another name, or DROP MODEL first)")
    return BoundAddModels(specs=(spec,))


@binds(A.AddModels)
def _bind_add_many(stmt: A.AddModels, bc: BindContext):
    path = bc.path(string_of(stmt.path, "models file"))
    if not path.endswith((".csv", ".jsonl", ".json")):
        raise BindError(f"models file must be .csv or .jsonl, got {os.path.basename(path)!r}")
    return BoundAddModels(path=path)


def _model_compiler(bc: BindContext) -> ExprCompiler:
    cols = {c: c for c in C.MODEL_COLUMNS if c not in ("preprocess", "tags")}
    return ExprCompiler(cols, json_column="tags", tag_keys=lambda: C.tag_keys(bc.con), table="models",
                        types=MODEL_COLUMN_KINDS)


def bind_model_filter(where: A.Node | None, bc: BindContext) -> tuple[Compiled | None, str | None]:
    """Public helper for later statements that filter models (FIND, DISCOVER, ...)."""
    if where is None:
        return None, None
    return _model_compiler(bc).compile(where, condition=True), render(where)


@binds(A.ShowModels)
def _bind_show_models(stmt: A.ShowModels, bc: BindContext):
    where, text = bind_model_filter(stmt.where, bc)
    order = []
    for item in stmt.order:
        comp = _model_compiler(bc).compile(item.expr)
        order.append((comp.sql, tuple(comp.params), item.descending, render(item.expr)))
    limit = None
    if stmt.limit is not None:
        limit = value_of(stmt.limit)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise BindError(f"LIMIT must be a non-negative integer, got {limit!r}")
    return BoundShow("models", where, text, tuple(order), limit)


@binds(A.ShowTrees)
def _bind_show_trees(stmt, bc):
    return BoundShow("trees")


@binds(A.ShowDatasets)
def _bind_show_datasets(stmt, bc):
    return BoundShow("datasets")


@binds(A.DescribeModel)
def _bind_describe(stmt: A.DescribeModel, bc: BindContext):
    return BoundName("describe_model", bc.require_model(stmt.name))


@binds(A.DescribeDataset)
def _bind_describe_dataset(stmt: A.DescribeDataset, bc: BindContext):
    name = value_of(stmt.name)
    names = C.dataset_names(bc.con)
    if name not in names:
        raise BindError(f"unknown dataset {name!r}{suggest(name, names)}")
    return BoundName("describe_dataset", name)


@binds(A.DropModel)
def _bind_drop(stmt: A.DropModel, bc: BindContext):
    if stmt.if_exists and stmt.name.value not in bc.models():
        return BoundName("drop_model", stmt.name.value, True)
    return BoundName("drop_model", bc.require_model(stmt.name))


@binds(A.AlterModel)
def _bind_alter(stmt: A.AlterModel, bc: BindContext):
    name = bc.require_model(stmt.name)
    pairs = []
    for opt in stmt.assignments:
        key = opt.key
        low = key.lower()
        if low in ("name", "id", "source", "loadable", "params", "num_logits", "input_size",
                   "preprocess", "added_at", "checkpoint"):
            raise BindError(f"column {low!r} cannot be changed with ALTER MODEL "
                            f"(settable: {', '.join(C.SETTABLE_MODEL_COLUMNS)}, or any tag)")
        pairs.append((low if low in C.SETTABLE_MODEL_COLUMNS else key, value_of(opt.value)))
    return BoundAlter("model", name, tuple(pairs))


@binds(A.AlterDataset)
def _bind_alter_dataset(stmt: A.AlterDataset, bc: BindContext):
    name = value_of(stmt.name)
    pairs = tuple((opt.key.lower() if opt.key.lower() in C.DATASET_COLUMNS else opt.key,
                   value_of(opt.value)) for opt in stmt.assignments)
    return BoundAlter("dataset", name, pairs)


@binds(A.Import)
def _bind_import(stmt: A.Import, bc: BindContext):
    path = bc.path(string_of(stmt.path, "IMPORT file"))
    if not path.endswith((".csv", ".parquet", ".tsv")):
        raise BindError(f"IMPORT reads .csv, .tsv or .parquet files, got {os.path.basename(path)!r}")
    return BoundImport(stmt.kind, path, value_of(stmt.source) if stmt.source is not None else None,
                       stmt.on_conflict)


@binds(A.SetOption)
def _bind_set(stmt: A.SetOption, bc: BindContext):
    known = {**SETTINGS, **bc.settings}
    if stmt.key not in known:
        raise BindError(f"unknown setting {stmt.key!r}{suggest(stmt.key, known)} "
                        f"(settings: {', '.join(sorted(known))})")
    value = value_of(stmt.value)
    want = known[stmt.key]
    if want is bool and isinstance(value, str) and value.lower() in ("true", "false", "on", "off"):
        value = value.lower() in ("true", "on")
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if value is not None and not isinstance(value, want):
        raise BindError(f"setting {stmt.key} expects a {want.__name__}, got {value!r}")
    if stmt.key in ("inspect_workers", "inspect_batch") and value is not None and (
            isinstance(value, bool) or not 1 <= value <= 1024):
        raise BindError(f"setting {stmt.key} is a number of {'processes' if stmt.key == 'inspect_workers' else 'models'}, "
                        f"1 to 1024; got {value!r}")
    if stmt.key == "lock_timeout" and value is not None and not 0 <= value <= 86400:
        raise BindError(f"setting lock_timeout is seconds to wait for another writer, 0 to 86400; got {value!r}")
    _check_executor_setting(stmt.key, value)
    return BoundSet(stmt.key, value)


def _check_executor_setting(key: str, value) -> None:
    if key == "executor" and value is not None and str(value).lower() not in EXECUTORS:
        raise BindError(f"setting executor is one of {', '.join(map(repr, EXECUTORS))}; got {value!r}")
    if key == "ray_workers" and value is not None and value < 1:
        raise BindError(f"setting ray_workers is the number of Ray actors, at least 1; got {value!r}")
    if key == "local_workers" and value is not None and not 0 <= value <= 256:
        raise BindError(f"setting local_workers is a number of worker processes (0: auto, 1: none, this process "
                        f"only), 0 to 256; got {value!r}")
    if key == "ray_ship_files" and value is not None and str(value).lower() not in SHIP_MODES:
        raise BindError(f"setting ray_ship_files is one of {', '.join(map(repr, SHIP_MODES))}; got {value!r}")
    if key == "ray_gpus_per_worker" and value is not None and value < 0:
        raise BindError(f"setting ray_gpus_per_worker must be >= 0; got {value!r}")


def bind(stmt: A.Statement, bc: BindContext):
    stmt = substitute(stmt, bc.params)
    check_literals(stmt)
    if isinstance(stmt, A.Explain):
        return BoundExplain(bind(stmt.statement, bc), stmt.analyze, stmt.verbose)
    fn = bc.dispatch.binder(type(stmt)) if bc.dispatch is not None else None
    if fn is None:  # pragma: no cover - every grammar statement has a binder
        raise BindError(f"statement {type(stmt).__name__.upper()} is not available in this build")
    return fn(stmt, bc)
