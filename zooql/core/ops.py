"""Operators of the model registry and catalog statements (foundation issue).

Operators that need torch import the runtime lazily, inside ``run``, so that planning
and EXPLAIN never load it.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from zooql.plan.nodes import ExecContext, Expr, Operator, Rows
from zooql.errors import BindError, ExecutionError
from zooql.core import import_keys as IK

NAME_ONLY_PREFIXES = ("hf:", "name:", "api:")


def is_name_only(source: str) -> bool:
    kind = source.split(":", 1)[0].lower() + ":"
    return kind not in ("timm:", "open_clip:", "torchscript:", "python:")


def _read_labels_file(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f if line.strip()]
    except OSError as exc:
        raise ExecutionError(f"cannot read labels file {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, ValueError) as exc:  # not UTF-8 text; a NUL in the path
        raise ExecutionError(f"cannot read labels file {path!r}: {exc}") from None


# ---- ADD MODEL / ADD MODELS FROM ------------------------------------------------------------

@dataclass(frozen=True)
class ModelValues(Operator):
    """Models given inline in the statement."""

    specs: tuple = ()

    def explain_params(self):
        names = [s["name"] for s in self.specs]
        return {"models": len(self.specs), "names": names if len(names) <= 5 else None}

    def run(self, ctx, inputs):
        return Rows(["spec"], [(s,) for s in self.specs])


_FILE_KEYS = {"name", "source", "checkpoint", "labels", "labels_file"}


@dataclass(frozen=True)
class ReadModelsFile(Operator):
    """Rows of a models .csv/.jsonl file (name, source, checkpoint, labels, tree, parent,
    downloads, task, family, description, preprocessing keys; other columns become tags)."""

    path: str = ""

    def explain_params(self):
        return {"path": os.path.basename(self.path)}

    def _records(self) -> list[dict]:
        if not os.path.exists(self.path):
            raise ExecutionError(f"models file not found: {self.path}")
        try:
            with open(self.path, encoding="utf-8") as f:
                if self.path.endswith(".csv"):
                    return [dict(r) for r in csv.DictReader(f)]
                out = []
                for lineno, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            out.append(json.loads(line))
                        except json.JSONDecodeError as exc:
                            raise ExecutionError(f"{self.path}:{lineno}: invalid JSON ({exc.msg})") from None
                return out
        except UnicodeDecodeError:
            raise ExecutionError(f"models file {self.path} is not UTF-8 text") from None

    def run(self, ctx, inputs):
        from zooql.core.binder import model_spec  # pure-python helper shared with ADD MODEL

        base = os.path.dirname(self.path)
        def resolve(p: str) -> str:
            if "\x00" in p:
                raise BindError(f"path {p[:60]!r} contains a NUL character")
            return os.path.normpath(os.path.join(base, os.path.expanduser(p)))
        recs = self._records()
        if recs and "source" not in recs[0] and "name" not in recs[0]:
            raise ExecutionError(f"{self.path}: needs a 'source' or 'name' column; found "
                                 f"{', '.join(recs[0])}")
        specs, seen = [], set()
        for i, r in enumerate(recs, 1):
            r = {k.strip().lower(): (v if v != "" else None) for k, v in r.items() if k}
            source = r.get("source") or ("hf:" + r["name"] if r.get("name") else None)
            labels = r.get("labels")
            if isinstance(labels, str):
                labels = json.loads(labels) if labels.startswith("[") else labels.split("|")
            opts = {k: _coerce(v) for k, v in r.items() if k not in _FILE_KEYS and v is not None}
            try:
                spec = model_spec(source, name=r.get("name"), checkpoint=r.get("checkpoint"),
                                  labels=labels, labels_file=r.get("labels_file"), options=opts,
                                  resolve=resolve)
            except BindError as exc:
                raise ExecutionError(f"{self.path} row {i}: {exc.message}") from None
            if spec["name"] in seen:
                raise ExecutionError(f"{self.path} row {i}: model {spec['name']!r} appears twice")
            seen.add(spec["name"])
            specs.append(spec)
        return Rows(["spec"], [(s,) for s in specs])


def _coerce(v):
    if not isinstance(v, str):
        return v
    for t in (int, float):
        try:
            return t(v)
        except ValueError:
            pass
    return v


@dataclass(frozen=True)
class InspectModels(Operator):
    """Instantiate each loadable model once to record parameter count, logits, input
    size and labels (weights are not copied). Name-only models are recorded as given."""

    child: Operator = None
    loadable: int | None = None
    name_only: int | None = None

    def explain_params(self):
        return {"instantiate": self.loadable, "name_only": self.name_only}

    def run(self, ctx, inputs):
        rows = inputs[0].rows
        out = []
        trust = bool(ctx.setting("trust_code", False))
        for i, (spec,) in enumerate(rows):
            spec = dict(spec)
            if spec["labels_file"]:
                spec["labels"] = _read_labels_file(spec["labels_file"])
            if is_name_only(spec["source"]):
                spec["info"] = {"loadable": False}
            else:
                from zooql.runtime import models as runtime  # torch lives here
                ctx.report(f"inspect {spec['name']}", i, len(rows))
                info = runtime.inspect_model(spec["source"], checkpoint=spec["checkpoint"],
                                             labels=spec["labels"], options=spec["preprocess"],
                                             trust_code=trust)
                spec["info"] = {"loadable": info.loadable, "params": info.param_count,
                                "num_logits": info.num_logits, "input_size": info.input_size,
                                "preprocess": info.preprocess, "labels": info.labels,
                                "family": info.family, "extra": info.extra}
            out.append((spec,))
        ctx.report("inspect", len(rows), len(rows))
        return Rows(["spec"], out)


@dataclass(frozen=True)
class InsertModels(Operator):
    """Insert the inspected models in one short transaction (the slow inspection ran
    before, without the catalog open read-write)."""

    child: Operator = None
    writes: ClassVar[bool] = True
    short_writes: ClassVar[bool] = True

    def explain_params(self):
        return {"table": "models"}

    def run(self, ctx, inputs):
        import pyarrow as pa

        con = ctx.begin_write()
        names, logit_rows = [], ([], [], [])
        for (spec,) in inputs[0].rows:
            info = spec.get("info", {})
            if con.execute("SELECT 1 FROM models WHERE name = ?", [spec["name"]]).fetchone():
                raise ExecutionError(f"model {spec['name']!r} already exists")
            labels = spec["labels"] or info.get("labels")
            num_logits = info.get("num_logits")
            if spec["labels"] and num_logits is not None and len(spec["labels"]) != num_logits:
                raise ExecutionError(f"model {spec['name']!r} has {num_logits} logits but "
                                     f"{len(spec['labels'])} labels were given")
            tags = dict(spec["tags"])
            if info.get("extra"):
                tags.setdefault("_runtime", info["extra"])
            cols = spec["columns"]
            preprocess = info.get("preprocess") or (spec["preprocess"] or None)
            row = con.execute(
                "INSERT INTO models (name, source, checkpoint, loadable, tree, parent, downloads, task, "
                "family, params, num_logits, input_size, preprocess, tags, description) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                [spec["name"], spec["source"], spec["checkpoint"], bool(info.get("loadable", False)),
                 cols.get("tree"), cols.get("parent"), cols.get("downloads"), cols.get("task"),
                 cols.get("family") or info.get("family"), info.get("params"), num_logits,
                 info.get("input_size"), json.dumps(preprocess) if preprocess else None,
                 json.dumps(tags), cols.get("description")]).fetchone()
            n = len(labels) if labels else (num_logits or 0)
            logit_rows[0].extend([row[0]] * n)
            logit_rows[1].extend(range(n))
            logit_rows[2].extend(labels if labels else [None] * n)
            names.append(spec["name"])
        if logit_rows[0]:  # one bulk insert keeps the write window short
            tbl = pa.table({"model_id": pa.array(logit_rows[0], pa.int32()), "idx": pa.array(logit_rows[1], pa.int32()),
                            "label": pa.array(logit_rows[2], pa.string())})
            con.register("_zooql_logits", tbl)
            try:
                con.execute("INSERT INTO logits SELECT model_id, idx, label FROM _zooql_logits")
            finally:
                con.unregister("_zooql_logits")
        msg = (f"added model {names[0]}" if len(names) == 1 else f"added {len(names)} models")
        notes = _honest_notes([(spec["name"], spec.get("info", {}).get("extra") or {})
                               for (spec,) in inputs[0].rows])
        return Rows(["model"], [(n,) for n in names], message=msg + (": " + "; ".join(notes) if notes else ""),
                    types=["VARCHAR"])


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

    def explain_params(self):
        return {"table": self.kind, "path": os.path.basename(self.path), "source": self.source,
                "on_conflict": self.on_conflict}

    def _read(self):
        import pyarrow as pa
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq

        if not os.path.exists(self.path):
            raise ExecutionError(f"file not found: {self.path}")
        try:
            if self.path.endswith(".parquet"):
                return pq.read_table(self.path)
            opts = pcsv.ParseOptions(delimiter="\t" if self.path.endswith(".tsv") else ",")
            return pcsv.read_csv(self.path, parse_options=opts,
                                 convert_options=pcsv.ConvertOptions(
                                     column_types={"query_id": pa.string(), "model": pa.string(),
                                                   "dataset": pa.string(), "metric": pa.string()}))
        except (pa.ArrowInvalid, OSError) as exc:
            raise ExecutionError(f"cannot read {self.path}: {exc}") from None

    def run(self, ctx, inputs):
        import pyarrow as pa

        table = self._read()
        required, optional = _IMPORT_COLUMNS[self.kind]
        names = {n.lower(): n for n in table.column_names}
        missing = [c for c in required if c not in names]
        if missing:
            raise ExecutionError(f"{os.path.basename(self.path)} lacks column(s) {', '.join(missing)}; "
                                 f"IMPORT {self.kind.upper()} needs {', '.join(required)}"
                                 + (f" (optional: {', '.join(optional)})" if optional else ""))
        cols = {}
        for c in required + optional:
            if c in names:
                arr = table.column(names[c])
                cols[c] = arr.cast(pa.float64()) if c == "score" else arr.cast(pa.string())
            else:
                cols[c] = pa.nulls(table.num_rows, pa.string())
        if self.kind == "evaluations" and self.source is not None:
            cols["source"] = pa.array([self.source] * table.num_rows, pa.string())
        fname = os.path.basename(self.path)
        if self.kind == "outcomes" and cols["score"].null_count:
            raise ExecutionError(f"{fname}: outcomes need a score in every row")
        # the file's line of each row (a header line, then one row per line) or its row number
        where, first = ("row", 1) if self.path.endswith(".parquet") else ("line", 2)
        cols["_line"] = pa.array(range(first, first + table.num_rows), pa.int64())
        data = pa.table(cols)
        collist = ", ".join(c for c in cols if c != "_line")
        ctx.con.register(IK.TMP, data)
        try:
            IK.check_file(ctx.con, self.kind, fname, where)
            keep, conflicts = IK.resolve_conflicts(ctx.con, self.kind, self.on_conflict, fname, where)
            n = ctx.con.execute(f"INSERT INTO {self.kind} ({collist}) SELECT {collist} FROM {IK.TMP} i"
                                + keep).fetchall()[0][0]
            ctx.con.execute(f"INSERT OR IGNORE INTO datasets (name) SELECT DISTINCT dataset FROM {IK.TMP}")
        finally:
            ctx.con.unregister(IK.TMP)
        for hook in ctx.hooks.get("on_import", ()):
            hook(ctx, self.kind, table)  # the whole file, side columns included
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
