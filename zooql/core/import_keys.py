"""IMPORT EVALUATIONS / IMPORT OUTCOMES are idempotent by key.

The key of an evaluation is (model, dataset, metric, split) — ``split`` may be NULL and two
NULLs are the same split — and the key of an outcome is (model, dataset, query_id). Before
anything is inserted, set-based SQL over the registered import table (``_zooql_import``,
which carries the file's ``_line``) finds:

* a key missing a part (empty model, dataset, metric or query_id): an error naming the line;
* a key repeated inside the file: an error naming both lines;
* keys already stored: ``ON CONFLICT ERROR`` (the default) refuses the import naming the
  first such key, ``REPLACE`` deletes the stored rows of those keys and inserts the file's,
  ``SKIP`` inserts only the rows whose key is not stored (an anti-join).
"""
from __future__ import annotations

import os

from zooql.errors import ExecutionError

KEYS = {"evaluations": ("model", "dataset", "metric", "split"),
        "outcomes": ("model", "dataset", "query_id")}
NULLABLE = {"split"}
ACTIONS = ("error", "replace", "skip")
TMP = "_zooql_import"


def _same(a: str, b: str, keys) -> str:
    return " AND ".join(f"{a}.{k} IS NOT DISTINCT FROM {b}.{k}" if k in NULLABLE else f"{a}.{k} = {b}.{k}"
                        for k in keys)


def _one(con, sql: str, params=()):
    """The first row of ``sql`` (or None), the result fully consumed."""
    rows = con.execute(sql, list(params)).fetchall()
    return rows[0] if rows else None


def _show(keys, values) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in zip(keys, values) if v is not None or k not in NULLABLE)


def _missing(required) -> str:
    # coalesce(trim(k), '') = '', trimming only values that start with a space
    return " OR ".join(f"({k} IS NULL OR {k} = '' OR (starts_with({k}, ' ') AND trim({k}) = ''))" for k in required)


def memory_db():
    """A private in-memory DuckDB (files are read and checked there, not in the catalog)."""
    import duckdb

    return quiet(duckdb.connect())


def quiet(con):
    """``con`` with DuckDB's progress bar off (a long insert must not draw on the terminal)."""
    import duckdb

    try:
        con.execute("SET SESSION enable_progress_bar = false").fetchall()
    except duckdb.Error:  # a connection that may not change it
        pass
    return con


def check_file(con, kind: str, fname: str, where: str, line_of=lambda row: row, stats=None) -> None:
    """Refuse a file with an incomplete key or a key given twice (``where``: 'line'/'row';
    ``line_of(row)``: the line or row number of the 1-based record ``row``). ``stats``:
    (first row missing a key part, rows, distinct key hashes) when the caller scanned them."""
    keys = KEYS[kind]
    required = [k for k in keys if k not in NULLABLE]
    cols = ", ".join(keys)
    if stats is None:
        stats = _one(con, f"SELECT min(_row) FILTER (WHERE {_missing(required)}), count(*), "
                          f"count(DISTINCT hash({cols})) FROM {TMP}")
    first, n, distinct = stats
    if first is not None:
        row = _one(con, f"SELECT _row, {', '.join(required)} FROM {TMP} WHERE _row = ?", [first])
        missing = [k for k, v in zip(required, row[1:]) if v is None or not v.strip()]
        raise ExecutionError(f"{fname} {where} {line_of(row[0])}: no {', '.join(missing)} (IMPORT {kind.upper()} "
                             f"needs {', '.join(required)} in every row); nothing imported")
    if n == distinct:  # the common case: no window over the whole file (a hash collision only costs it)
        return
    row = _one(con,
               f"SELECT _row, first_row, {cols} FROM (SELECT _row, {cols}, row_number() OVER w AS n, "
               f"first_value(_row) OVER w AS first_row FROM {TMP} WINDOW w AS (PARTITION BY {cols} "
               f"ORDER BY _row)) WHERE n = 2 ORDER BY _row LIMIT 1")
    if row is not None:
        raise ExecutionError(f"{fname} {where} {line_of(row[0])} repeats the key ({_show(keys, row[2:])}) of "
                             f"{where} {line_of(row[1])}; each key may appear once per file; nothing imported")


def count_conflicts(con, kind: str, action: str, fname: str, where: str, line_of=lambda row: row) -> int:
    """How many rows of the import hold a key already stored; ``ON CONFLICT ERROR`` refuses
    the import naming the first. Run before the write (a read-only connection will do)."""
    keys = KEYS[kind]
    if not _one(con, f"SELECT EXISTS (SELECT 1 FROM {kind})")[0]:
        return 0
    n, first = _one(con, f"SELECT count(*), min(i._row) FROM {TMP} i WHERE EXISTS "
                         f"(SELECT 1 FROM {kind} t WHERE {_same('t', 'i', keys)})")
    if n and action == "error":
        row = _one(con, f"SELECT {', '.join(keys)} FROM {TMP} WHERE _row = ?", [first])
        more = f" and {n - 1} more row(s)" if n > 1 else ""
        raise ExecutionError(
            f"{kind} already hold the key ({_show(keys, row)}) of {fname} {where} {line_of(first)}{more}; "
            f"nothing imported. Add ON CONFLICT REPLACE to overwrite the stored rows or ON CONFLICT "
            f"SKIP to keep them")
    return int(n)


def resolve_conflicts(con, kind: str, action: str, conflicts: int) -> str:
    """Apply ``action`` to the ``conflicts`` rows whose key is stored (inside the write).
    Returns the SELECT's WHERE clause for the rows to insert."""
    if not conflicts:
        return ""
    same = _same("t", "i", KEYS[kind])
    if action == "replace":
        con.execute(f"DELETE FROM {kind} t WHERE EXISTS (SELECT 1 FROM {TMP} i WHERE {same})").fetchall()
        return ""
    return f" WHERE NOT EXISTS (SELECT 1 FROM {kind} t WHERE {same})"


# ---- reading the file -------------------------------------------------------------------------

_NULL = "\x01zooql-no-null\x01"   # read_csv's NULL text: no field is NULL, as in pyarrow


def csv_record_line(path: str, row: int, delimiter: str = ",") -> int:
    """The line where the 1-based record ``row`` of a CSV file (after its header) starts."""
    import csv

    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        next(reader, None)
        n, start = 0, reader.line_num + 1
        for rec in reader:
            if rec:  # blank lines are not records
                n += 1
                if n == row:
                    return start
            start = reader.line_num + 1
    return row + 1


def read_file(path: str):
    """The import file as a pyarrow table: every column of a .csv/.tsv as text (DuckDB's
    read_csv), a .parquet as stored. -> (table, 'line'|'row', line_of(row))."""
    import csv

    import duckdb
    import pyarrow.parquet as pq

    if not os.path.exists(path):
        raise ExecutionError(f"file not found: {path}")
    try:
        if path.endswith(".parquet"):
            return pq.read_table(path), "row", lambda row: row
        delim = "\t" if path.endswith(".tsv") else ","
        with open(path, encoding="utf-8-sig", newline="") as f:
            header = next(csv.reader(f, delimiter=delim), [])
        if not header:
            raise ExecutionError(f"cannot read {path}: the file is empty (no header line)")
        cols = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(len(header))) + "}"
        q = (f"SELECT * FROM read_csv(?, header=false, skip=1, auto_detect=false, columns={cols}, "
             f"delim=?, quote='\"', escape='\"', nullstr=?, encoding='utf-8')")
        tbl = memory_db().sql(q, params=[path, delim, _NULL]).to_arrow_table()
    except (duckdb.Error, OSError, UnicodeDecodeError) as exc:
        raise ExecutionError(f"cannot read {path}: {' '.join(str(exc).split()[:40])}") from None
    except Exception as exc:  # pyarrow's errors
        if type(exc).__module__.startswith("pyarrow"):
            raise ExecutionError(f"cannot read {path}: {exc}") from None
        raise
    tbl = tbl.rename_columns([h or f"column{i}" for i, h in enumerate(header)])
    return tbl, "line", lambda row: csv_record_line(path, row, delim)


def prepare(table, kind: str, required, optional, source, fname: str, where: str, line_of):
    """The import's rows as a pyarrow table (the file's key columns, ``score`` as read,
    ``_row``) and the SELECT list that inserts them: scores and keys are checked as whole
    columns in one scan (then, only when a problem shows, the first bad row is found)."""
    import numpy as np
    import pyarrow as pa

    names = {n.lower(): n for n in table.column_names}
    cols = {}
    for c in required + optional:
        if c in names:
            arr = table.column(names[c])
            if c != "score" and not pa.types.is_string(arr.type):
                arr = arr.cast(pa.string())
            cols[c] = arr
        else:
            cols[c] = pa.nulls(table.num_rows, pa.string())
    cols["_row"] = pa.array(np.arange(1, table.num_rows + 1, dtype=np.int64))
    data = pa.table(cols)
    numeric = pa.types.is_integer(data.schema.field("score").type) or pa.types.is_floating(data.schema.field("score").type)
    text = "NULL" if pa.types.is_null(data.schema.field("score").type) else "NULLIF(trim(CAST(score AS VARCHAR)), '')"
    score = "CAST(score AS DOUBLE)" if numeric else f"TRY_CAST({text} AS DOUBLE)"
    mem = memory_db()
    mem.register(TMP, data)
    keys = KEYS[kind]
    req = [k for k in keys if k not in NULLABLE]
    st = _one(mem, f"SELECT min(_row) FILTER (WHERE {text} IS NOT NULL AND {score} IS NULL), "
                   f"min(_row) FILTER (WHERE {score} IS NULL), min(_row) FILTER (WHERE {_missing(req)}), "
                   f"count(*), count(DISTINCT hash({', '.join(keys)})), list(DISTINCT dataset) FROM {TMP}")
    if st[0] is not None:
        bad = _one(mem, f"SELECT CAST(score AS VARCHAR) FROM {TMP} WHERE _row = ?", [st[0]])[0]
        raise ExecutionError(f"{fname} {where} {line_of(st[0])}: score {bad!r} is not a number; nothing imported")
    if kind == "outcomes" and st[1] is not None:
        raise ExecutionError(f"{fname}: outcomes need a score in every row (none at {where} "
                             f"{line_of(st[1])}); nothing imported")
    check_file(mem, kind, fname, where, line_of, stats=st[2:5])
    select = {c: c for c in cols if c != "_row"}
    select["score"] = f"{score} AS score"
    params = []
    if source is not None:
        select["source"] = "? AS source"
        params.append(source)
    return data, select, params, st[5] or []


def typed_side_columns(table, core) -> object:
    """The file's extra columns typed as a CSV reader infers them (integers, decimals,
    booleans, else text), for the on_import hooks; core columns as read."""

    side = [n for n in table.column_names if n.lower() not in core and str(table.schema.field(n).type) == "string"]
    if not side:
        return table
    mem = memory_db()
    mem.register("_t", table)
    checks = []
    for n in side:
        q = '"' + n.replace('"', '""') + '"'
        v = f"NULLIF({q}, '')"
        checks += [f"bool_and({v} IS NULL OR TRY_CAST({v} AS BIGINT) IS NOT NULL)",
                   f"bool_and({v} IS NULL OR TRY_CAST({v} AS DOUBLE) IS NOT NULL)",
                   f"bool_and({v} IS NULL OR lower({v}) IN ('true', 'false'))"]
    flags = _one(mem, f"SELECT {', '.join(checks)} FROM _t")
    exprs = []
    for i, n in enumerate(table.column_names):
        q = '"' + n.replace('"', '""') + '"'
        if n in side:
            is_int, is_float, is_bool = flags[3 * side.index(n): 3 * side.index(n) + 3]
            t = "BIGINT" if is_int else "DOUBLE" if is_float else "BOOLEAN" if is_bool else None
            exprs.append(f"CAST(NULLIF({q}, '') AS {t}) AS {q}" if t else q)
        else:
            exprs.append(q)
    return mem.sql(f"SELECT {', '.join(exprs)} FROM _t").to_arrow_table()
