"""Operators of the model registry and catalog statements (foundation issue).

Operators that need torch import the runtime lazily, inside ``run``, so that planning
and EXPLAIN never load it.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, ClassVar

from zooql.plan.nodes import Expr, Operator, Rows
from zooql.errors import ExecutionError
from zooql.core import import_keys as IK

NAME_ONLY_PREFIXES = ("hf:", "name:", "api:")


def is_name_only(source: str) -> bool:
    kind = source.split(":", 1)[0].lower() + ":"
    return kind not in ("timm:", "open_clip:", "torchscript:", "python:")


# ---- ADD MODEL / ADD MODELS FROM ------------------------------------------------------------
# Rows between the three operators: one value, a models_file.Staged (an Arrow table of the
# name-only rows ready to insert, plus the loadable rows' specs).

#: models inspected per commit (SET inspect_batch = n)
INSPECT_BATCH = 32


@dataclass(frozen=True)
class ModelValues(Operator):
    """Models given inline in the statement."""

    specs: tuple = ()

    def explain_params(self):
        names = [s["name"] for s in self.specs]
        return {"models": len(self.specs), "names": names if len(names) <= 5 else None}

    def run(self, ctx, inputs):
        from zooql.core import models_file as MF

        name_only, loadable = [], []
        for i, s in enumerate(self.specs, 1):
            s = dict(s)
            if s["labels_file"]:
                s["labels"] = MF.read_labels(s["labels_file"])
            (name_only if is_name_only(s["source"]) else loadable).append((i, s))
        return Rows(["staged"], [(MF.Staged(None, table=MF.spec_rows(name_only), loadable=loadable),)])


@dataclass(frozen=True)
class ReadModelsFile(Operator):
    """Rows of a models .csv/.jsonl file (name, source, checkpoint, labels, tree, parent,
    downloads, task, family, description, preprocessing keys; other columns become tags),
    read and validated as whole columns (zooql.core.models_file); rows already registered
    with the same source are dropped (a rerun resumes)."""

    path: str = ""

    def explain_params(self):
        return {"path": os.path.basename(self.path)}

    def run(self, ctx, inputs):
        from zooql.core import models_file as MF

        mf = MF.ModelsFile(self.path)
        staged = MF.stage(mf)
        MF.drop_registered(staged, ctx.con, mf.where)
        staged.where = mf.where
        return Rows(["staged"], [(staged,)])


def _inspect_settings(ctx) -> tuple[int, int]:
    from zooql.runtime.inspect_pool import default_workers

    workers = ctx.setting("inspect_workers", None) or default_workers()
    return int(workers), int(ctx.setting("inspect_batch", None) or INSPECT_BATCH)


@dataclass(frozen=True)
class InspectModels(Operator):
    """Instantiate each loadable model once to record parameter count, logits, input
    size and labels (weights are not copied), in a pool of worker processes
    (``SET inspect_workers``) or on the Ray actors (``SET executor = 'ray'``); every ``inspect_batch`` models commit in one short
    transaction, so an interrupted ADD MODELS FROM resumes. Name-only models pass through."""

    child: Operator = None
    loadable: int | None = None
    name_only: int | None = None
    writes: ClassVar[bool] = True
    short_writes: ClassVar[bool] = True
    runs_models: ClassVar[bool] = True

    def explain_params(self):
        return {"instantiate": self.loadable, "name_only": self.name_only}

    def executor_params(self, executor):
        return executor if executor and self.loadable != 0 else None

    def run(self, ctx, inputs):
        from zooql.core import models_file as MF
        from zooql.runtime.inspect_pool import inspect_for

        staged = inputs[0].rows[0][0]
        todo = staged.loadable
        if not todo:
            return inputs[0]
        trust = bool(ctx.setting("trust_code", False))
        workers, batch = _inspect_settings(ctx)
        where = getattr(staged, "where", None) or (lambda row: "")
        done: list = []
        jobs = [{"source": s["source"], "checkpoint": s["checkpoint"], "labels": s["labels"],
                 "options": s["preprocess"], "trust_code": trust} for _, s in todo]

        def flush(final: bool) -> None:
            if done:
                MF.insert_staged(ctx.begin_write(), MF.spec_rows(done))
                staged.added.append([s["name"] for _, s in done])
                staged.notes.extend((s["name"], s["info"].get("extra") or {}) for _, s in done)
                done.clear()
                if not final:
                    ctx.commit()

        def on_result(i: int, info: dict | None, error: Exception | None) -> None:
            row, spec = todo[i]
            if error is not None:
                flush(final=False)  # the models before it stay registered: a rerun resumes
                at = where(row)
                if not at:  # inline ADD MODEL: its own error
                    raise error
                n = sum(len(a) for a in staged.added)
                raise type(error)(f"{at}: model {spec['name']!r}: {getattr(error, 'message', error)}"
                                  + (f" ({n} model(s) before it were registered; a rerun skips them)" if n else ""))
            spec = dict(spec, info={"loadable": info["loadable"], "params": info["param_count"],
                                    "num_logits": info["num_logits"], "input_size": info["input_size"],
                                    "preprocess": info["preprocess"], "labels": info["labels"],
                                    "family": info["family"], "extra": info["extra"]})
            done.append((row, spec))
            ctx.report(f"inspect {spec['name']}", i + 1, len(todo))
            if len(done) >= batch:
                flush(final=False)

        ctx.report("inspect", 0, len(todo))
        inspect_for(ctx, jobs, workers, on_result)
        flush(final=True)
        staged.loadable = []
        return inputs[0]


@dataclass(frozen=True)
class InsertModels(Operator):
    """Insert the name-only models with one statement per table (models, logits) in one
    short transaction (the slow inspection ran before, without the catalog open
    read-write)."""

    child: Operator = None
    writes: ClassVar[bool] = True
    short_writes: ClassVar[bool] = True

    def explain_params(self):
        return {"table": "models"}

    def run(self, ctx, inputs):
        import pyarrow as pa

        from zooql.core import models_file as MF

        staged = inputs[0].rows[0][0]
        if staged.table.num_rows:
            MF.insert_staged(ctx.begin_write(), staged.table)
        names = pa.chunked_array([pa.array(a, pa.string()) for a in staged.added]
                                 + [staged.table.column("name").combine_chunks()], pa.string())
        n = len(names)
        msg = f"added model {names[0].as_py()}" if n == 1 else f"added {n} models"
        if staged.skipped:
            msg += f" ({staged.skipped} already registered with the same source, skipped)"
        notes = _honest_notes(staged.notes) if staged.notes else []
        return Rows(["model"], table=pa.table({"model": names}),
                    message=msg + (": " + "; ".join(notes) if notes else ""), types=["VARCHAR"])


def weights_note(extra: dict) -> str | None:
    """What DESCRIBE and ADD MODEL say about where a loadable model's weights came from."""
    w = (extra or {}).get("weights")
    return {"random-init": "random-init weights (no checkpoint given)",
            "pretrained-cache": f"pretrained weights from the local cache ({extra.get('weights_file')})",
            "checkpoint": "weights from the checkpoint (FROM)",
            "torchscript": "weights inside the TorchScript file"}.get(w, w)


def _honest_notes(specs: list[tuple[str, dict]]) -> list[str]:
    """Defaults a user may not expect: random-init weights, assumed preprocessing."""
    out = []
    who = (lambda n: "") if len(specs) == 1 else (lambda n: f"{n}: ")
    rand = [n for n, e in specs if e.get("weights") == "random-init"]
    if rand:
        out.append(("" if len(specs) == 1 else f"{', '.join(rand[:5])}{', ...' if len(rand) > 5 else ''}: ")
                   + "random-init weights (no checkpoint given)")
    for n, e in specs[:5]:
        if e.get("preprocess_defaults"):
            out.append(f"{who(n)}preprocessing defaults applied ({e['preprocess_defaults']}; "
                       f"override with WITH (input_size = ..., channels = ..., mean = ..., std = ...))")
    return out


# ---- reads -------------------------------------------------------------------------------

@dataclass(frozen=True)
class CatalogScan(Operator):
    """A query over catalog tables, compiled to one parameterised DuckDB statement."""

    table: str = ""
    sql: str = ""
    params: tuple = ()
    columns: tuple = ()
    filter: str | None = None
    order: str | None = None
    limit: int | None = None

    def explain_params(self):
        return {"table": self.table, "filter": Expr(self.filter) if self.filter else None,
                "order": Expr(self.order) if self.order else None, "limit": self.limit}

    def run(self, ctx, inputs):
        table = ctx.con.sql(self.sql, params=list(self.params)).to_arrow_table()
        return Rows(list(self.columns), table=table.rename_columns(list(self.columns)))


PROPERTY_TYPES = ("VARCHAR", "VARCHAR")


def property_text(v):
    """A DESCRIBE value as text: booleans as true/false (as the language writes them)."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


@dataclass(frozen=True)
class DescribeModel(Operator):
    model: str = ""

    def explain_params(self):
        return {"model": self.model}

    def run(self, ctx, inputs):
        from zooql.storage import catalog as C

        m = C.model_row(ctx.con, self.model)
        labels = C.model_labels(ctx.con, m["id"])
        known = [x for x in labels if x is not None]
        rows = [(k, m[k]) for k in ("name", "source", "checkpoint", "loadable", "tree", "parent",
                                    "downloads", "task", "family", "params", "num_logits",
                                    "input_size", "description", "added_at")]
        rows.append(("preprocess", json.dumps(m["preprocess"]) if m["preprocess"] else None))
        rt = m["tags"].get("_runtime") or {}
        if rt.get("weights"):
            rows.append(("weights", weights_note(rt)))
        if rt.get("preprocess_defaults"):
            rows.append(("preprocess_defaults", rt["preprocess_defaults"]))
        rows.append(("tags", json.dumps({k: v for k, v in m["tags"].items() if not k.startswith("_")})))
        shown = ", ".join(known[:10]) + (f", ... ({len(known)} labels)" if len(known) > 10 else "")
        rows.append(("labels", shown or None))
        for hook in ctx.hooks.get("on_describe", ()):
            rows.extend(hook(ctx, m))
        return Rows(["property", "value"], [(k, property_text(v)) for k, v in rows], types=PROPERTY_TYPES)


@dataclass(frozen=True)
class DescribeDataset(Operator):
    dataset: str = ""

    def explain_params(self):
        return {"dataset": self.dataset}

    def run(self, ctx, inputs):
        con, d = ctx.con, self.dataset
        meta = con.execute("SELECT description, domain, tags FROM datasets WHERE name = ?", [d]).fetchone()
        ev = con.execute("SELECT count(*), count(DISTINCT model), string_agg(DISTINCT metric, ', ' "
                         "ORDER BY metric) FROM evaluations WHERE dataset = ?", [d]).fetchone()
        oc = con.execute("SELECT count(*), count(DISTINCT model), count(DISTINCT query_id) FROM "
                         "outcomes WHERE dataset = ?", [d]).fetchone()
        rows = [("name", d), ("description", meta[0] if meta else None),
                ("domain", meta[1] if meta else None), ("tags", meta[2] if meta else None),
                ("evaluations", ev[0]), ("evaluated_models", ev[1]), ("metrics", ev[2]),
                ("outcomes", oc[0]), ("outcome_models", oc[1]), ("queries", oc[2])]
        return Rows(["property", "value"], [(k, property_text(v)) for k, v in rows], types=PROPERTY_TYPES)


# ---- writes ------------------------------------------------------------------------------

@dataclass(frozen=True)
class DropModel(Operator):
    model: str = ""
    if_exists: bool = False
    writes: ClassVar[bool] = True

    def explain_params(self):
        return {"model": self.model, "if_exists": self.if_exists or None}

    def run(self, ctx, inputs):
        row = ctx.con.execute("SELECT id FROM models WHERE name = ?", [self.model]).fetchone()
        if row is None:
            if self.if_exists:
                return Rows(["model"], [], message=f"model {self.model} does not exist; nothing dropped",
                            types=["VARCHAR"])
            raise ExecutionError(f"model {self.model!r} does not exist")
        for hook in ctx.hooks.get("on_drop", ()):
            hook(ctx, row[0], self.model)
        ctx.con.execute("DELETE FROM logits WHERE model_id = ?", [row[0]])
        ctx.con.execute("DELETE FROM models WHERE id = ?", [row[0]])
        return Rows(["model"], [(self.model,)], message=f"dropped model {self.model}", types=["VARCHAR"])


@dataclass(frozen=True)
class AlterModel(Operator):
    model: str = ""
    assignments: tuple = ()
    writes: ClassVar[bool] = True

    def explain_params(self):
        return {"model": self.model, "set": [f"{k}={v!r}" for k, v in self.assignments]}

    def run(self, ctx, inputs):
        from zooql.storage import catalog as C

        m = C.model_row(ctx.con, self.model)
        tags = dict(m["tags"])
        for key, value in self.assignments:
            if key in C.SETTABLE_MODEL_COLUMNS:
                if key == "downloads" and value is not None and not isinstance(value, int):
                    raise ExecutionError(f"downloads must be an integer, got {value!r}")
                ctx.con.execute(f"UPDATE models SET {key} = ? WHERE id = ?", [value, m["id"]])
            else:
                k = key[5:] if key.lower().startswith("tags.") else key
                if value is None:
                    tags.pop(k, None)
                else:
                    tags[k] = value
        ctx.con.execute("UPDATE models SET tags = ? WHERE id = ?", [json.dumps(tags), m["id"]])
        return Rows(["model"], [(self.model,)], message=f"altered model {self.model}", types=["VARCHAR"])


@dataclass(frozen=True)
class AlterDataset(Operator):
    dataset: str = ""
    assignments: tuple = ()
    writes: ClassVar[bool] = True

    def explain_params(self):
        return {"dataset": self.dataset, "set": [f"{k}={v!r}" for k, v in self.assignments]}

    def run(self, ctx, inputs):
        con = ctx.con
        row = con.execute("SELECT description, domain, tags FROM datasets WHERE name = ?",
                          [self.dataset]).fetchone()
        desc, domain, tags = (row[0], row[1], json.loads(row[2]) if row and row[2] else {}) if row else (None, None, {})
        for key, value in self.assignments:
            if key == "description":
                desc = value
            elif key == "domain":
                domain = value
            else:
                tags[key[5:] if key.lower().startswith("tags.") else key] = value
        con.execute("INSERT OR REPLACE INTO datasets VALUES (?, ?, ?, ?)",
                    [self.dataset, desc, domain, json.dumps(tags)])
        return Rows(["dataset"], [(self.dataset,)], message=f"altered dataset {self.dataset}", types=["VARCHAR"])


_IMPORT_COLUMNS = {
    "evaluations": (("model", "dataset", "metric", "score"), ("split", "source")),
    "outcomes": (("model", "dataset", "query_id", "score"), ()),
}


@dataclass(frozen=True)
class ImportTable(Operator):
    kind: str = ""
    path: str = ""
    source: str | None = None
    on_conflict: str = "error"
    writes: ClassVar[bool] = True
    short_writes: ClassVar[bool] = True  # the file is read and checked before the catalog opens read-write

    def explain_params(self):
        return {"table": self.kind, "path": os.path.basename(self.path), "source": self.source,
                "on_conflict": self.on_conflict}

    def _read(self):
        return IK.read_file(self.path)

    def run(self, ctx, inputs):
        table, where, line_of = self._read()
        required, optional = _IMPORT_COLUMNS[self.kind]
        names = {n.lower(): n for n in table.column_names}
        missing = [c for c in required if c not in names]
        fname = os.path.basename(self.path)
        if missing:
            raise ExecutionError(f"{fname} lacks column(s) {', '.join(missing)}; "
                                 f"IMPORT {self.kind.upper()} needs {', '.join(required)}"
                                 + (f" (optional: {', '.join(optional)})" if optional else ""))
        source = self.source if self.kind == "evaluations" else None
        data, select, params, datasets = IK.prepare(table, self.kind, required, optional, source, fname, where, line_of)
        collist = ", ".join(select)
        ctx.con.register(IK.TMP, data)   # read-only: the conflicts are counted before the write
        try:
            conflicts = IK.count_conflicts(ctx.con, self.kind, self.on_conflict, fname, where, line_of)
        finally:
            ctx.con.unregister(IK.TMP)
        side = IK.typed_side_columns(table, set(required + optional)) if ctx.hooks.get("on_import") else None
        con = IK.quiet(ctx.begin_write())  # one short transaction: delete (REPLACE), insert, hooks
        con.register(IK.TMP, data)
        try:
            keep = IK.resolve_conflicts(con, self.kind, self.on_conflict, conflicts)
            n = con.execute(f"INSERT INTO {self.kind} ({collist}) SELECT {', '.join(select.values())} "
                            f"FROM {IK.TMP} i" + keep, params).fetchall()[0][0]
            con.execute("INSERT OR IGNORE INTO datasets (name) SELECT unnest(?)", [datasets]).fetchall()
        finally:
            con.unregister(IK.TMP)
        for hook in ctx.hooks.get("on_import", ()):
            hook(ctx, self.kind, side)  # the whole file, side columns included
        msg = f"imported {n} {self.kind} from {fname}"
        if conflicts:
            msg += (f" ({conflicts} stored row(s) replaced)" if self.on_conflict == "replace"
                    else f" ({conflicts} row(s) already stored, skipped)")
        return Rows(["imported"], [(n,)], message=msg)


# Called after an import inside its transaction with (ctx, kind, the pyarrow table read).


@dataclass(frozen=True)
class SetOption(Operator):
    key: str = ""
    value: Any = None
    writes: ClassVar[bool] = True

    def explain_params(self):
        return {"key": self.key, "value": self.value}

    def run(self, ctx, inputs):
        ctx.con.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", [self.key, json.dumps(self.value)])
        ctx.session.pop(self.key, None)
        return Rows(["key", "value"], [(self.key, self.value)], message=f"set {self.key} = {self.value!r}")
