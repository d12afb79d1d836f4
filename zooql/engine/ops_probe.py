"""Operators and storage of probe sets and probing (ProbeLog): CREATE PROBE SET, PROBE.

Storage of one probe set (``<hub>/<probe_sets.dir>/``, the folder named in the catalog)::

    probes.npy        the probe images, in probe order ([n, H, W] or [n, H, W, C])
    descriptors/      DescriptorMatrix: z-scored logit columns, probe-major
    raw/m<id>.npy     raw logits of model <id> on the probes, float32 [n, L]
    hnsw/             HNSW index over the descriptors (built on first use, see ops_find)
    clip/, captions/  cached image / caption embeddings of the text aligners

The catalog holds the probe order and hashes (``probes``), which model was probed into
which descriptor columns (``probe_runs``: logit ``i`` of a model is column
``first_col + i``) and the explicit column map (``descriptor_columns``).

Consistency: descriptor files are written before the catalog rows that point at them
and committed per model. Columns of a run that never committed (an interrupt) are
orphans: no catalog row names them, searches only consider catalog columns, and the
next PROBE deletes them. DROP MODEL deletes the catalog rows in its transaction and
tombstones the matrix columns after the commit.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from zooql.engine import ops_catalog
from zooql.engine.plan import ExecContext, Operator, Rows
from zooql.errors import ExecutionError, StorageError

#: Probes of the auto-created built-in probe set (CREATE PROBE SET builtin FROM 'builtin' LIMIT n for others).
BUILTIN_DEFAULT_N = 256
BUILTIN_SIZE = 224
BUILTIN_NAME = "builtin"
DEFAULT_BATCH = 64
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
#: Images of a folder / parquet file that differ in size are resized to this square.
COMMON_SIZE = 224


# ==== catalog helpers (also used by the binder: no torch here) ==============================

def tables_exist(con) -> bool:
    row = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'probe_runs'").fetchone()
    return bool(row and row[0])


_PS_COLS = ("id", "name", "source", "n_probes", "shape", "dtype", "dir", "content_hash", "probe_limit",
            "seed", "captions", "descriptor_dtype", "created_at")


def probe_set_row(con, name: str) -> dict | None:
    if not tables_exist(con):
        return None
    row = con.execute(f"SELECT {', '.join(_PS_COLS)} FROM probe_sets WHERE name = ?", [name]).fetchone()
    if row is None:
        return None
    out = dict(zip(_PS_COLS, row))
    out["has_captions"] = bool(con.execute(
        "SELECT count(*) FROM probes WHERE probe_set_id = ? AND caption IS NOT NULL", [out["id"]]).fetchone()[0])
    return out


def probe_set_names(con) -> list[str]:
    if not tables_exist(con):
        return []
    return [r[0] for r in con.execute("SELECT name FROM probe_sets ORDER BY name").fetchall()]


def probed_model_ids(con, ps_id: int | None) -> set[int]:
    if ps_id is None or not tables_exist(con):
        return set()
    return {r[0] for r in con.execute("SELECT model_id FROM probe_runs WHERE probe_set_id = ?", [ps_id]).fetchall()}


def runs_of(con, ps_id: int, model_ids=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(model_ids, first_cols, n_cols) of a probe set's runs, sorted by first column."""
    rows = con.execute("SELECT model_id, first_col, n_cols FROM probe_runs WHERE probe_set_id = ? "
                       "ORDER BY first_col", [ps_id]).fetchall()
    if model_ids is not None:
        keep = set(int(m) for m in model_ids)
        rows = [r for r in rows if r[0] in keep]
    if not rows:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64)
    a = np.asarray(rows, dtype=np.int64)
    return a[:, 0], a[:, 1], a[:, 2]


def run_columns(first: np.ndarray, ncols: np.ndarray) -> np.ndarray:
    """All column ids of the given runs, ascending when runs are sorted by first column."""
    if first.size == 0:
        return np.empty(0, np.int64)
    return np.concatenate([np.arange(f, f + n, dtype=np.int64) for f, n in zip(first, ncols)])


def model_options(m: dict) -> dict:
    """WITH options reproducing how a registered model was inspected (for ModelRuntime.load)."""
    opts = {k: v for k, v in (m.get("preprocess") or {}).items() if v is not None}
    if str(m.get("source", "")).startswith("timm:") and m.get("num_logits"):
        opts["num_classes"] = int(m["num_logits"])
    return opts


def model_row_by_id(con, model_id: int) -> dict | None:
    from zooql.storage import catalog as C

    row = con.execute("SELECT name FROM models WHERE id = ?", [model_id]).fetchone()
    return C.model_row(con, row[0]) if row else None


# ==== files of a probe set ===================================================================

class ProbeSetFiles:
    def __init__(self, store, ps: dict):
        self.store = store
        self.root = os.path.join(str(store.path), ps["dir"])
        self.ps = ps

    @property
    def probes(self) -> str:
        return os.path.join(self.root, "probes.npy")

    @property
    def descriptors(self) -> str:
        return os.path.join(self.root, "descriptors")

    @property
    def hnsw(self) -> str:
        return os.path.join(self.root, "hnsw")

    def sub(self, *parts: str) -> str:
        p = os.path.join(self.root, *parts)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p

    def images(self) -> np.ndarray:
        try:
            return np.load(self.probes, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise StorageError(f"probe set {self.ps['name']!r}: probe images {self.probes} are missing") from None

    def has_index(self) -> bool:
        return os.path.exists(os.path.join(self.hnsw, "CURRENT.json"))


_MATRICES: dict[str, Any] = {}
_MLOCK = threading.Lock()


def open_matrix(files: ProbeSetFiles):
    """The probe set's DescriptorMatrix (one handle per path and process, refreshed)."""
    from zooql.storage.descriptors import DescriptorMatrix

    path = os.path.realpath(files.descriptors)
    with _MLOCK:
        dm = _MATRICES.get(path)
        if dm is not None:
            try:
                dm.refresh()
                return dm
            except (StorageError, OSError):
                _MATRICES.pop(path, None)
        dm = DescriptorMatrix.open(path, "r+")
        _MATRICES[path] = dm
        return dm


def save_npy(path: str, arr: np.ndarray) -> None:
    from zooql.storage.hub import atomic_write_bytes
    from pathlib import Path

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    atomic_write_bytes(Path(path), buf.getvalue())


# ==== reading probe images ====================================================================

def select_indices(n_total: int, limit: int | None, seed: int | None) -> np.ndarray:
    """Which source images become probes: all, the first ``limit``, or ``limit`` drawn with
    ``seed`` (kept in source order)."""
    if limit is None or limit >= n_total:
        return np.arange(n_total)
    if seed is None:
        return np.arange(limit)
    rng = np.random.default_rng(int(seed))
    return np.sort(rng.choice(n_total, size=int(limit), replace=False))


def _pil_to_array(im) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        hi = a.max() if a.size else 1.0
        return np.clip(a / (hi if hi > 0 else 1.0) * 255.0, 0, 255).astype(np.uint8)
    if im.mode not in ("L", "RGB"):
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8)


def _stack_images(arrays: list[np.ndarray], what: str) -> tuple[np.ndarray, str | None]:
    """Stack decoded uint8 images; mixed channels become RGB, mixed sizes are resized."""
    note = None
    if any(a.ndim == 3 for a in arrays):
        arrays = [np.repeat(a[..., None], 3, axis=-1) if a.ndim == 2 else a for a in arrays]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        from PIL import Image

        out = []
        for a in arrays:
            h, w = a.shape[:2]
            s = min(h, w)
            y, x = (h - s) // 2, (w - s) // 2
            im = Image.fromarray(a[y:y + s, x:x + s])
            out.append(np.asarray(im.resize((COMMON_SIZE, COMMON_SIZE), Image.BILINEAR), dtype=np.uint8))
        arrays = out
        note = f"{what} differ in size: centre-cropped and resized to {COMMON_SIZE}x{COMMON_SIZE}"
    return np.stack(arrays), note


def _decode(data: bytes, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return _pil_to_array(im)
    except (UnidentifiedImageError, OSError) as exc:
        raise ExecutionError(f"cannot decode image {where}: {exc}") from None


@dataclass
class ProbeImages:
    images: np.ndarray
    names: list
    source_index: list
    captions: list | None = None   # from a parquet caption column
    note: str | None = None


def read_folder(path: str, limit, seed) -> ProbeImages:
    from PIL import Image, UnidentifiedImageError

    files = []
    for root, dirs, names in os.walk(path):
        dirs.sort()
        for n in names:
            if n.lower().endswith(IMAGE_EXTS) and not n.startswith("."):
                files.append(os.path.relpath(os.path.join(root, n), path))
    files.sort()
    if not files:
        raise ExecutionError(f"no images ({', '.join(IMAGE_EXTS)}) in folder {path}")
    idx = select_indices(len(files), limit, seed)
    arrays = []
    for i in idx:
        fp = os.path.join(path, files[i])
        try:
            with Image.open(fp) as im:
                im.load()
                arrays.append(_pil_to_array(im))
        except (UnidentifiedImageError, OSError) as exc:
            raise ExecutionError(f"cannot read image {fp}: {exc}") from None
    images, note = _stack_images(arrays, "images")
    return ProbeImages(images, [files[i].replace(os.sep, "/") for i in idx], [int(i) for i in idx], note=note)


def read_npy(path: str, limit, seed) -> ProbeImages:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ExecutionError(f"cannot read {path}: {exc}") from None
    if arr.ndim == 4 and arr.shape[1] in (1, 3) and arr.shape[-1] not in (1, 3, 4):
        arr = np.transpose(arr, (0, 2, 3, 1))  # NCHW -> NHWC
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] not in (3, 4)):
        raise ExecutionError(f"{os.path.basename(path)}: probe images must be [N,H,W], [N,H,W,C] or "
                             f"[N,C,H,W] with C = 1 or 3, got shape {tuple(arr.shape)}")
    idx = select_indices(arr.shape[0], limit, seed)
    images = np.asarray(arr[idx])
    if images.ndim == 4 and images.shape[-1] == 4:
        images = images[..., :3]
    if images.dtype == np.bool_:
        images = images.astype(np.uint8) * 255
    elif np.issubdtype(images.dtype, np.floating):
        if not np.isfinite(images).all():
            raise ExecutionError(f"{os.path.basename(path)}: probe images contain NaN or infinity")
        lo, hi = float(images.min()), float(images.max())
        if lo < -1e-6 or hi > 1.0 + 1e-6:
            raise ExecutionError(f"{os.path.basename(path)}: float images must be in [0, 1] (found "
                                 f"{lo:g}..{hi:g}); save uint8 0..255 or divide by 255")
        images = images.astype(np.float32)
    elif images.dtype != np.uint8:
        if images.min() < 0 or images.max() > 255:
            raise ExecutionError(f"{os.path.basename(path)}: integer images must be 0..255")
        images = images.astype(np.uint8)
    return ProbeImages(np.ascontiguousarray(images), [str(int(i)) for i in idx], [int(i) for i in idx])


_PQ_IMAGE_COLS = ("image", "img", "images", "png", "jpeg", "jpg", "bytes", "path", "file", "filename")
_CAPTION_COLS = ("caption", "captions", "text", "description", "label", "class", "class_name")


def read_parquet(path: str, limit, seed) -> ProbeImages:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ExecutionError(f"cannot read {path}: {exc}") from None
    names = {n.lower(): n for n in table.column_names}
    col = next((names[c] for c in _PQ_IMAGE_COLS if c in names), None)
    if col is None:
        col = next((f.name for f in table.schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)),
                   None)
    if col is None:
        raise ExecutionError(f"{os.path.basename(path)}: no image column (expected one of "
                             f"{', '.join(_PQ_IMAGE_COLS)} holding encoded bytes, {{bytes, path}} structs or "
                             f"file paths); columns: {', '.join(table.column_names)}")
    idx = select_indices(table.num_rows, limit, seed)
    values = table.column(col).take(pa.array(idx, pa.int64())).to_pylist()
    base = os.path.dirname(path)
    arrays, pnames = [], []
    for i, v in zip(idx, values):
        where = f"{os.path.basename(path)} row {int(i)}"
        pname = str(int(i))
        if isinstance(v, dict):
            if v.get("bytes"):
                v = v["bytes"]
            elif v.get("path"):
                v = v["path"]
            else:
                raise ExecutionError(f"{where}: image struct has neither bytes nor path")
        if isinstance(v, (bytes, bytearray)):
            arrays.append(_decode(bytes(v), where))
        elif isinstance(v, str):
            fp = v if os.path.isabs(v) else os.path.join(base, v)
            try:
                with open(fp, "rb") as f:
                    arrays.append(_decode(f.read(), fp))
            except OSError as exc:
                raise ExecutionError(f"{where}: cannot read image {fp}: {exc.strerror}") from None
            pname = v
        else:
            raise ExecutionError(f"{where}: unsupported image value of type {type(v).__name__}")
        pnames.append(pname)
    images, note = _stack_images(arrays, "images")
    captions = None
    ccol = next((names[c] for c in _CAPTION_COLS if c in names and names[c] != col), None)
    if ccol is not None:
        captions = [None if c is None else str(c)
                    for c in table.column(ccol).take(pa.array(idx, pa.int64())).to_pylist()]
    return ProbeImages(images, pnames, [int(i) for i in idx], captions, note)


def read_builtin(limit, seed) -> ProbeImages:
    from zooql.engine.probesets import builtin_probes

    n = int(limit) if limit is not None else BUILTIN_DEFAULT_N
    s = int(seed) if seed is not None else 0
    images = builtin_probes(n=n, size=BUILTIN_SIZE, seed=s)
    return ProbeImages(images, [f"builtin-{i}" for i in range(n)], list(range(n)),
                       note="built-in probes: augmented scikit-image photographs (see docs/find.md)")


def read_captions(path: str, pi: ProbeImages) -> list[str]:
    """Captions of the chosen probes from a CSV with a header (see docs/find.md)."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
    except OSError as exc:
        raise ExecutionError(f"cannot read captions file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ExecutionError(f"captions file {path} is not UTF-8 text") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise ExecutionError(f"captions file {path} is empty")
    header = [h.strip().lower() for h in rows[0]]
    body = rows[1:]
    cap_i = next((header.index(c) for c in _CAPTION_COLS if c in header), None)
    key_i = next((header.index(c) for c in ("file", "filename", "path", "image", "name", "probe") if c in header), None)
    idx_i = next((header.index(c) for c in ("idx", "index", "i", "row") if c in header), None)
    if cap_i is None:
        if len(header) == 1:
            cap_i, body = 0, rows  # a single column without a recognised header: one caption per line
            if header[0] in ("caption", "captions"):
                body = rows[1:]
        elif len(header) == 2 and key_i is None and idx_i is None:
            key_i, cap_i = 0, 1
        else:
            raise ExecutionError(f"captions file {os.path.basename(path)}: needs a 'caption' column "
                                 f"(and optionally 'file' or 'index'); found {', '.join(rows[0])}")
    n = len(pi.names)
    out: list[str | None] = [None] * n
    if key_i is not None:
        lookup: dict[str, str] = {}
        for r in body:
            if len(r) > max(key_i, cap_i):
                k = r[key_i].strip().replace("\\", "/")
                for variant in (k, os.path.basename(k), os.path.splitext(os.path.basename(k))[0]):
                    lookup.setdefault(variant, r[cap_i])
        for j, name in enumerate(pi.names):
            for variant in (name, os.path.basename(name), os.path.splitext(os.path.basename(name))[0]):
                if variant in lookup:
                    out[j] = lookup[variant]
                    break
    else:
        by_src: dict[int, str] = {}
        for pos, r in enumerate(body):
            if len(r) <= cap_i:
                continue
            if idx_i is not None:
                try:
                    by_src[int(r[idx_i])] = r[cap_i]
                except ValueError:
                    raise ExecutionError(f"captions file {os.path.basename(path)}: index {r[idx_i]!r} "
                                         f"is not an integer") from None
            else:
                by_src[pos] = r[cap_i]
        for j, src in enumerate(pi.source_index):
            out[j] = by_src.get(src)
    missing = [pi.names[j] for j, c in enumerate(out) if c is None or not str(c).strip()]
    if missing:
        raise ExecutionError(f"captions file {os.path.basename(path)} has no caption for {len(missing)} of "
                             f"{n} probes (e.g. {', '.join(missing[:3])})")
    return [str(c).strip() for c in out]


def probe_source_kind(path: str) -> str:
    if os.path.isdir(path):
        return "folder"
    low = path.lower()
    if low.endswith(".npy"):
        return "npy"
    if low.endswith(".parquet"):
        return "parquet"
    return "unknown"


# ==== CREATE PROBE SET ========================================================================

def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:40] or "ps"


def create_probe_set(ctx: ExecContext, name: str, kind: str, path: str | None, limit, seed,
                     captions_file: str | None) -> tuple[dict, str | None]:
    """Read, store and register a probe set; returns (catalog row, note)."""
    from zooql.engine.probesets import PROBESET_VERSION, probe_hashes
    from zooql.storage.descriptors import DescriptorMatrix

    if kind == "builtin":
        pi = read_builtin(limit, seed)
        source = f"builtin:v{PROBESET_VERSION}"
    else:
        if not os.path.exists(path):
            raise ExecutionError(f"probe images not found: {path}")
        reader = {"folder": read_folder, "npy": read_npy, "parquet": read_parquet}.get(kind)
        if reader is None:
            raise ExecutionError(f"probe images must be a folder, a .npy or a .parquet file: {path}")
        pi = reader(path, limit, seed)
        source = f"{kind}:{path}"
    n = int(pi.images.shape[0])
    if n < 2:
        raise ExecutionError(f"a probe set needs at least 2 probe images, {path or 'builtin'} gives {n}")
    captions = read_captions(captions_file, pi) if captions_file else pi.captions
    hashes = probe_hashes(pi.images)
    content = hashlib.sha256("".join(hashes).encode()).hexdigest()
    dtype = str(ctx.setting("descriptor_dtype", "float16") or "float16")
    if dtype not in ("float16", "float32"):
        raise ExecutionError(f"setting descriptor_dtype must be 'float16' or 'float32', got {dtype!r}")
    rel = f"probesets/{_safe(name)}-{content[:8]}-{uuid.uuid4().hex[:6]}"
    root = ctx.store.file(*rel.split("/"), "probes.npy")
    save_npy(str(root), pi.images)
    DescriptorMatrix.create(os.path.join(str(ctx.store.path), rel, "descriptors"), n, dtype,
                            meta={"probe_set": name, "content_hash": content})
    row = ctx.con.execute(
        "INSERT INTO probe_sets (name, source, n_probes, shape, dtype, dir, content_hash, probe_limit, seed, "
        "captions, descriptor_dtype) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        [name, source, n, json.dumps(list(pi.images.shape[1:])), str(pi.images.dtype), rel, content,
         limit, seed, captions_file or ("column" if captions else None), dtype]).fetchone()
    import pyarrow as pa

    tbl = pa.table({"probe_set_id": pa.array([row[0]] * n, pa.int32()), "idx": pa.array(range(n), pa.int32()),
                    "name": pa.array([str(x) for x in pi.names], pa.string()),
                    "sha256": pa.array(hashes, pa.string()),
                    "caption": pa.array(captions if captions else [None] * n, pa.string())})
    ctx.con.register("_zooql_probes", tbl)
    try:
        ctx.con.execute("INSERT INTO probes SELECT probe_set_id, idx, name, sha256, caption FROM _zooql_probes")
    finally:
        ctx.con.unregister("_zooql_probes")
    return probe_set_row(ctx.con, name), pi.note


@dataclass(frozen=True)
class CreateProbeSet(Operator):
    """Read probe images, store them (probes.npy) with their hashes, create the empty
    descriptor matrix and register the set. ``auto``: the built-in set made on first use."""

    probe_set: str = ""
    kind: str = ""            # folder | npy | parquet | builtin
    path: str | None = None
    limit: int | None = None
    seed: int | None = None
    captions: str | None = None
    auto: bool = False
    writes: ClassVar[bool] = True

    def explain_params(self):
        return {"name": self.probe_set, "source": self.kind,
                "path": os.path.basename(self.path) if self.path else None,
                "limit": self.limit if self.limit is not None else (BUILTIN_DEFAULT_N if self.kind == "builtin" else None),
                "seed": self.seed, "captions": os.path.basename(self.captions) if self.captions else None,
                "auto": self.auto or None}

    def run(self, ctx, inputs):
        if probe_set_row(ctx.con, self.probe_set) is not None:
            if self.auto:
                return Rows(["probe_set"], [])
            raise ExecutionError(f"probe set {self.probe_set!r} already exists")
        ctx.report(f"reading probes for {self.probe_set}", 0, 1)
        ps, note = create_probe_set(ctx, self.probe_set, self.kind, self.path, self.limit, self.seed, self.captions)
        ctx.report(f"reading probes for {self.probe_set}", 1, 1)
        msg = (f"created probe set {self.probe_set}: {ps['n_probes']} probes of shape "
               f"{ps['shape']} {ps['dtype']}" + (", with captions" if ps["has_captions"] else ""))
        if note:
            msg += f" ({note})"
        return Rows(["probe_set", "probes", "shape", "captions", "content_hash"],
                    [(self.probe_set, ps["n_probes"], ps["shape"], ps["has_captions"], ps["content_hash"][:16])],
                    message=msg)


# ==== PROBE ===================================================================================

_RUNTIMES: dict[tuple, Any] = {}


def runtime_for(ctx: ExecContext, device: str | None = None):
    """The hub's model runtime, or a runtime for another device (PROBE ... DEVICE 'x')."""
    rt = ctx.runtime
    if not device or device == getattr(rt, "device", "cpu"):
        return rt
    from zooql.engine.runtime import ModelRuntime

    key = (device, bool(ctx.setting("trust_code", False)))
    if key not in _RUNTIMES:
        _RUNTIMES[key] = ModelRuntime(device=device, trust_code=key[1])
    return _RUNTIMES[key]


def load_model(runtime, m: dict):
    return runtime.load(m["name"], m["source"], m["checkpoint"], model_options(m))


def _delete_orphans(ctx: ExecContext, ps: dict, dm) -> int:
    """Delete matrix columns no catalog row names (left by an interrupted run)."""
    _, first, ncols = runs_of(ctx.con, ps["id"])
    if dm.n_columns == int(ncols.sum()):
        return 0
    live = dm.column_ids()
    orphans = np.setdiff1d(live, run_columns(first, ncols), assume_unique=True)
    return dm.delete_columns(orphans) if orphans.size else 0


def _load_index(files: ProbeSetFiles):
    from zooql.engine import ops_find

    return ops_find.load_index(files)


def probe_models(ctx: ExecContext, ps_name: str, model_names, *, batch: int, device: str | None,
                 label: str = "probe", sample_pct: float | None = None, sample_seed: int | None = None,
                 reg: float | None = None) -> tuple[list[tuple], list[str]]:
    """Probe ``model_names`` (skipping those already probed) with a probe set, committing
    after every model. Returns (result rows, notes).

    ``sample_pct``: collaborative probing -- each model runs on its own random subset of
    the probes (:func:`zooql.engine.completion.sample_mask`); its raw logits are stored
    with NaN at the unobserved probes, its mask in ``probe_masks``, and its descriptors
    are completed against the stored probe factors (fold-in) or, when there are none
    yet, provisional (missing responses at the row mean) until CompleteDescriptors fits
    the factors."""
    from zooql.engine import completion as CP
    from zooql.engine.probelog import zscore_columns
    from zooql.storage import catalog as C

    ps = probe_set_row(ctx.con, ps_name)
    if ps is None:
        raise ExecutionError(f"probe set {ps_name!r} does not exist")
    files = ProbeSetFiles(ctx.store, ps)
    dm = open_matrix(files)
    _delete_orphans(ctx, ps, dm)
    probed = probed_model_ids(ctx.con, ps["id"])
    todo, rows, notes = [], [], []
    for name in model_names:
        m = C.model_row(ctx.con, name)
        if m is None:
            rows.append((name, None, "dropped", None))
        elif m["id"] in probed:
            rows.append((name, m["num_logits"], "already probed", None))
        elif not m["loadable"] or m["num_logits"] is None:
            rows.append((name, m["num_logits"], "not probeable (no loadable logits)", None))
        else:
            todo.append(m)
    if not todo:
        return rows, notes
    images = files.images()
    n = ps["n_probes"]
    runtime = runtime_for(ctx, device)
    index = _load_index(files) if files.has_index() else None
    index_dirty = False
    failures = []
    factors = CP.load_factors(files) if sample_pct is not None else None
    passes = 0
    try:
        for i, m in enumerate(todo):
            t0 = time.perf_counter()
            mask = None
            run_images = images
            if sample_pct is not None:
                mask = CP.sample_mask(n, sample_pct, sample_seed or 0, m["id"])
                run_images = np.asarray(images[np.flatnonzero(mask)])
            try:
                loaded = load_model(runtime, m)
                logits = runtime.run(loaded, run_images, batch_size=batch,
                                     progress=lambda d, t, _m=m["name"]: ctx.report(f"probing {_m}", d, t))
            except ExecutionError as exc:
                failures.append(m["name"])
                rows.append((m["name"], m["num_logits"], f"failed: {exc.message}", None))
                ctx.report(label, i + 1, len(todo))
                continue
            logits = np.asarray(logits, dtype=np.float32)
            n_run = int(run_images.shape[0])
            if logits.ndim != 2 or logits.shape[0] != n_run or logits.shape[1] != m["num_logits"]:
                failures.append(m["name"])
                rows.append((m["name"], m["num_logits"], f"failed: output shape {tuple(logits.shape)} is not "
                             f"[{n_run} probes, {m['num_logits']} logits]", None))
                ctx.report(label, i + 1, len(todo))
                continue
            if not np.isfinite(logits).all():
                failures.append(m["name"])
                rows.append((m["name"], m["num_logits"], "failed: logits contain NaN or infinity", None))
                ctx.report(label, i + 1, len(todo))
                continue
            passes += n_run
            status, completion = "probed", None
            if mask is None:
                desc = zscore_columns(logits)
            else:
                full = np.full((n, logits.shape[1]), np.nan, np.float32)
                full[mask] = logits
                logits = full
                M = np.broadcast_to(mask, (full.shape[1], n))
                if factors is not None and factors[0].shape[0] == n:
                    lam = reg if reg is not None else factors[1].get("reg", CP.DEFAULT_REG)
                    Zc = CP.fold_in(full.T, M, factors[0], lam)
                    completion = "fold-in"
                else:
                    Zc, _, _ = CP.standardize_rows(full.T, M)
                    completion, status = "provisional", "probed (provisional)"
                desc = zscore_columns(Zc.T)
            raw_rel = f"{ps['dir']}/raw/m{m['id']}.npy"
            save_npy(files.sub("raw", f"m{m['id']}.npy"), logits)
            start, end = dm.append_columns(desc)
            seconds = time.perf_counter() - t0
            ctx.con.execute("INSERT INTO probe_runs (probe_set_id, model_id, first_col, n_cols, raw_file, device, "
                            "seconds) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            [ps["id"], m["id"], start, end - start, raw_rel, getattr(runtime, "device", None),
                             seconds])
            ctx.con.execute("INSERT INTO descriptor_columns SELECT ?, ? + i, ?, i FROM range(?) t(i)",
                            [ps["id"], start, m["id"], end - start])
            if mask is not None:
                mask_rel = f"{ps['dir']}/raw/m{m['id']}.mask.npy"
                save_npy(files.sub("raw", f"m{m['id']}.mask.npy"), mask)
                ctx.con.execute("INSERT INTO probe_masks (probe_set_id, model_id, sample_pct, seed, n_observed, "
                                "mask_file, completion) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                [ps["id"], m["id"], float(sample_pct), int(sample_seed or 0), int(mask.sum()),
                                 mask_rel, completion])
            # per-model commit: an interrupt keeps the finished models
            ctx.con.execute("COMMIT")
            ctx.con.execute("BEGIN TRANSACTION")
            if index is not None:
                index.add(desc.T.astype(np.float32), np.arange(start, end, dtype=np.int64), num_threads=1)
                index_dirty = True
            rows.append((m["name"], m["num_logits"], status, round(seconds, 3)))
            ctx.report(label, i + 1, len(todo))
    finally:
        if index_dirty:
            from zooql.engine import ops_find

            ops_find.save_index(ctx, files, index)
    done = sum(1 for r in rows if str(r[2]).startswith("probed"))
    if done:
        notes.append(f"probed {done} model{'s' if done != 1 else ''} with {ps_name} ({passes} forward passes"
                     + (f", SAMPLE {sample_pct:g} PERCENT" if sample_pct is not None else "") + ")")
    if failures:
        notes.append(f"{len(failures)} failed: {', '.join(failures[:5])}{'...' if len(failures) > 5 else ''}")
    return rows, notes


@dataclass(frozen=True)
class ProbeModels(Operator):
    """Run models over a probe set; store raw logits and z-scored descriptor columns;
    commit after each model. ``on_demand``: inserted by FIND for models not probed yet."""

    probe_set: str = ""
    models: tuple = ()
    n_probes: int | None = None
    already_probed: tuple = ()   # names selected but already probed (reported, not run)
    batch: int = DEFAULT_BATCH
    device: str | None = None
    on_demand: bool = False
    sample_pct: float | None = None   # SAMPLE p PERCENT: collaborative probing
    sample_seed: int | None = None
    reg: float | None = None          # ridge penalty of the fold-in (None: the stored factors')
    child: Operator | None = None
    writes: ClassVar[bool] = True

    def explain_params(self):
        per = self.n_probes
        if per and self.sample_pct is not None:
            per = max(2, min(per, int(round(per * self.sample_pct / 100.0))))
        return {"probe_set": self.probe_set, "models": len(self.models),
                "forward_passes": len(self.models) * per if per else None,
                "sample_pct": self.sample_pct, "seed": self.sample_seed if self.sample_pct is not None else None,
                "already_probed": len(self.already_probed) or None, "batch": self.batch, "device": self.device,
                "on_demand": self.on_demand or None}

    def run(self, ctx, inputs):
        rows, notes = probe_models(ctx, self.probe_set, self.already_probed + self.models, batch=self.batch,
                                   device=self.device,
                                   label="on-demand probe" if self.on_demand else "probe",
                                   sample_pct=self.sample_pct, sample_seed=self.sample_seed, reg=self.reg)
        msg = "; ".join(notes) if notes else f"nothing to probe: all selected models are probed with {self.probe_set}"
        if inputs and inputs[0].message and not self.on_demand:
            msg = inputs[0].message + "; " + msg
        return Rows(["model", "logits", "status", "seconds"], rows, message=msg)


# ==== hooks: DROP MODEL, DESCRIBE MODEL ========================================================

def _drop_hook(ctx: ExecContext, model_id: int, name: str) -> None:
    if not tables_exist(ctx.con):
        return
    runs = ctx.con.execute(
        "SELECT r.probe_set_id, r.first_col, r.n_cols, r.raw_file, p.name, p.dir FROM probe_runs r "
        "JOIN probe_sets p ON p.id = r.probe_set_id WHERE r.model_id = ?", [model_id]).fetchall()
    if not runs:
        return
    ctx.con.execute("DELETE FROM descriptor_columns WHERE model_id = ?", [model_id])
    ctx.con.execute("DELETE FROM probe_masks WHERE model_id = ?", [model_id])
    ctx.con.execute("DELETE FROM probe_runs WHERE model_id = ?", [model_id])
    store = ctx.store

    def after():  # runs once the DROP has committed
        for ps_id, first, ncols, raw, ps_name, ps_dir in runs:
            files = ProbeSetFiles(store, {"dir": ps_dir, "name": ps_name})
            cols = np.arange(first, first + ncols, dtype=np.int64)
            try:
                open_matrix(files).delete_columns(cols)
                if files.has_index():
                    from zooql.engine import ops_find

                    idx = ops_find.load_index(files)
                    idx.mark_deleted(cols)
                    ops_find.save_index(None, files, idx, store=store)
                if raw:
                    try:
                        os.unlink(os.path.join(str(store.path), raw))
                    except OSError:
                        pass
            except (StorageError, OSError):
                pass  # the catalog no longer names these columns; searches ignore them

    ctx.after_commit.append(after)


def _describe_hook(ctx: ExecContext, m: dict) -> list[tuple[str, Any]]:
    if not tables_exist(ctx.con):
        return []
    rows = ctx.con.execute(
        "SELECT p.name, p.n_probes, r.probed_at, k.n_observed, k.completion FROM probe_runs r "
        "JOIN probe_sets p ON p.id = r.probe_set_id "
        "LEFT JOIN probe_masks k ON k.probe_set_id = r.probe_set_id AND k.model_id = r.model_id "
        "WHERE r.model_id = ? ORDER BY p.name", [m["id"]]).fetchall()
    text = ", ".join(f"{name} ({n} probes, {str(at)[:19]})" for name, n, at, _, _ in rows)
    out = [("probed_with", text or None)]
    sampled = [(name, n, k, c) for name, n, _, k, c in rows if k is not None]
    if sampled:
        out.append(("observed_fraction", ", ".join(
            f"{name}: {k / n:.2f} ({k}/{n} probes observed, rest completed: {c})" for name, n, k, c in sampled)))
    return out


ops_catalog.DROP_MODEL_HOOKS.append(_drop_hook)
ops_catalog.DESCRIBE_MODEL_HOOKS.append(_describe_hook)
