"""The hub on disk: a directory holding ``catalog.duckdb`` plus matrix and index files.

* ``zooql_hub.json`` records the format version; it is checked on every open.
* A writing statement holds an exclusive lock file (``hub.lock``, ``fcntl.flock``) for
  its whole duration; a second writer gets a :class:`StorageError` naming the lock and
  its holder at once, or waits up to the ``lock_timeout`` setting. Readers take no lock
  file: they open the catalog read-only and retry for up to :data:`READ_RETRY_S` while a
  writer holds DuckDB's read-write connection for a commit.
* Read-only connections are kept open between statements (:class:`SharedReads`, one per
  catalog file and process) while statements keep coming: a statement reads through a
  cursor of it instead of opening the catalog again (which costs tens of ms on a large
  catalog). Holding it never gives stale reads, because DuckDB's file lock keeps every
  writer out while it is open: it is handed back after :data:`READ_IDLE_S` without a
  statement, at once when a writer holds ``hub.lock``, and before this process opens the
  catalog read-write; the catalog file's identity, size and mtime are checked on each use.
* Short statements run in one DuckDB transaction (:meth:`HubStore.write`); long ones
  (:class:`StatementConnections`) do their work over a read-only connection and open the
  catalog read-write only for short commits. An error or an interrupt rolls the open
  transaction back, so a failed statement leaves the hub as it was. Files
  beside the catalog are written to a temporary name and renamed into place
  (:func:`atomic_write_bytes`).
"""
from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import os
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Iterator

import duckdb

from zooql.errors import StorageError

#: the format this ZooQL writes. 2: ProbeLog's raw logits may be stored per PROBE commit group
#: (``probe_runs.raw_col``, ``probe_raw_files``), which a ZooQL reading format 1 would misread
FORMAT_VERSION = 2
#: formats this ZooQL opens; an older one is upgraded in place by the first write (its schema
#: additions are idempotent, and every file it names keeps its meaning)
READS_FORMATS = (1, 2)
MARKER = "zooql_hub.json"
CATALOG = "catalog.duckdb"
LOCK = "hub.lock"
#: How long a reader retries opening the catalog while a writer commits (seconds).
READ_RETRY_S = 2.0
#: How long the writer retries opening the catalog read-write while readers hold it.
WRITE_OPEN_S = 30.0
#: How long the shared read-only connections stay open without a statement (seconds; 0:
#: open the catalog for every statement).
READ_IDLE_S = 0.5


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


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (checksums of the files beside the catalog)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def is_temporary(name: str) -> bool:
    """Names of files written under a temporary name and renamed into place
    (:func:`atomic_write_bytes`: ``.<name>.tmp-<pid>``; the methods' ``.tmp-*``)."""
    return name.startswith(".tmp-") or (name.startswith(".") and ".tmp-" in name)


class HubStore:
    """Owns the hub directory: format check, lock, and DuckDB connections."""

    def __init__(self, path: str | os.PathLike, *, create: bool = True,
                 schemas: tuple[str, ...] = ()):
        self.path = Path(path).expanduser().resolve()
        self.schemas = tuple(schemas)
        self.catalog_path = self.path / CATALOG
        self._lock_fd: int | None = None
        self.crashed_writer: str | None = None   # pid a dead writer left in hub.lock (last lock taken)
        self._open(create)

    # ---- opening and format ------------------------------------------------------------
    @staticmethod
    def check_creatable(path: str | os.PathLike) -> None:
        """Raise StorageError unless a hub could be created at `path` (missing, or an empty
        folder)."""
        p = Path(path).expanduser().resolve()
        if p.exists() and not p.is_dir():
            raise StorageError(f"hub path {p} exists and is not a directory")
        if p.exists() and not (p / MARKER).exists() and any(
                x for x in p.iterdir() if not x.name.startswith(".")):
            raise StorageError(f"{p} is not a ZooQL hub (no {MARKER}) and is not empty")

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
            if version not in READS_FORMATS:
                raise StorageError(
                    f"hub {self.path} has format version {version}; this ZooQL reads version "
                    f"{FORMAT_VERSION}" + ("; upgrade ZooQL to open it" if version > FORMAT_VERSION else ""))
            self._marker_version = version
            self._check_catalog_version()
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

    def _check_catalog_version(self) -> None:
        """The format version the catalog itself records (``meta``) must be one this ZooQL reads."""
        if not self.catalog_path.exists():
            return
        with self.read() as con:
            try:
                row = con.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
            except duckdb.Error as exc:
                raise StorageError(f"hub {self.path}: catalog {self.catalog_path} has no readable meta "
                                   f"table ({' '.join(str(exc).split())[:200]})") from None
        if row is None:
            return
        try:
            version = int(row[0])
        except (TypeError, ValueError):
            raise StorageError(f"hub {self.path}: catalog {self.catalog_path} records an unreadable format "
                               f"version {row[0]!r}") from None
        if version not in READS_FORMATS:
            raise StorageError(
                f"hub {self.path}: catalog {self.catalog_path} has format version {version}; this ZooQL "
                f"reads version {FORMAT_VERSION}"
                + ("; upgrade ZooQL to open it" if version > FORMAT_VERSION else ""))

    def prepare_write(self, con) -> None:
        """On a new read-write connection (writer lock held): the schema (idempotent: later
        versions add tables and columns) and, for a hub of an older format, its upgrade to
        :data:`FORMAT_VERSION` in the catalog's ``meta`` and then in the marker file."""
        con.execute(self.schema_sql())
        if getattr(self, "_marker_version", FORMAT_VERSION) < FORMAT_VERSION:
            con.execute("UPDATE meta SET value = ? WHERE key = 'format_version' "
                        "AND TRY_CAST(value AS INTEGER) < ?", [str(FORMAT_VERSION), FORMAT_VERSION])
            atomic_write_bytes(self.path / MARKER, json.dumps({"format_version": FORMAT_VERSION}).encode())
            self._marker_version = FORMAT_VERSION

    def schema_sql(self) -> str:
        """The core schema.sql plus the schema SQL of every registered method (idempotent)."""
        core = resources.files("zooql.storage").joinpath("schema.sql").read_text()
        return "\n".join((core,) + self.schemas)

    # ---- locking -------------------------------------------------------------------------
    @contextlib.contextmanager
    def writer(self, timeout: float = 0.0) -> Iterator[None]:
        """Hold the hub's writer lock (re-entrant within this object). ``timeout``: seconds
        to wait for another writer to finish (0: fail at once)."""
        if self._lock_fd is not None:
            yield
            return
        lock_path = self.path / LOCK
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + max(0.0, float(timeout or 0.0))
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                try:
                    holder = self.lock_holder(fd)
                finally:
                    os.close(fd)
                waited = f" (waited {timeout:g} s)" if timeout else ""
                raise StorageError(
                    f"hub {self.path} is locked by another writer (lock file {lock_path}, held by "
                    f"pid {holder}); only one writer at a time{waited}") from None
        previous = os.pread(fd, 64, 0).decode(errors="replace").strip()
        # a pid left in the file means its writer died inside a statement
        self.crashed_writer = previous or None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd
        if self.crashed_writer:
            self.remove_temporary_files()
        try:
            yield
        finally:
            self._lock_fd = None
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def remove_temporary_files(self) -> int:
        """Delete the temporary files a writer killed mid-write left (under the writer lock:
        only writers make them). Returns how many."""
        n = 0
        for dirpath, _, filenames in os.walk(self.path):
            for fn in filenames:
                if is_temporary(fn):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(dirpath, fn))
                        n += 1
        return n

    @staticmethod
    def lock_holder(fd: int | None = None, path: Path | None = None) -> str:
        try:
            if fd is None:
                with open(path, "rb") as f:
                    return f.read(64).decode(errors="replace").strip() or "unknown"
            return os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        except OSError:
            return "unknown"

    # ---- connections ---------------------------------------------------------------------
    def _connect(self, read_only: bool, timeout: float | None = None) -> duckdb.DuckDBPyConnection:
        """Open the catalog, retrying while another process holds a conflicting DuckDB lock
        (readers: a writer's commit window; the writer: readers' short connections). Before
        opening it read-write, this process's shared read-only connections are closed."""
        if not read_only:
            self.shared.close()
        return self._retrying(lambda: duckdb.connect(str(self.catalog_path), read_only=read_only),
                              read_only, timeout)

    def _retrying(self, fn, read_only: bool, timeout: float | None = None):
        """``fn()``, retried while another process holds a conflicting DuckDB lock on the
        catalog (readers: a writer's commit window; the writer: readers' connections)."""
        if timeout is None:
            timeout = READ_RETRY_S if read_only else WRITE_OPEN_S
        deadline = time.monotonic() + timeout
        while True:
            try:
                return fn()
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise StorageError(f"cannot open catalog {self.catalog_path}: {exc}") from None
                if time.monotonic() > deadline:
                    holder = self.lock_holder(path=self.path / LOCK)
                    who = "a writer" if read_only else "readers"
                    raise StorageError(
                        f"hub {self.path} is busy: {who} kept the catalog {self.catalog_path} open for "
                        f"more than {timeout:g} s (writer pid {holder}); try again") from None
                time.sleep(0.01)
            except duckdb.Error as exc:  # e.g. this process holds it open the other way
                raise StorageError(f"cannot open catalog {self.catalog_path}: "
                                   f"{' '.join(str(exc).split())[:300]}") from None

    def attach_read_only(self, con: duckdb.DuckDBPyConnection, alias: str = "cat") -> None:
        """ATTACH the catalog to ``con`` read-only as ``alias``, retrying like :meth:`read`
        while a writer commits."""
        sql = "ATTACH '" + str(self.catalog_path).replace("'", "''") + f"' AS {alias} (READ_ONLY)"
        self._retrying(lambda: con.execute(sql), read_only=True)

    def generation(self) -> tuple:
        """The catalog's generation: identity, size and mtime of the catalog file and its
        WAL (what the shared connections check); any committed change gives a new one."""
        return self.shared._file_key()

    @property
    def shared(self) -> "SharedReads":
        """This process's shared read-only connections to the catalog."""
        return SharedReads.of(self)

    @contextlib.contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection: a cursor of the shared one (:class:`SharedReads`), or a
        connection of its own while a writer holds the hub."""
        with self.shared.cursor("catalog", lambda: self._connect(read_only=True)) as cur:
            if cur is not None:
                yield cur
                return
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
                self.prepare_write(con)
                con.execute("BEGIN TRANSACTION")
                try:
                    yield con
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
            finally:
                con.close()

    @contextlib.contextmanager
    def statement(self) -> Iterator["StatementConnections"]:
        """The connections of a long writing statement (under the writer lock): reads go
        through a read-only connection; :meth:`StatementConnections.begin` opens the
        read-write one for a short transaction. What is still open at the end commits;
        an exception rolls it back."""
        with self.writer():
            conns = StatementConnections(self)
            try:
                yield conns
            except BaseException:
                conns.rollback()
                raise
            finally:
                if conns.in_write:
                    conns.commit()
                conns.close()

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


class StatementConnections:
    """Catalog connections of a writing statement whose heavy work (loading models, forward
    passes, reading files) must not hold DuckDB's read-write lock, which would lock every
    reader out: :attr:`con` is a read-only connection until :meth:`begin` swaps it for a
    read-write one inside a transaction, and :meth:`commit` hands the file back."""

    def __init__(self, store: HubStore):
        self.store = store
        self._ro: duckdb.DuckDBPyConnection | None = None
        self._rw: duckdb.DuckDBPyConnection | None = None

    @property
    def in_write(self) -> bool:
        return self._rw is not None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._rw is not None:
            return self._rw
        if self._ro is None:
            self._ro = self.store._connect(read_only=True)
        return self._ro

    def begin(self) -> duckdb.DuckDBPyConnection:
        """The read-write connection, in a transaction (opened now if needed)."""
        if self._rw is None:
            if self._ro is not None:  # one process cannot hold both kinds of connection
                self._ro.close()
                self._ro = None
            con = self.store._connect(read_only=False)
            try:
                self.store.prepare_write(con)
                con.execute("BEGIN TRANSACTION")
            except BaseException:
                con.close()
                raise
            self._rw = con
        return self._rw

    def commit(self) -> None:
        """Commit the open transaction (if any) and close the read-write connection."""
        con, self._rw = self._rw, None
        if con is not None:
            try:
                con.execute("COMMIT")
            finally:
                con.close()

    def rollback(self) -> None:
        con, self._rw = self._rw, None
        if con is not None:
            try:
                con.execute("ROLLBACK")
            except duckdb.Error:
                pass
            finally:
                con.close()

    def close(self) -> None:
        self.rollback()
        if self._ro is not None:
            self._ro.close()
            self._ro = None


class SharedReads:
    """The read-only connections to one catalog file that this process keeps open between
    statements: ``kind`` names each (``"catalog"``: the catalog itself; ``"sandbox"``: the
    SELECT sandbox); users get cursors of them. See the module docstring for why this never
    reads stale data; :meth:`close` hands the file back."""

    _all: dict[str, "SharedReads"] = {}
    _all_lock = threading.Lock()

    def __init__(self, store: HubStore):
        self.catalog_path = str(store.catalog_path)
        self.lock_path = str(store.path / LOCK)
        self.cond = threading.Condition()
        self.cons: dict[str, duckdb.DuckDBPyConnection] = {}
        self.state: dict[str, dict] = {}     # kind -> its owner's notes (e.g. views made)
        self.key = None
        self.users = 0
        self.doomed = False                  # close as soon as no cursor is in use
        self.last_used = 0.0
        self.timer: threading.Timer | None = None
        self.opened = 0                      # connections opened (tests, benchmarks)

    @classmethod
    def of(cls, store: HubStore) -> "SharedReads":
        with cls._all_lock:
            got = cls._all.get(str(store.catalog_path))
            if got is None:
                got = cls._all[str(store.catalog_path)] = cls(store)
            return got

    def _file_key(self):
        out = []
        for p in (self.catalog_path, self.catalog_path + ".wal"):
            try:
                st = os.stat(p)
                out.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError:
                out.append(None)
        return tuple(out)

    def writer_active(self) -> bool:
        """Whether a writer (in any process, this one included) holds ``hub.lock``: the
        lock file holds a live writer's pid while it does."""
        try:
            with open(self.lock_path, "rb") as f:
                pid = int(f.read(32).decode(errors="replace").strip() or 0)
        except (OSError, ValueError):
            return False
        if pid <= 0:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False          # a writer that died: its pid is left in the file
        except PermissionError:
            pass
        return True

    @contextlib.contextmanager
    def cursor(self, kind: str, factory):
        """A cursor of the shared connection ``kind`` (made by ``factory()`` when not open),
        or None when connections must not be kept (a writer holds the hub, or
        :data:`READ_IDLE_S` is 0): the caller then opens its own."""
        if READ_IDLE_S <= 0 or self.writer_active():
            self.close(wait_s=0)
            yield None
            return
        with self.cond:
            key = self._file_key()
            if key != self.key or self.doomed:
                if self.users:        # in use by another thread: it is closed after that
                    self.doomed = True
                    cur = None
                else:
                    self._close_locked()
                    self.key = key
            if not self.doomed:
                con = self.cons.get(kind)
                if con is None:
                    con = self.cons[kind] = factory()
                    self.state[kind] = {}
                    self.opened += 1
                cur = con.cursor()
                self.users += 1
        if cur is None:
            yield None
            return
        try:
            yield cur
        finally:
            cur.close()
            self._release()

    def notes(self, kind: str) -> dict:
        """Notes kept with the shared connection ``kind`` while it stays open."""
        with self.cond:
            return self.state.setdefault(kind, {})

    def base(self, kind: str) -> duckdb.DuckDBPyConnection | None:
        with self.cond:
            return self.cons.get(kind)

    def _release(self) -> None:
        with self.cond:
            self.users -= 1
            self.last_used = time.monotonic()
            if self.users == 0:
                self.cond.notify_all()
                if self.doomed or self.writer_active():
                    self._close_locked()
                elif self.timer is None and self.cons:
                    self._arm(READ_IDLE_S)

    def _arm(self, delay: float) -> None:
        self.timer = threading.Timer(max(delay, 0.01), self._idle)
        self.timer.daemon = True
        self.timer.start()

    def _idle(self) -> None:
        with self.cond:
            self.timer = None
            if self.users or not self.cons:
                return
            left = self.last_used + READ_IDLE_S - time.monotonic()
            if left > 0:
                self._arm(left)
                return
            self._close_locked()

    def close(self, wait_s: float = WRITE_OPEN_S) -> None:
        """Close the shared connections, waiting up to ``wait_s`` for the cursors in use;
        if some still are, they are closed when the last one is."""
        with self.cond:
            if not self.cons:
                return
            self.cond.wait_for(lambda: self.users == 0, timeout=wait_s)
            if self.users:
                self.doomed = True
            else:
                self._close_locked()

    def _close_locked(self) -> None:
        cons, self.cons, self.state, self.doomed = self.cons, {}, {}, False
        for con in cons.values():
            try:
                con.close()
            except duckdb.Error:
                pass


def _close_all_at_exit() -> None:
    # before the interpreter finalises: no idle timer left to fire, no DuckDB connection
    # left for the garbage collector (closing one during finalisation can abort)
    for shared in list(SharedReads._all.values()):
        with shared.cond:
            if shared.timer is not None:
                shared.timer.cancel()
                shared.timer = None
            shared._close_locked()


atexit.register(_close_all_at_exit)


def _forget_after_fork() -> None:
    # a forked child does not hold the parent's file locks: it opens its own connections
    SharedReads._all = {}
    SharedReads._all_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
