"""CHECK HUB for Hidden Gems (the ``on_check`` hook): the outcome cache (``discover_cache``)
against the models and tasks it names and its scores. DISCOVER replays cached scores as
paid-for evaluations; one that is not a finite number is an error (DISCOVER skips it and
evaluates the pair again). Rows: (severity,
object, file, problem, fix)."""
from __future__ import annotations


def check_outcome_cache(ctx) -> list[tuple]:
    con = ctx.con
    try:
        con.execute("SELECT 1 FROM discover_cache LIMIT 0")
    except Exception:  # noqa: BLE001 - a hub that predates the table
        return []
    catalog = str(ctx.store.catalog_path)
    out: list[tuple] = []
    for task, n in con.execute("SELECT task, count(*) FROM discover_cache WHERE NOT isfinite(score) "
                               "GROUP BY task ORDER BY task").fetchall():
        out.append(("error", f"task {task}", catalog, f"{n} cached evaluations have a score that is not a "
                    "finite number",
                    "DISCOVER does not replay them: it evaluates those pairs again"))
    n = con.execute("SELECT count(*) FROM discover_cache WHERE model_id NOT IN (SELECT id FROM models)").fetchone()[0]
    if n:
        out.append(("warning", "discover_cache", catalog, f"{n} cached evaluations name no registered model",
                    "they are never read; DROP MODEL did not finish (report it if it repeats)"))
    n = con.execute("SELECT count(*) FROM discover_cache WHERE fingerprint <> 'recorded' "
                    "AND task NOT IN (SELECT name FROM tasks)").fetchone()[0]
    if n:
        out.append(("warning", "discover_cache", catalog, f"{n} cached evaluations of a live task name no task",
                    "they are never read; the task was dropped"))
    n = con.execute("SELECT count(*) - count(DISTINCT (task, fingerprint, model_id, query_id)) "
                    "FROM discover_cache").fetchone()[0]
    if n:
        out.append(("warning", "discover_cache", catalog, f"{n} evaluations are cached more than once",
                    "harmless: DISCOVER reads one of them"))
    return out
