"""CHECK HUB for ProbeLog (the ``on_check`` hook): every probe set's folder, probe images,
descriptor segments (full checksums), HNSW index files, raw logits, and the agreement of the
catalog's column map with the matrix. Rows: (severity, object, file, problem, fix)."""
from __future__ import annotations

import os

import numpy as np

from zooql.errors import StorageError
from zooql.methods.probelog.store import ProbeSetFiles, run_columns, runs_of, tables_exist

REPROBE = "DROP the affected models and PROBE them again with this probe set"


def check_probe_sets(ctx) -> list[tuple]:
    con = ctx.con
    if not tables_exist(con):
        return []
    out: list[tuple] = []
    sets = con.execute("SELECT id, name, dir, n_probes FROM probe_sets ORDER BY name").fetchall()
    for ps_id, name, rel, n_probes in sets:
        files = ProbeSetFiles(ctx.store, {"id": ps_id, "name": name, "dir": rel})
        obj = f"probe set {name}"
        if not os.path.isdir(files.root):
            out.append(("error", obj, files.root, "the probe set's folder is missing",
                        "restore it from a backup, or create the probe set again under a new name"))
            continue
        out += _check_probes(obj, files, n_probes)
        out += _check_matrix(con, obj, files, ps_id)
        out += _check_raw(con, obj, files, ps_id)
        out += _check_index(obj, files)
    out += _orphan_folders(ctx.store, {r[2] for r in sets})
    return out


def _check_probes(obj, files, n_probes) -> list[tuple]:
    try:
        arr = np.load(files.probes, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        return [("error", obj, files.probes, "probe images are missing", "restore the file from a backup")]
    except (ValueError, EOFError, OSError) as exc:
        return [("error", obj, files.probes, f"probe images are unreadable ({exc})", "restore the file from a backup")]
    if arr.shape[0] != n_probes:
        return [("error", obj, files.probes, f"holds {arr.shape[0]} probes, the catalog records {n_probes}",
                 "restore the file from a backup")]
    return []


def _check_matrix(con, obj, files, ps_id) -> list[tuple]:
    from zooql.methods.probelog.descriptors import DescriptorMatrix

    try:
        dm = DescriptorMatrix.open(files.descriptors, "r", verify=True)
    except StorageError as exc:
        return [("error", obj, files.descriptors, exc.message, REPROBE)]
    try:
        live = dm.column_ids()
        out = []
        for seg in dm._segs:
            if not seg.files:
                out.append(("warning", obj, os.path.join(files.descriptors, seg.name + ".npy"),
                            "no checksum recorded (written by an older ZooQL)", "REFRESH DESCRIPTORS rewrites it"))
    finally:
        dm.close()
    _, first, ncols = runs_of(con, ps_id)
    named = run_columns(first, ncols)
    missing = np.setdiff1d(named, live)
    if missing.size:
        out.append(("error", obj, files.descriptors, f"the catalog names {missing.size} descriptor columns the "
                    f"matrix lacks (first: {missing[:5].tolist()})", REPROBE))
    orphans = np.setdiff1d(live, named)
    if orphans.size:
        out.append(("warning", obj, files.descriptors, f"{orphans.size} descriptor columns no catalog row names "
                    "(left by an interrupted PROBE)", "PROBE with this probe set again: it deletes them first"))
    return out


def _check_raw(con, obj, files, ps_id) -> list[tuple]:
    out = []
    named = set()
    rows = con.execute("SELECT model_id, raw_file FROM probe_runs WHERE probe_set_id = ? AND raw_col IS NULL",
                       [ps_id]).fetchall()
    rows += con.execute("SELECT model_id, mask_file FROM probe_masks WHERE probe_set_id = ?", [ps_id]).fetchall()
    for mid, rel in rows:
        if not rel:
            continue
        path = os.path.join(str(files.store.path), rel)
        named.add(os.path.realpath(path))
        if not os.path.exists(path):
            out.append(("warning", obj, path, f"raw logits of model id {mid} are missing (REFRESH DESCRIPTORS "
                        "needs them)", REPROBE))
    out += _check_groups(con, obj, files, ps_id, named)
    raw_dir = os.path.join(files.root, "raw")
    if os.path.isdir(raw_dir):
        for fn in sorted(os.listdir(raw_dir)):
            path = os.path.join(raw_dir, fn)
            if fn.endswith(".npy") and not fn.startswith(".") and os.path.realpath(path) not in named:
                out.append(("warning", obj, path, "raw logits no catalog row names (left by an interrupted "
                            "PROBE)", "PROBE with this probe set again (it rewrites them), or delete the file"))
    return out


def _check_groups(con, obj, files, ps_id, named: set) -> list[tuple]:
    """Commit-group raw files (probe_raw_files): present, size and SHA-256 as recorded, and
    holding every column a run names in them."""
    from zooql.methods.probelog.integrity import verify

    out = []
    groups = con.execute("SELECT g.file, g.n_cols, g.bytes, g.sha256, max(r.raw_col + r.n_cols) FROM probe_raw_files g "
                         "LEFT JOIN probe_runs r ON r.probe_set_id = g.probe_set_id AND r.raw_file = g.file "
                         "WHERE g.probe_set_id = ? GROUP BY ALL ORDER BY g.file", [ps_id]).fetchall()
    for rel, ncols, size, sha, used in groups:
        path = os.path.join(str(files.store.path), rel)
        named.add(os.path.realpath(path))
        try:
            verify(path, {"bytes": size, "sha256": sha}, "raw logits file", REPROBE)
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            if arr.ndim != 2 or arr.shape[1] != ncols or (used is not None and used > ncols):
                raise StorageError(f"raw logits file {path} holds {arr.shape}, the catalog records {ncols} columns; "
                                   f"{REPROBE}")
        except StorageError as exc:
            out.append(("error", obj, path, exc.message, REPROBE))
        except (ValueError, OSError) as exc:
            out.append(("error", obj, path, f"raw logits file is unreadable ({exc})", REPROBE))
    orphan_runs = con.execute("SELECT r.model_id, r.raw_file FROM probe_runs r LEFT JOIN probe_raw_files g ON "
                              "g.probe_set_id = r.probe_set_id AND g.file = r.raw_file WHERE r.probe_set_id = ? "
                              "AND r.raw_col IS NOT NULL AND g.file IS NULL", [ps_id]).fetchall()
    for mid, rel in orphan_runs:
        out.append(("error", obj, os.path.join(str(files.store.path), rel),
                    f"model id {mid}'s raw logits point into a group file the catalog does not list", REPROBE))
    return out


def _check_index(obj, files) -> list[tuple]:
    """Every index folder of the probe set (``hnsw`` and the reduced one, whatever class wrote
    it): its CURRENT.json and the sizes and checksums of the files it names."""
    from zooql.methods.probelog.ann import INDEX_FIX
    from zooql.methods.probelog.store import INDEX_KINDS, _index_class, _index_pointer

    out = []
    for kind in INDEX_KINDS:
        if not files.has_index(kind):
            continue
        path = files.index_dir(kind)
        try:
            _index_class(_index_pointer(path)).verify_files(path)
        except StorageError as exc:
            out.append(("error", obj, path, exc.message, INDEX_FIX.format(path=path)))
    return out


def _orphan_folders(store, dirs: set) -> list[tuple]:
    root = os.path.join(str(store.path), "probesets")
    if not os.path.isdir(root):
        return []
    known = {os.path.realpath(os.path.join(str(store.path), d)) for d in dirs}
    out = []
    for fn in sorted(os.listdir(root)):
        path = os.path.join(root, fn)
        if os.path.isdir(path) and os.path.realpath(path) not in known:
            out.append(("warning", "probe sets", path, "folder no probe set names (left by an interrupted "
                        "CREATE PROBE SET)", "delete the folder"))
    return out
