"""User-given names that become file names inside the hub.

A task, probe set or other object is named by the user (``CREATE TASK "../x" ...``); the
catalog keeps the name as given, but a file never takes it verbatim: :func:`file_stem`
maps it to ``<slug>-<hash>`` where the slug keeps only ``[A-Za-z0-9_-]`` (at most 40
characters, never empty, never a reserved device name) and the hash (sha256 of the exact
name) keeps two names that share a slug apart. :func:`check_name` refuses names no
catalog should hold (empty, NUL or other control characters, over 256 characters), and
:func:`inside` is the last guard: a path that resolves outside the hub is a StorageError.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from zooql.errors import BindError, StorageError

MAX_NAME = 256
_SLUG = re.compile(r"[^A-Za-z0-9_-]+")
# Names Windows reserves for devices (a hub folder may be shared with such a system).
RESERVED = frozenset({"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)),
                      *(f"LPT{i}" for i in range(10))})


def check_name(name: str, what: str) -> str:
    """``name`` if it can name a catalog object, else a BindError saying why."""
    if not isinstance(name, str) or not name.strip():
        raise BindError(f"{what} name must not be empty")
    if len(name) > MAX_NAME:
        raise BindError(f"{what} name is {len(name)} characters long; at most {MAX_NAME}")
    bad = next((c for c in name if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise BindError(f"{what} name {name[:40]!r} contains the control character {bad!r}")
    return name


def file_stem(name: str, max_len: int = 40) -> str:
    """A file-name stem for ``name``: safe on every file system and unique per name."""
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    slug = _SLUG.sub("_", name).strip("_")[:max_len] or "x"
    if slug.upper().split(".")[0] in RESERVED:
        slug = "_" + slug
    return f"{slug}-{digest}"


def inside(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """``path`` (resolved) if it lies under ``root``, else a StorageError."""
    root_r = Path(root).resolve()
    p = Path(path)
    if "\x00" in str(p):
        raise StorageError(f"refusing a file name with a NUL character under hub {root_r}")
    resolved = (root_r / p).resolve() if not p.is_absolute() else p.resolve()
    if resolved != root_r and root_r not in resolved.parents:
        raise StorageError(f"refusing to write {resolved}: outside the hub {root_r}")
    return resolved
