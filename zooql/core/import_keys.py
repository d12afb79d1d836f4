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


def check_file(con, kind: str, fname: str, where: str) -> None:
    """Refuse a file with an incomplete key or a key given twice (``where``: 'line'/'row')."""
    keys = KEYS[kind]
    required = [k for k in keys if k not in NULLABLE]
    row = _one(con, f"SELECT _line, {', '.join(required)} FROM {TMP} WHERE "
               + " OR ".join(f"coalesce(trim({k}), '') = ''" for k in required) + " ORDER BY _line LIMIT 1")
    if row is not None:
        missing = [k for k, v in zip(required, row[1:]) if v is None or not v.strip()]
        raise ExecutionError(f"{fname} {where} {row[0]}: no {', '.join(missing)} (IMPORT {kind.upper()} "
                             f"needs {', '.join(required)} in every row); nothing imported")
    cols = ", ".join(keys)
    row = _one(con,
               f"SELECT _line, first_line, {cols} FROM (SELECT _line, {cols}, row_number() OVER w AS n, "
               f"first_value(_line) OVER w AS first_line FROM {TMP} WINDOW w AS (PARTITION BY {cols} "
               f"ORDER BY _line)) WHERE n = 2 ORDER BY _line LIMIT 1")
    if row is not None:
        raise ExecutionError(f"{fname} {where} {row[0]} repeats the key ({_show(keys, row[2:])}) of "
                             f"{where} {row[1]}; each key may appear once per file; nothing imported")


def resolve_conflicts(con, kind: str, action: str, fname: str, where: str) -> tuple[str, int]:
    """Apply ``action`` to the rows whose key is already stored. Returns (the SELECT's WHERE
    clause for the rows to insert, how many stored keys conflicted)."""
    keys = KEYS[kind]
    same = _same("t", "i", keys)
    n, first = _one(con, f"SELECT count(*), min(i._line) FROM {TMP} i WHERE EXISTS "
                         f"(SELECT 1 FROM {kind} t WHERE {same})")
    if not n:
        return "", 0
    if action == "error":
        row = _one(con, f"SELECT {', '.join(keys)} FROM {TMP} WHERE _line = ?", [first])
        more = f" and {n - 1} more row(s)" if n > 1 else ""
        raise ExecutionError(
            f"{kind} already hold the key ({_show(keys, row)}) of {fname} {where} {first}{more}; "
            f"nothing imported. Add ON CONFLICT REPLACE to overwrite the stored rows or ON CONFLICT "
            f"SKIP to keep them")
    if action == "replace":
        con.execute(f"DELETE FROM {kind} t WHERE EXISTS (SELECT 1 FROM {TMP} i WHERE {same})")
        return "", int(n)
    return f" WHERE NOT EXISTS (SELECT 1 FROM {kind} t WHERE {same})", int(n)
