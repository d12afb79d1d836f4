"""The hub on disk: a directory holding ``catalog.duckdb`` plus matrix and index files.

* ``zooql_hub.json`` records the format version; it is checked on every open.
* Writes take an exclusive lock file (``hub.lock``, ``fcntl.flock``); a second writer
  gets a :class:`StorageError` naming the lock and its holder. Readers take no lock.
* Every statement runs in one DuckDB transaction (:meth:`HubStore.write`): an error or
  an interrupt rolls it back, so a failed statement leaves the hub as it was. Files
  beside the catalog are written to a temporary name and renamed into place
  (:func:`atomic_write_bytes`, :func:`replace_file`).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from importlib import resources
from pathlib import Path
from typing import Iterator

import duckdb

from zooql.errors import StorageError

FORMAT_VERSION = 1
MARKER = "zooql_hub.json"
CATALOG = "catalog.duckdb"
LOCK = "hub.lock"


def default_hub_path() -> Path:
    """The embedded default hub: ``$ZOOQL_HOME`` or ``$XDG_DATA_HOME/zooql/default-hub``."""
    if os.environ.get("ZOOQL_HOME"):
        return Path(os.environ["ZOOQL_HOME"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "zooql" / "default-hub"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def replace_file(tmp: Path, final: Path) -> None:
    """Rename a fully written temporary file into place (atomic on POSIX)."""
    os.replace(tmp, final)


class HubStore:
    """Owns the hub directory: format check, lock, and DuckDB connections."""

    def __init__(self, path: str | os.PathLike, *, create: bool = True,
                 schemas: tuple[str, ...] = ()):
        self.path = Path(path).expanduser().resolve()
        self.schemas = tuple(schemas)
        self.catalog_path = self.path / CATALOG
        self._lock_fd: int | None = None
        self._open(create)

    # ---- opening and format ------------------------------------------------------------
    def _open(self, create: bool) -> None:
        marker = self.path / MARKER
        if self.path.exists() and not self.path.is_dir():
            raise StorageError(f"hub path {self.path} exists and is not a directory")
        if marker.exists():
            try:
                info = json.loads(marker.read_text())
                version = int(info["format_version"])
            except (ValueError, KeyError, TypeError) as exc:
                raise StorageError(f"hub {self.path}: unreadable {MARKER} ({exc})") from None
            if version != FORMAT_VERSION:
                raise StorageError(
                    f"hub {self.path} has format version {version}; this ZooQL reads version "
                    f"{FORMAT_VERSION}")
            return
        if self.path.exists() and any(p for p in self.path.iterdir() if not p.name.startswith(".")):
            raise StorageError(f"{self.path} is not a ZooQL hub (no {MARKER}) and is not empty")
        if not create:
            raise StorageError(f"no hub at {self.path}")
        self.path.mkdir(parents=True, exist_ok=True)
        with self.writer():
            con = duckdb.connect(str(self.catalog_path))
            try:
                con.execute(self.schema_sql())
                con.execute("INSERT OR REPLACE INTO meta VALUES ('format_version', ?)",
                            [str(FORMAT_VERSION)])
            finally:
                con.close()
            atomic_write_bytes(marker, json.dumps({"format_version": FORMAT_VERSION}).encode())

    def schema_sql(self) -> str:
        """The core schema.sql plus the schema SQL of every registered method (idempotent)."""
        core = resources.files("zooql.storage").joinpath("schema.sql").read_text()
        return "\n".join((core,) + self.schemas)

    # ---- locking -------------------------------------------------------------------------
    @contextlib.contextmanager
    def writer(self) -> Iterator[None]:
        """Hold the hub's writer lock (re-entrant within this object)."""
        if self._lock_fd is not None:
            yield
            return
        lock_path = self.path / LOCK
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise StorageError(
                f"hub {self.path} is locked by another writer (lock file {lock_path}, held by "
                f"pid {holder}); only one writer at a time") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd
        try:
            yield
        finally:
            self._lock_fd = None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # ---- connections ---------------------------------------------------------------------
    def _connect(self, read_only: bool, timeout: float = 10.0) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return duckdb.connect(str(self.catalog_path), read_only=read_only)
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise StorageError(f"cannot open catalog {self.catalog_path}: {exc}") from None
                time.sleep(0.05)

    @contextlib.contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        con = self._connect(read_only=True)
        try:
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One atomic statement: lock, BEGIN, yield, COMMIT (ROLLBACK on any exception)."""
        with self.writer():
            con = self._connect(read_only=False)
            try:
                con.execute(self.schema_sql())  # later versions add tables idempotently
                con.execute("BEGIN TRANSACTION")
                try:
                    yield con
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
            finally:
                con.close()

    def file(self, *parts: str) -> Path:
        """Path of a file beside the catalog (matrices, indexes, caches)."""
        from zooql.storage.names import inside

        p = inside(self.path, self.path.joinpath(*parts))  # never a path outside the hub
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def named_file(self, folder: str, name: str, suffix: str) -> Path:
        """A file for the user-named object ``name``: ``<folder>/<safe stem><suffix>``, the
        stem mapped by :func:`zooql.storage.names.file_stem` (no ``..``, separators, NUL)."""
        from zooql.storage.names import file_stem

        return self.file(folder, file_stem(name) + suffix)
