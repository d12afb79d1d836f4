"""Reading probe images for CREATE PROBE SET: a folder of images, an .npy array, a Parquet
table of encoded images, or the built-in natural-image set; plus the probes' captions file.
Every reader returns :class:`ProbeImages` in probe order (deterministic for a given LIMIT/SEED)."""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass

import numpy as np

from zooql.runtime.images import IMAGE_EXTS, list_image_files  # noqa: F401
from zooql.errors import ExecutionError

#: Images of a folder / parquet file that differ in size are resized to this square.
COMMON_SIZE = 224

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
    captions: list | None = None   # from a parquet caption column, or the class folder names
    note: str | None = None
    captions_from: str = "column"  # column | folders


def read_folder(path: str, limit, seed) -> ProbeImages:
    from PIL import Image, UnidentifiedImageError

    files = list_image_files(path)
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
    names = [files[i].replace(os.sep, "/") for i in idx]
    captions = class_folder_captions(names)
    if captions is not None:
        n_cls = len(set(captions))
        note = "; ".join(x for x in (note, f"captions from the {n_cls} class folder name{'s' if n_cls > 1 else ''} "
                                              f"(<class>/<image>; a CAPTIONS FROM file overrides them)") if x)
    return ProbeImages(images, names, [int(i) for i in idx], captions, note=note,
                       captions_from="folders")


def class_folder_captions(names: list[str]) -> list[str] | None:
    """``<class>/<image>`` layout (every image exactly one folder deep): each probe's caption is
    its folder name, underscores and hyphens as spaces (``tabby_cat/1.png`` -> ``tabby cat``)."""
    parts = [n.split("/") for n in names]
    if not parts or any(len(p) != 2 for p in parts):
        return None
    return [p[0].replace("_", " ").replace("-", " ").strip() or p[0] for p in parts]


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


def read_builtin(limit, seed, default_n: int = 256, size: int = 224) -> ProbeImages:
    from zooql.methods.probelog.probesets import builtin_probes

    n = int(limit) if limit is not None else int(default_n)
    s = int(seed) if seed is not None else 0
    images = builtin_probes(n=n, size=int(size), seed=s)
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
