"""ADD MODELS FROM a file, vectorised: the file is read by DuckDB (every column as text)
into an in-memory database, validated as whole columns, and turned into an Arrow table of
ready-to-insert ``models`` rows; the catalog is not opened read-write here.

* Name-only rows (``hf:`` and other sources nothing loads) are normalised in SQL: names,
  sources, ``downloads``, preprocessing keys and tags (unknown columns, as JSON: text that
  reads as an integer or a decimal number is stored as a number) become columns of one
  Arrow table, inserted later with one statement per table.
* Loadable rows (``timm:``, ``open_clip:``, ``torchscript:``, ``python:``) become one spec
  each (:func:`zooql.core.binder.model_spec`): they are instantiated one by one anyway.
* An error names the first bad row (``<file> row <i>``: the i-th record) and its line in
  the file; the exact wording of a row's error comes from the per-row rules of ADD MODEL
  (re-run on that one row), so the file and the statement say the same thing.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field

from zooql.core.import_keys import csv_record_line, memory_db, quiet
from zooql.errors import BindError, ExecutionError

FILE_KEYS = ("name", "source", "checkpoint", "labels", "labels_file")
TEXT_COLUMNS = ("tree", "parent", "task", "family", "description")
PREPROCESS_KEYS = ("input_size", "channels", "mean", "std", "interpolation", "num_classes")
LOADABLE_KINDS = ("timm", "open_clip", "torchscript", "python")
_INT_RE = r"^\s*[+-]?[0-9]+\s*$"
_FLOAT_RE = r"^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$"
#: the columns of a staged ``models`` row (Arrow), in insert order
MODEL_FIELDS = ("name", "source", "checkpoint", "loadable", "tree", "parent", "downloads", "task",
                "family", "params", "num_logits", "input_size", "preprocess", "tags", "description")


@dataclass
class Staged:
    """A models file (or inline ADD MODEL) ready to register."""

    path: str | None
    table: object = None            # pyarrow Table: name-only rows (MODEL_FIELDS + labels, _row)
    loadable: list = field(default_factory=list)   # [(row, spec)] to instantiate, file order
    skipped: int = 0                # rows already registered with the same source (resume)
    added: list = field(default_factory=list)      # pyarrow arrays of names added so far
    notes: list = field(default_factory=list)      # (name, runtime extra) of inspected models
    where: object = None            # row -> "<file> row <i> (line <l>)" (a file's rows)


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def coerce(v):
    """A file's text value as the value a tag or preprocessing key stores (int, float, text)."""
    if not isinstance(v, str):
        return v
    for t in (int, float):
        try:
            return t(v)
        except ValueError:
            pass
    return v


def _json_of(text: str) -> str:
    """SQL: a text value as JSON text, numbers as numbers (the rule of :func:`coerce`)."""
    return (f"CASE WHEN regexp_matches({text}, '{_INT_RE}') AND TRY_CAST(trim({text}) AS BIGINT) IS NOT NULL "
            f"THEN CAST(TRY_CAST(trim({text}) AS BIGINT) AS VARCHAR) "
            f"WHEN regexp_matches({text}, '{_FLOAT_RE}') THEN CAST(to_json(TRY_CAST(trim({text}) AS DOUBLE)) AS VARCHAR) "
            f"ELSE CAST(to_json({text}) AS VARCHAR) END")


class ModelsFile:
    """One models file read into ``mem`` (an in-memory DuckDB) as the Arrow table ``raw``."""

    def __init__(self, path: str):
        import duckdb

        self.path = path
        self.jsonl = not path.endswith(".csv")
        if not os.path.exists(path):
            raise ExecutionError(f"models file not found: {path}")
        self.mem = memory_db()
        try:
            self.keys = self._read_jsonl() if self.jsonl else self._read_csv()
        except UnicodeDecodeError:
            raise ExecutionError(f"models file {path} is not UTF-8 text") from None
        except duckdb.Error as exc:
            msg = str(exc)
            if "unicode" in msg.lower() or "utf-8" in msg.lower():
                raise ExecutionError(f"models file {path} is not UTF-8 text") from None
            raise ExecutionError(f"cannot read models file {path}: {' '.join(msg.split()[:40])}") from None

    # ---- reading -----------------------------------------------------------------------
    def _read_csv(self) -> dict:
        import pyarrow as pa

        with open(self.path, encoding="utf-8-sig", newline="") as f:
            header = next(csv.reader(f), [])
        self.header = header
        keys: dict[str, str] = {}
        for i, k in enumerate(header):
            if k:
                keys[k.strip().lower()] = f"c{i}"
        if not header:
            self.raw = pa.table({"_row": pa.array([], pa.int64())})
            return keys
        cols = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(len(header))) + "}"
        args = (f"header=false, skip=1, auto_detect=false, columns={cols}, delim=',', quote='\"', "
                f"escape='\"', encoding='utf-8'")
        try:
            tbl = self.mem.sql(f"SELECT * FROM read_csv({_sql_str(self.path)}, {args})").to_arrow_table()
        except Exception as exc:  # a short row: pad it with NULLs (one thread, as csv.DictReader)
            if "Expected Number of Columns" not in str(exc):
                raise
            tbl = self.mem.sql(f"SELECT * FROM read_csv({_sql_str(self.path)}, {args}, null_padding=true, "
                               f"parallel=false)").to_arrow_table()
        self.raw = self._numbered(tbl)
        return keys

    def _read_jsonl(self) -> dict:
        import pyarrow as pa

        tbl = self.mem.sql(f"SELECT line FROM read_csv({_sql_str(self.path)}, columns={{'line': 'VARCHAR'}}, "
                           f"header=false, delim={_sql_str(chr(1))}, quote='', escape='', auto_detect=false, "
                           f"encoding='utf-8')").to_arrow_table()
        import numpy as np
        tbl = tbl.append_column("_lineno", pa.array(np.arange(1, tbl.num_rows + 1, dtype=np.int64)))
        self.mem.register("_lines", tbl)
        bad = self.mem.execute("SELECT _lineno, line FROM _lines WHERE trim(coalesce(line, '')) <> '' AND NOT "
                               "json_valid(line) ORDER BY _lineno LIMIT 1").fetchall()
        if bad:
            try:
                json.loads(bad[0][1])
                why = "not a JSON object"
            except json.JSONDecodeError as exc:
                why = exc.msg
            raise ExecutionError(f"{self.path}:{bad[0][0]}: invalid JSON ({why})")
        objs = self.mem.sql("SELECT _lineno, CAST(line AS JSON) AS j FROM _lines WHERE trim(coalesce(line, '')) <> '' "
                            "ORDER BY _lineno").to_arrow_table()
        self.mem.unregister("_lines")
        self.raw = self._numbered(objs)
        self.mem.register("raw", self.raw)
        nonobj = self.mem.execute("SELECT _row, _lineno FROM raw WHERE json_type(j) <> 'OBJECT' ORDER BY _row "
                                  "LIMIT 1").fetchall()
        if nonobj:
            raise ExecutionError(f"{self.path}:{nonobj[0][1]}: invalid JSON (not an object)")
        raw_keys = [r[0] for r in self.mem.execute(
            "SELECT k FROM (SELECT k, min(_row * 100000 + i) AS o FROM (SELECT _row, unnest(json_keys(j)) AS k, "
            "generate_subscripts(json_keys(j), 1) AS i FROM raw) GROUP BY k) ORDER BY o").fetchall()]
        self.header = raw_keys
        keys: dict[str, str] = {}
        for k in raw_keys:
            if k:
                ptr = "/" + k.replace("~", "~0").replace("/", "~1")
                keys[k.strip().lower()] = f"json_extract(j, {_sql_str(ptr)})"
        return keys

    def _numbered(self, tbl):
        import numpy as np
        import pyarrow as pa

        return tbl.append_column("_row", pa.array(np.arange(1, tbl.num_rows + 1, dtype=np.int64)))

    # ---- one row, the per-row way (loadable rows; wording the first error) --------------
    def record(self, row: int) -> dict:
        """Row ``row`` (1-based) as ADD MODEL's per-row rules see it: lower-case keys,
        empty values as None."""
        cols = self.raw.slice(row - 1, 1).to_pylist()[0]
        if self.jsonl:
            r = json.loads(cols["j"])
        else:
            r = {k: cols[f"c{i}"] for i, k in enumerate(self.header) if k}
        return {k.strip().lower(): (v if v != "" else None) for k, v in r.items() if k}

    def line(self, row: int) -> int:
        """The line of the file where record ``row`` starts."""
        if self.jsonl:
            return int(self.raw.column("_lineno")[row - 1].as_py())
        return csv_record_line(self.path, row)

    def where(self, row: int) -> str:
        return f"{self.path} row {row} (line {self.line(row)})"

    def resolver(self):
        base = os.path.dirname(self.path)

        def resolve(p: str) -> str:
            if "\x00" in p:
                raise BindError(f"path {p[:60]!r} contains a NUL character")
            return os.path.normpath(os.path.join(base, os.path.expanduser(p)))
        return resolve

    def spec(self, row: int) -> dict:
        """ADD MODEL's spec of row ``row`` (BindError when the row is bad)."""
        from zooql.core.binder import model_spec

        r = self.record(row)
        source = r.get("source") or ("hf:" + str(r["name"]) if r.get("name") else None)
        labels = r.get("labels")
        if isinstance(labels, str):
            if labels.startswith("["):
                try:
                    labels = json.loads(labels)
                except json.JSONDecodeError as exc:
                    raise BindError(f"labels {labels[:40]!r} is not a JSON list ({exc.msg})") from None
            else:
                labels = labels.split("|")
        opts = {k: coerce(v) for k, v in r.items() if k not in FILE_KEYS and v is not None}
        return model_spec(source, name=r.get("name"), checkpoint=r.get("checkpoint"), labels=labels,
                          labels_file=r.get("labels_file"), options=opts, resolve=self.resolver())

    def row_error(self, row: int, fallback: str) -> ExecutionError:
        try:
            self.spec(row)
        except BindError as exc:
            return ExecutionError(f"{self.where(row)}: {exc.message}")
        return ExecutionError(f"{self.where(row)}: {fallback}")



# ---- the whole file, as columns --------------------------------------------------------------

def _cols(mf: ModelsFile) -> tuple[dict, dict]:
    """SQL expressions per normalised key: (text or NULL, JSON text or NULL)."""
    text, js = {}, {}
    for k, ref in mf.keys.items():
        if mf.jsonl:
            t = f"NULLIF(json_extract_string(j, {ref[len('json_extract(j, '):-1]}), '')"
            text[k] = t
            js[k] = (f"CASE json_type({ref}) WHEN 'VARCHAR' THEN CASE WHEN {t} IS NOT NULL THEN {_json_of(t)} END "
                     f"WHEN 'NULL' THEN NULL ELSE CAST({ref} AS VARCHAR) END")
        else:
            text[k] = f"NULLIF({ref}, '')"
            js[k] = f"CASE WHEN {ref} <> '' THEN {_json_of(ref)} END"
    return text, js


def _object(pairs: list[tuple[str, str]], empty: str) -> str:
    """SQL: a JSON object of the non-NULL values among ``pairs`` (key, JSON text)."""
    if not pairs:
        return empty
    body = "concat_ws(', ', " + ", ".join(
        f"CASE WHEN {v} IS NOT NULL THEN {_sql_str(json.dumps(k))} || ': ' || {v} END" for k, v in pairs) + ")"
    return f"CASE WHEN {body} = '' THEN {empty} ELSE '{{' || {body} || '}}' END"


def _stage_sql(mf: ModelsFile) -> str:
    from zooql.storage.catalog import SETTABLE_MODEL_COLUMNS

    text, js = _cols(mf)
    t = lambda k: text.get(k, "NULL")  # noqa: E731
    reserved = set(FILE_KEYS) | set(SETTABLE_MODEL_COLUMNS) | set(PREPROCESS_KEYS)
    tags = _object([(k, js[k]) for k in js if k not in reserved], "'{}'")
    pre = _object([(k, js[k]) for k in js if k in PREPROCESS_KEYS], "NULL")
    src = f"coalesce({t('source')}, 'hf:' || {t('name')})"
    d, lab = t("downloads"), t("labels")
    kinds = ", ".join(_sql_str(k) for k in LOADABLE_KINDS)
    return f"""
      WITH b AS (SELECT _row, {t('name')} AS name0, {src} AS source, {t('checkpoint')} AS checkpoint,
                 {t('labels_file')} AS labels_file, {lab} AS labels0, {d} AS downloads0,
                 {', '.join(f'{t(c)} AS {c}' for c in TEXT_COLUMNS)}, {pre} AS preprocess, {tags} AS tags FROM raw),
      c AS (SELECT *, coalesce(name0, replace(CASE WHEN strpos(source, ':') > 0
                     THEN substr(source, strpos(source, ':') + 1) ELSE source END, ':', '-')) AS name,
              source LIKE '%:%' AND lower(split_part(source, ':', 1)) IN ({kinds}) AS is_loadable,
              CASE WHEN downloads0 IS NULL THEN NULL
                   WHEN regexp_matches(downloads0, '{_INT_RE}') THEN TRY_CAST(trim(downloads0) AS BIGINT)
                   WHEN regexp_matches(downloads0, '{_FLOAT_RE}')
                   THEN TRY_CAST(trunc(TRY_CAST(trim(downloads0) AS DOUBLE)) AS BIGINT) END AS downloads,
              CASE WHEN labels0 IS NULL THEN NULL WHEN NOT starts_with(labels0, '[') THEN string_split(labels0, '|')
                   WHEN json_valid(labels0) AND json_type(CAST(labels0 AS JSON)) = 'ARRAY'
                   THEN from_json(labels0, '["VARCHAR"]') END AS labels FROM b)
      SELECT *, CASE WHEN source IS NULL THEN 'a model needs a ''source'' such as ''timm:resnet18'''
                     WHEN is_loadable THEN NULL
                     WHEN trim(name) = '' THEN 'model name must not be empty'
                     WHEN length(name) > 256 THEN 'model name is too long'
                     WHEN regexp_matches(name, '[\\x00-\\x1f\\x7f]') THEN 'model name contains a control character'
                     WHEN downloads0 IS NOT NULL AND downloads IS NULL THEN 'downloads must be an integer'
                     WHEN labels0 IS NOT NULL AND labels IS NULL THEN 'labels is not a JSON list'
                END AS bad FROM c"""


def stage(mf: ModelsFile) -> Staged:
    """Validate the whole file; the name-only rows as one Arrow table, the loadable ones as
    specs. Raises the first bad row's error (a file error such as a name twice included)."""
    if mf.header and "source" not in mf.keys and "name" not in mf.keys:
        raise ExecutionError(f"{mf.path}: needs a 'source' or 'name' column; found {', '.join(mf.header)}")
    if mf.raw.num_rows == 0:
        return Staged(mf.path, table=_empty_table())
    mf.mem.register("raw", mf.raw)
    mf.mem.execute(f"CREATE TEMP TABLE staged AS {_stage_sql(mf)}")
    errors = []   # (row, order, error): the smallest row wins, a bad row before a repeated name
    bad = mf.mem.execute("SELECT _row, bad FROM staged WHERE bad IS NOT NULL ORDER BY _row LIMIT 1").fetchall()
    if bad:
        errors.append((bad[0][0], 0, lambda: mf.row_error(bad[0][0], bad[0][1])))
    loadable, names = [], []
    for (row,) in mf.mem.execute("SELECT _row FROM staged WHERE is_loadable AND source IS NOT NULL "
                                 "ORDER BY _row").fetchall():
        if errors and row > errors[0][0]:
            break
        try:
            spec = mf.spec(row)
        except BindError as exc:
            msg = exc.message
            errors.append((row, 0, lambda: ExecutionError(f"{mf.where(row)}: {msg}")))
            break
        loadable.append((row, spec))
        names.append((row, spec["name"], spec["source"], spec["checkpoint"]))
    paths = _resolve_paths(mf, errors)
    if not errors:
        dup = _first_repeat(mf, names)
        if dup is not None:
            errors.append((dup[0], 1, lambda: ExecutionError(f"{mf.where(dup[0])}: model {dup[1]!r} appears twice")))
    if errors:
        raise min(errors, key=lambda e: e[:2])[2]()
    tbl = mf.mem.sql("SELECT name, source, checkpoint, false AS loadable, tree, parent, downloads, task, family, "
                     "NULL::BIGINT AS params, NULL::INTEGER AS num_logits, NULL::INTEGER AS input_size, "
                     "preprocess, tags, description, labels, labels_file, _row FROM staged WHERE NOT is_loadable "
                     "ORDER BY _row").to_arrow_table()
    tbl = _apply_paths(tbl, paths)
    for row, spec in loadable:
        if spec["labels_file"]:
            spec["labels"] = read_labels(spec["labels_file"], mf.where(row))
    return Staged(mf.path, table=tbl.drop_columns(["labels_file"]).cast(_schema()), loadable=loadable)


def _first_repeat(mf: ModelsFile, loadable_names: list):
    import pyarrow as pa

    extra = pa.table({"_row": pa.array([r[0] for r in loadable_names], pa.int64()),
                      "name": pa.array([r[1] for r in loadable_names], pa.string())})
    mf.mem.register("_loadable_names", extra)
    q = "(SELECT _row, name FROM staged WHERE NOT is_loadable UNION ALL SELECT _row, name FROM _loadable_names)"
    n, distinct = mf.mem.execute(f"SELECT count(*), count(DISTINCT name) FROM {q}").fetchall()[0]
    if n == distinct:
        return None
    return mf.mem.execute(f"SELECT _row, name FROM (SELECT _row, name, row_number() OVER (PARTITION BY name "
                          f"ORDER BY _row) AS k FROM {q}) WHERE k = 2 ORDER BY _row LIMIT 1").fetchall()[0]


def _resolve_paths(mf: ModelsFile, errors: list) -> dict:
    """checkpoint and labels_file of the name-only rows, resolved against the file's folder
    (per distinct value: few files name any). -> {column: {text: resolved}}."""
    out = {}
    resolve = mf.resolver()
    for col in ("checkpoint", "labels_file"):
        vals = mf.mem.execute(f"SELECT {col}, min(_row) FROM staged WHERE NOT is_loadable AND {col} IS NOT NULL "
                              f"GROUP BY 1 ORDER BY 2").fetchall()
        m = {}
        for v, row in vals:
            try:
                m[v] = resolve(v)
            except BindError as exc:
                msg = exc.message
                errors.append((row, 0, lambda: ExecutionError(f"{mf.where(row)}: {msg}")))
                break
        out[col] = m
    return out


def _apply_paths(tbl, paths: dict):
    import pyarrow as pa

    if paths.get("checkpoint"):
        m = paths["checkpoint"]
        i = tbl.schema.get_field_index("checkpoint")
        tbl = tbl.set_column(i, "checkpoint", pa.array([m.get(v) if v is not None else None
                                                        for v in tbl.column(i).to_pylist()], pa.string()))
    if paths.get("labels_file"):
        files = {v: read_labels(p) for v, p in paths["labels_file"].items()}
        lf, lab = tbl.column("labels_file").to_pylist(), tbl.column("labels").to_pylist()
        new = [files[f] if f is not None else x for f, x in zip(lf, lab)]
        tbl = tbl.set_column(tbl.schema.get_field_index("labels"), "labels", pa.array(new, pa.list_(pa.string())))
    return tbl


def read_labels(path: str, where: str | None = None) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f if line.strip()]
    except OSError as exc:
        msg = f"cannot read labels file {path}: {exc.strerror}"
    except (UnicodeDecodeError, ValueError) as exc:  # not UTF-8 text; a NUL in the path
        msg = f"cannot read labels file {path!r}: {exc}"
    raise ExecutionError(f"{where}: {msg}" if where else msg)


def _schema():
    import pyarrow as pa

    t = {"loadable": pa.bool_(), "downloads": pa.int64(), "params": pa.int64(), "num_logits": pa.int32(),
         "input_size": pa.int32(), "labels": pa.list_(pa.string()), "_row": pa.int64()}
    return pa.schema([(c, t.get(c, pa.string())) for c in MODEL_FIELDS + ("labels", "_row")])


def _empty_table():
    return _schema().empty_table()


def spec_rows(specs: list[tuple[int, dict]]):
    """Inspected (or name-only) specs as a staged Arrow table (MODEL_FIELDS, labels, _row)."""
    import pyarrow as pa

    out = {c: [] for c in MODEL_FIELDS + ("labels", "_row")}
    for row, spec in specs:
        info = spec.get("info", {})
        cols = spec["columns"]
        tags = dict(spec["tags"])
        if info.get("extra"):
            tags.setdefault("_runtime", info["extra"])
        preprocess = info.get("preprocess") or (spec["preprocess"] or None)
        labels = spec["labels"] or info.get("labels")
        n = len(labels) if labels else (info.get("num_logits") or 0)
        vals = {"name": spec["name"], "source": spec["source"], "checkpoint": spec["checkpoint"],
                "loadable": bool(info.get("loadable", False)), "downloads": cols.get("downloads"),
                "family": cols.get("family") or info.get("family"), "params": info.get("params"),
                "num_logits": info.get("num_logits"), "input_size": info.get("input_size"),
                "preprocess": json.dumps(preprocess) if preprocess else None, "tags": json.dumps(tags),
                "labels": [str(x) if x is not None else None for x in labels] if labels else [None] * n,
                "_row": row}
        for c in ("tree", "parent", "task", "description"):
            vals[c] = None if cols.get(c) is None else str(cols.get(c))
        for c in out:
            out[c].append(vals.get(c))
    return pa.table({c: pa.array(v, _schema().field(c).type) for c, v in out.items()})


# ---- against the catalog ----------------------------------------------------------------------

def drop_registered(staged: Staged, con, where) -> None:
    """Rows whose name the catalog holds: skipped when registered with the same source and
    checkpoint (a rerun of the same file resumes), else the first such row is an error.
    ``where(row)`` words a row's place in the file."""
    import pyarrow as pa

    if con.execute("SELECT count(*) FROM models").fetchall()[0][0] == 0:
        return
    ld = pa.table({"_row": pa.array([r for r, _ in staged.loadable], pa.int64()),
                   "name": pa.array([s["name"] for _, s in staged.loadable], pa.string()),
                   "source": pa.array([s["source"] for _, s in staged.loadable], pa.string()),
                   "checkpoint": pa.array([s["checkpoint"] for _, s in staged.loadable], pa.string())})
    con.register("_zooql_new", staged.table)
    con.register("_zooql_new_l", ld)
    try:
        q = ("(SELECT _row, name, source, checkpoint FROM _zooql_new UNION ALL "
             "SELECT _row, name, source, checkpoint FROM _zooql_new_l)")
        bad = con.execute(f"SELECT n._row, n.name, m.source, m.checkpoint FROM {q} n JOIN models m ON m.name = n.name "
                          f"WHERE NOT (m.source = n.source AND m.checkpoint IS NOT DISTINCT FROM n.checkpoint) "
                          f"ORDER BY n._row LIMIT 1").fetchall()
        if bad:
            row, name, source, ckpt = bad[0]
            raise ExecutionError(
                f"{where(row)}: model {name!r} already exists (registered from {source!r}"
                + (f" with checkpoint {ckpt!r}" if ckpt else "") + "); a rerun skips only the rows registered "
                "with the same source and checkpoint; nothing added")
        n_before = staged.table.num_rows + len(staged.loadable)
        staged.table = con.sql("SELECT * FROM _zooql_new n WHERE NOT EXISTS (SELECT 1 FROM models m "
                               "WHERE m.name = n.name) ORDER BY _row").to_arrow_table().cast(_schema())
        done = {r for (r,) in con.execute("SELECT n._row FROM _zooql_new_l n JOIN models m ON m.name = n.name")
                .fetchall()}
        staged.loadable = [(r, s) for r, s in staged.loadable if r not in done]
        staged.skipped += n_before - staged.table.num_rows - len(staged.loadable)
    finally:
        con.unregister("_zooql_new")
        con.unregister("_zooql_new_l")


def insert_staged(con, tbl) -> None:
    """Insert staged rows (and their logits) with one statement per table; ids follow the
    rows' order."""
    import numpy as np
    import pyarrow as pa

    n = tbl.num_rows
    if n == 0:
        return
    quiet(con)
    ids = con.sql("SELECT nextval('model_ids') AS id FROM range(?)", params=[n]).to_arrow_table()
    ids = np.sort(ids.column(0).to_numpy())
    tbl = tbl.append_column("id", pa.array(ids.astype(np.int32)))
    cols = ", ".join(MODEL_FIELDS)
    con.register("_zooql_models", tbl)
    try:
        con.execute(f"INSERT INTO models (id, {cols}) SELECT id, {cols} FROM _zooql_models ORDER BY _row").fetchall()
        con.execute("INSERT INTO logits SELECT id, generate_subscripts(labels, 1) - 1, unnest(labels) "
                    "FROM _zooql_models WHERE len(labels) > 0").fetchall()
    finally:
        con.unregister("_zooql_models")
