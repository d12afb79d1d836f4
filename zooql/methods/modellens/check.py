"""CHECK HUB for ModelLens (the ``on_check`` hook): the cached recommender's file against
its catalog row (present, size, SHA-256, readable) and files in ``recommender/`` that no row
names. Rows: (severity, object, file, problem, fix)."""
from __future__ import annotations

import os

from zooql.errors import StorageError
from zooql.methods.modellens.catalog import CACHE_DIR, RECOMMENDER_NAME, sha256_file

RETRAIN = "TRAIN RECOMMENDER rebuilds it (the cache is derived from the evaluations)"


def _rows(con) -> list[dict]:
    try:
        cur = con.execute("SELECT * FROM recommenders ORDER BY name")
    except Exception:  # noqa: BLE001 - a hub that predates the table has nothing to check
        return []
    names = [d[0] for d in cur.description]
    return [{"size": None, "sha256": None, **dict(zip(names, r))} for r in cur.fetchall()]


def check_recommenders(ctx) -> list[tuple]:
    out: list[tuple] = []
    folder = os.path.join(str(ctx.store.path), CACHE_DIR)
    named = set()
    for row in _rows(ctx.con):
        obj = f"recommender {row['name']}"
        path = os.path.join(folder, row["file"])
        named.add(row["file"])
        problem = _file_problem(path, row)
        if problem is not None:
            out.append((problem[0], obj, path, problem[1], RETRAIN))
    if os.path.isdir(folder):
        for fn in sorted(os.listdir(folder)):
            if fn.startswith(RECOMMENDER_NAME) and fn.endswith(".npz") and fn not in named:
                out.append(("warning", "recommender", os.path.join(folder, fn),
                            "file no recommenders row names (left by an interrupted TRAIN RECOMMENDER)",
                            "delete the file"))
    return out


def _file_problem(path: str, row: dict) -> tuple[str, str] | None:
    from zooql.methods.modellens.ops import _LOADED, _load_cached

    if not os.path.exists(path):
        return "error", "the recommender's file is missing"
    size = os.path.getsize(path)
    if row["size"] is not None and size != row["size"]:
        return "error", f"the file has {size} bytes, the catalog records {row['size']}"
    if row["sha256"] is not None and sha256_file(path) != row["sha256"]:
        return "error", "the file's SHA-256 is not the recorded one (its data was overwritten)"
    _LOADED.pop(path, None)   # read it back from disk, not from this process's cache
    try:
        _load_cached(path, row)
    except StorageError as exc:
        return "error", exc.message
    if row["sha256"] is None:
        return "warning", "no checksum recorded (trained by an older ZooQL)"
    return None
