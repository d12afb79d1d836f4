"""CHECK HUB for DCD (the ``on_check`` hook): each cached conductance vector's shape (one
value per block) and values (finite), and rows naming a model or task that no longer exists.
A damaged vector is never used: RANK MODELS treats it as not cached and recomputes it
(:func:`zooql.methods.dcd.ops.vector_ok`). Rows: (severity, object, file, problem, fix)."""
from __future__ import annotations

from zooql.methods.dcd.ops import vector_ok


def check_vectors(ctx) -> list[tuple]:
    con = ctx.con
    try:
        rows = con.execute("SELECT model, task, n_images, blocks, vector FROM dcd_vectors ORDER BY task, model").fetchall()
    except Exception:  # noqa: BLE001 - a hub that predates the table
        return []
    catalog = str(ctx.store.catalog_path)
    out: list[tuple] = []
    for model, task, n_images, blocks, vector in rows:
        if not vector_ok(blocks, vector) or not n_images or n_images < 0:
            out.append(("error", f"conductance vector {model}/{task}", catalog,
                        f"damaged: {len(vector or [])} values for {len(blocks or [])} blocks, "
                        f"{n_images} images, or a value that is not finite",
                        f"the next RANK MODELS FOR TASK {task} ... USING CONDUCTANCE recomputes it"))
    n = con.execute("SELECT count(*) FROM dcd_vectors WHERE model NOT IN (SELECT name FROM models)").fetchone()[0]
    if n:
        out.append(("warning", "dcd_vectors", catalog, f"{n} conductance vectors name no registered model",
                    "they are never read; DROP MODEL did not finish (report it if it repeats)"))
    n = con.execute("SELECT count(*) FROM dcd_vectors WHERE task NOT IN (SELECT name FROM tasks)").fetchone()[0]
    if n:
        out.append(("warning", "dcd_vectors", catalog, f"{n} conductance vectors name no task",
                    "they are never read; the task was dropped"))
    return out
