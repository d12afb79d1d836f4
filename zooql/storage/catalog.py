"""Read helpers over the catalog tables (names for binding, completion and suggestions)."""
from __future__ import annotations

import json

MODEL_COLUMNS = ("id", "name", "source", "checkpoint", "loadable", "tree", "parent", "downloads",
                 "task", "family", "params", "num_logits", "input_size", "preprocess", "tags",
                 "description", "added_at")
# Columns a WITH (...) / ALTER MODEL SET / models file may set directly.
SETTABLE_MODEL_COLUMNS = ("tree", "parent", "downloads", "task", "family", "description")
DATASET_COLUMNS = ("description", "domain")


def model_names(con) -> list[str]:
    return [r[0] for r in con.execute("SELECT name FROM models ORDER BY name").fetchall()]


def model_names_with_prefix(con, prefix: str, limit: int) -> list[str]:
    """At most ``limit`` model names starting with ``prefix`` (case-insensitive), in order:
    one LIMITed query (ILIKE; with an ESCAPE clause, which is slower, only when needed)."""
    if any(c in prefix for c in "\\%_"):
        esc = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        sql, pattern = "SELECT name FROM models WHERE name ILIKE ? ESCAPE '\\' ORDER BY name LIMIT ?", esc + "%"
    else:
        sql, pattern = "SELECT name FROM models WHERE name ILIKE ? ORDER BY name LIMIT ?", prefix + "%"
    return [r[0] for r in con.execute(sql, [pattern, int(limit)]).fetchall()]


#: Above this many models, "did you mean" looks only at the closest names DuckDB finds.
SUGGEST_SCAN = 10_000


def similar_model_names(con, name: str, n: int = 50) -> list[str]:
    """Candidates for a "did you mean" on an unknown model name: every name of a small
    catalog, the ``n`` most similar (Jaro-Winkler, in DuckDB) of a large one."""
    if con.execute("SELECT count(*) FROM models").fetchone()[0] <= SUGGEST_SCAN:
        return model_names(con)
    rows = con.execute("SELECT name FROM models ORDER BY jaro_winkler_similarity(name, ?) DESC, name LIMIT ?",
                       [name, n]).fetchall()
    return [r[0] for r in rows]


def model_row(con, name: str) -> dict | None:
    cur = con.execute(f"SELECT {', '.join(MODEL_COLUMNS)} FROM models WHERE name = ?", [name])
    row = cur.fetchone()
    if row is None:
        return None
    out = dict(zip(MODEL_COLUMNS, row))
    for k in ("preprocess", "tags"):
        out[k] = json.loads(out[k]) if out[k] else ({} if k == "tags" else None)
    return out


def model_labels(con, model_id: int) -> list[str | None]:
    rows = con.execute("SELECT idx, label FROM logits WHERE model_id = ? ORDER BY idx",
                       [model_id]).fetchall()
    return [r[1] for r in rows]


def dataset_names(con) -> list[str]:
    rows = con.execute(
        "SELECT name FROM datasets UNION SELECT DISTINCT dataset FROM evaluations "
        "UNION SELECT DISTINCT dataset FROM outcomes ORDER BY 1").fetchall()
    return [r[0] for r in rows]


def tree_names(con) -> list[str]:
    rows = con.execute("SELECT DISTINCT tree FROM models WHERE tree IS NOT NULL ORDER BY 1").fetchall()
    return [r[0] for r in rows]


def tag_keys(con) -> list[str]:
    rows = con.execute(
        "SELECT DISTINCT unnest(json_keys(tags)) FROM models WHERE tags IS NOT NULL").fetchall()
    return sorted(r[0] for r in rows)


def get_setting(con, key: str, default=None):
    row = con.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
    return default if row is None else json.loads(row[0])
