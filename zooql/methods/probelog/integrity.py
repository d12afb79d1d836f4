"""Checksums of ProbeLog's files (descriptor segments, HNSW index): a *stamp* records a
file's size, modification time and SHA-256 when it is written; opening compares size and
header always and the checksum when the file's size or time changed (or after a crash),
``CHECK HUB`` compares every checksum."""
from __future__ import annotations

import contextlib
import json
import mmap
import os
import tempfile

import numpy as np

from zooql.errors import StorageError
from zooql.storage.hub import sha256_file


def stamp(path: str) -> dict:
    """Size, mtime and SHA-256 of a file just written."""
    st = os.stat(path)
    return {"bytes": int(st.st_size), "mtime_ns": int(st.st_mtime_ns), "sha256": sha256_file(path)}


def changed(path: str, st: dict | None) -> bool:
    """True when the file's size or modification time differ from its stamp (cheap)."""
    if not st:
        return False
    try:
        s = os.stat(path)
    except FileNotFoundError:
        raise StorageError(f"file {path} is missing") from None
    return int(s.st_size) != int(st["bytes"]) or int(s.st_mtime_ns) != int(st.get("mtime_ns", -1))


def verify(path: str, st: dict | None, what: str, fix: str) -> None:
    """Raise StorageError naming ``path`` when its size or SHA-256 differ from the stamp."""
    if not st:
        return
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        raise StorageError(f"{what} {path} is missing; {fix}") from None
    if size != int(st["bytes"]):
        raise StorageError(f"{what} {path} has {size} bytes, its manifest records {st['bytes']}; {fix}")
    if sha256_file(path) != st["sha256"]:
        raise StorageError(f"{what} {path} fails its checksum (its data changed since it was written); {fix}")


#: what a damaged index's error tells the user to do (the HNSW and the reduced index alike)
INDEX_FIX = "delete the folder {path}; the next FIND rebuilds the index from the descriptors"


def read_index_pointer(path: str, fmt: str, what: str) -> dict | None:
    """An index folder's ``CURRENT.json`` (None when there is none); a StorageError when it
    is unreadable or not of format ``fmt``, version 1. ``what`` names the index in errors."""
    p = os.path.join(path, "CURRENT.json")
    if not os.path.exists(p):
        return None
    try:
        with open(p) as f:
            cur = json.load(f)
    except (OSError, ValueError) as e:
        raise StorageError(f"corrupt {what} pointer {p}: {e}") from None
    if cur.get("format") != fmt or cur.get("version") != 1:
        raise StorageError(f"{p} is not a ZooQL {what} of a supported version")
    return cur


# ---- atomic writes and checked memory maps of .npy files (descriptor segments) --------------

def fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_npy(path: str, arr: np.ndarray) -> None:
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npy", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, arr, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str, obj) -> None:
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=d)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(d)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def open_npy_mmap(path: str, fix: str = "restore it from a backup"):
    """Memory-map a ``.npy`` file read-only: ``(array, mmap)``.

    We own the mapping (rather than ``np.load(mmap_mode='r')``) so that we can
    ``madvise`` it: MADV_RANDOM disables read-around (the kernel would otherwise read
    megabytes of neighbouring probe rows on every fault) and :meth:`zooql.methods.probelog.descriptors.
    DescriptorMatrix.prefetch` issues MADV_WILLNEED for exactly the rows a query needs.
    """
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        except (ValueError, EOFError, SyntaxError, TypeError) as exc:
            raise StorageError(f"descriptor segment {path} has no valid .npy header ({exc}); {fix}") from None
        offset = f.tell()
        if fortran or dtype.hasobject:
            raise StorageError(f"{path} is not a C-order numeric array; {fix}")
        size = int(np.prod(shape)) * dtype.itemsize
        if size == 0:
            return np.zeros(shape, dtype), None
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    if len(mm) != offset + size:
        what = "truncated" if len(mm) < offset + size else "longer than its header says"
        raise StorageError(f"descriptor segment {path} is {what} ({len(mm)} bytes, expected "
                           f"{offset + size}); {fix}")
    if hasattr(mm, "madvise") and hasattr(mmap, "MADV_RANDOM"):
        with contextlib.suppress(OSError):
            mm.madvise(mmap.MADV_RANDOM)
    arr = np.ndarray(shape, dtype=dtype, buffer=mm, offset=offset)
    return arr, mm
