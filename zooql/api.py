"""Python API: ``zooql.connect(path)`` -> :class:`Hub`; ``hub.execute(query, params)``
-> :class:`Result`.

A statement runs in four phases: parse (text -> AST), bind (names and parameters
against the catalog), plan (operators) and execute. Statements whose plan writes hold
the hub's writer lock throughout; short ones run inside one catalog transaction, long
ones (every writer declares ``short_writes``) read through a read-only connection and
open the catalog read-write only for short commits, so readers in other processes are
never locked out. Anything that fails rolls the open transaction back.
"""
from __future__ import annotations

import contextlib
import os
import re
import time
from typing import Any, Callable, Iterator

import duckdb

from zooql.core.binder import BindContext, BoundExplain, bind
from zooql.core.params import check_params
from zooql.errors import BindError, ExecutionError, ParseError, StorageError, ZooQLError
from zooql.lang import ast as A
from zooql.methods import registry
from zooql.plan import nodes as P
from zooql.plan.planner import plan as make_plan
from zooql.storage import catalog as C
from zooql.storage.hub import MARKER, HubStore, default_hub_path

ProgressFn = Callable[[str, int, int], None]


class Result:
    """The result of a statement: column names, rows and a message. The rows are kept as
    the operator produced them, a ``pyarrow.Table`` (SHOW and other catalog scans, straight
    from DuckDB) or row tuples; ``to_arrow()`` hands over the table without a copy."""

    def __init__(self, columns: list[str], rows: list[tuple] | None = None, *, message: str | None = None,
                 elapsed: float = 0.0, kind: str = "", plan_text: str | None = None, table=None,
                 types=None):
        self._data = P.Rows(columns, rows, message, table=table, types=types)
        self.results: list["Result"] = [self]  # every statement's result, when several ran
        self.columns = list(columns)
        self.message = message
        self.elapsed = elapsed
        self.kind = kind
        self.plan_text = plan_text

    @classmethod
    def _of(cls, out: "P.Rows", **kw) -> "Result":
        res = cls(out.columns, [], message=out.message, **kw)
        res._data = out
        return res

    @property
    def types(self) -> list[str | None]:
        """The declared type of each column (``VARCHAR``, ``DOUBLE``, ...; None: from the data)."""
        return self._data.column_types()

    @property
    def rows(self) -> list[tuple]:
        return self._data.rows

    def __iter__(self) -> Iterator[tuple]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self._data)

    def fetchall(self) -> list[tuple]:
        return list(self.rows)

    def fetchone(self) -> tuple | None:
        return self.rows[0] if len(self) else None

    def to_dicts(self) -> list[dict]:
        return [dict(zip(self.columns, r)) for r in self.rows]

    def to_arrow(self):
        """The rows as a ``pyarrow.Table``; columns have their declared types even when every
        value is NULL (the schema does not depend on the data)."""
        return self._data.table

    def to_pandas(self):
        import importlib.util

        if importlib.util.find_spec("pandas") is None:
            raise ExecutionError("to_pandas() needs pandas, which is not installed")
        return self.to_arrow().to_pandas()

    def __repr__(self) -> str:
        return f"<Result {self.kind} columns={self.columns} rows={len(self)}>"


def keywords() -> list[str]:
    """Every keyword of the language (core and methods), for the REPL's lexer and completer."""
    return registry.keywords()


def parse(text: str) -> list:
    """Parse ``text`` (one or more statements) into AST nodes without running anything."""
    return registry.parse(text)


@contextlib.contextmanager
def _pointing_into(query: str):
    """A BindError (or a ParseError found while binding) about one place of ``query``
    gets the caret context showing it."""
    try:
        yield
    except (BindError, ParseError) as exc:
        if exc.line and exc.column and exc.context is None:
            from zooql.lang.parser import caret_context

            exc.context = caret_context(query, exc.line, exc.column)
        raise


_OVERFLOW = re.compile(r"Overflow in (\w+) of (\w+) \((.*)\)")
_WIDTH = {"INT8": 8, "INT16": 16, "INT32": 32, "INT64": 64, "INT128": 128, "HUGEINT": 128}


def execution_error(exc: duckdb.Error) -> ExecutionError:
    """The ExecutionError of a DuckDB error raised while a statement ran: an integer
    overflow (of WHERE / ORDER BY arithmetic on the data) in ZooQL's words, else the
    catalog's message."""
    m = _OVERFLOW.search(str(exc))
    if isinstance(exc, duckdb.OutOfRangeException) and m:
        op, typ, expr = m.groups()
        width = f"a {_WIDTH[typ]}-bit integer" if typ in _WIDTH else f"a {typ.lower()}"
        return ExecutionError(f"arithmetic overflow: {expr} ({op}) does not fit in {width}; write one of its "
                              f"numbers with a decimal point (e.g. 2.0) to compute in floating point")
    return ExecutionError(f"catalog error: {exc}")


def _kind(stmt) -> str:
    name = type(stmt).__name__
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


class Hub:
    """An open hub. Not thread-safe; one Hub per thread."""

    def __init__(self, path: str | os.PathLike | None = None, *, trust_code: bool = False,
                 device: str | None = None, create: bool | str = True, executor: str | None = None,
                 ray_address: str | None = None, ray_workers: int | None = None):
        path = path if path is not None else default_hub_path()
        self._scratch = None  # an empty catalog to bind against until a pending hub exists
        if create == "on_write" and not hub_exists(path):
            self.store = None
            self._pending = os.path.abspath(os.path.expanduser(str(path)))
            HubStore.check_creatable(self._pending)
        else:
            self.store = HubStore(path, create=bool(create), schemas=registry.schemas())
        self.path = str(self.store.path) if self.store is not None else self._pending
        self.session: dict[str, Any] = {}
        if trust_code:
            self.session["trust_code"] = True
        if device:
            self.session["device"] = device
        self._set_executor(executor, ray_address, ray_workers)
        self._runtime = None
        self._runtime_key = None
        self._closed = False

    def _set_executor(self, executor, ray_address, ray_workers) -> None:
        from zooql.runtime.executors import EXECUTORS

        if executor is not None:
            if str(executor).lower() not in EXECUTORS:
                raise ZooQLError(f"executor must be one of {', '.join(EXECUTORS)}, not {executor!r}")
            self.session["executor"] = str(executor).lower()
        if ray_address:
            self.session["ray_address"] = str(ray_address)
        if ray_workers is not None:
            if int(ray_workers) < 1:
                raise ZooQLError(f"ray_workers must be at least 1, not {ray_workers!r}")
            self.session["ray_workers"] = int(ray_workers)

    # ---- runtime -------------------------------------------------------------------------
    def runtime(self, ctx: P.ExecContext | None = None):
        """The model runtime (LRU cache of loaded models), shared across statements.

        Settings are read through the running statement's connection when there is one
        (a second, read-only connection cannot be opened beside a write)."""
        from zooql.runtime.models import ModelRuntime  # torch is imported here, lazily

        if ctx is not None:
            trust, device = ctx.setting("trust_code", False), ctx.setting("device", "cpu")
        else:
            with self.store.read() as con:
                trust = self.session.get("trust_code", C.get_setting(con, "trust_code", False))
                device = self.session.get("device", C.get_setting(con, "device", "cpu"))
        key = (bool(trust), device or "cpu")
        if self._runtime is None or self._runtime_key != key:
            self._runtime = ModelRuntime(device=key[1], trust_code=key[0])
            self._runtime_key = key
        return self._runtime

    def _executor_explain(self, con) -> dict | None:
        """What EXPLAIN prints about the executor (None: local); imports no ray."""
        from zooql.runtime.executors import explain_params

        return explain_params(lambda k, d=None: self.session.get(k, C.get_setting(con, k, d)))

    # ---- statements ----------------------------------------------------------------------
    def execute(self, query: str, params: Any = None, *, progress: ProgressFn | None = None,
                base_dir: str | None = None) -> Result:
        """Run every statement in ``query`` in order and return the last one's result; its
        ``results`` attribute lists every statement's result. Each statement is atomic on
        its own: when one fails, the ones before it stay done and the error propagates."""
        self._check_open()
        stmts = registry.parse(query)
        check_params(stmts, params)
        if not stmts:
            return Result([], [], message="no statement", kind="empty")
        results = []
        with _pointing_into(query):
            for stmt in stmts:
                results.append(self._run_one(stmt, params, progress, base_dir or os.getcwd()))
        results[-1].results = results
        return results[-1]

    def explain(self, query: str, params: Any = None, *, base_dir: str | None = None) -> str:
        stmts = registry.parse(query)
        if len(stmts) != 1:
            raise ZooQLError("explain() takes exactly one statement")
        check_params(stmts, params)
        stmt = stmts[0]
        if not isinstance(stmt, A.Explain):
            stmt = A.Explain(stmt, False)
        with _pointing_into(query):
            res = self._run_one(stmt, params, None, base_dir or os.getcwd())
        return "\n".join(r[0] for r in res.rows)

    def _bind_and_plan(self, stmt, params, base_dir, con=None):
        if self.store is None:
            return self._bind_pending(stmt, params, base_dir)
        if con is None:
            with self.store.read() as con:
                return self._bind_and_plan(stmt, params, base_dir, con)
        try:
            bound = bind(stmt, BindContext(con=con, base_dir=base_dir, params=params,
                                           dispatch=registry.dispatch(), settings=registry.settings(),
                                           objects=registry.objects(), grammar=registry.parser().grammar,
                                           relations=registry.relations(), parse=registry.parse_one,
                                           generation=self.store.generation()))
        except duckdb.Error as exc:  # a value the catalog refuses while names are resolved
            raise BindError(f"cannot bind the statement against the catalog: "
                            f"{str(exc).splitlines()[0]}") from None
        target = bound.statement if isinstance(bound, BoundExplain) else bound
        return bound, make_plan(target, registry.dispatch())

    def _run_one(self, stmt, params, progress, base_dir) -> Result:
        t0 = time.perf_counter()
        if self.store is None:   # opened with create="on_write": a write creates it, a read is refused
            self._bind_and_plan(stmt, params, base_dir)
        ctx_args = dict(base_dir=base_dir, progress=progress, runtime_factory=self.runtime,
                        session=self.session, hooks=registry.hook_table())
        try:
            with self.store.read() as con:   # one read-only connection binds and runs a read
                bound, op = self._bind_and_plan(stmt, params, base_dir, con)
                if isinstance(bound, BoundExplain) and bound.verbose:
                    from zooql.plan.planner import plan_verbose

                    lines, _ = plan_verbose(bound.statement, registry.dispatch())
                    return Result(["plan"], [(line,) for line in lines], kind="explain_verbose",
                                  elapsed=time.perf_counter() - t0)
                # the executor's settings are read only for EXPLAIN (four catalog reads)
                executor = self._executor_explain(con) if isinstance(bound, BoundExplain) else None
                if isinstance(bound, BoundExplain) and not bound.analyze:
                    lines = P.explain(op, executor=executor)
                    return Result(["plan"], [(line,) for line in lines], kind="explain",
                                  elapsed=time.perf_counter() - t0)
                if not op.any_writes():
                    ctx = P.ExecContext(self.store, con, **ctx_args)
                    ctx.read_only = True     # a read-only connection (SELECT needs no check)
                    out = P.execute(op, ctx)
            if op.any_writes():
                # The writer lock is held for the whole statement; the catalog is opened
                # read-write for the whole statement only when it is short.
                with self.store.writer(timeout=self.session.get("lock_timeout", 0) or 0):
                    if op.writes_briefly():
                        with self.store.statement() as conns:
                            ctx = P.ExecContext(self.store, None, conns=conns, **ctx_args)
                            out = P.execute(op, ctx)
                    else:
                        with self.store.write() as con:
                            ctx = P.ExecContext(self.store, con, **ctx_args)
                            out = P.execute(op, ctx)
                    for fn in ctx.after_commit:
                        fn()
        except duckdb.Error as exc:
            raise execution_error(exc) from None
        elapsed = time.perf_counter() - t0
        if isinstance(bound, BoundExplain):
            lines = P.explain(op, ctx.stats, executor=executor)
            return Result(["plan"], [(line,) for line in lines], kind="explain_analyze", elapsed=elapsed)
        return Result._of(out, elapsed=elapsed, kind=_kind(stmt))

    def _bind_pending(self, stmt, params, base_dir):
        """A hub opened with ``create="on_write"`` that does not exist yet: bind against an
        empty catalog; a statement that writes creates the hub (then binds against it), a
        read-only one is an error, so a mistyped path does not leave a new hub behind."""
        import tempfile

        if self._scratch is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="zooql-scratch-")
            self._scratch_store = HubStore(os.path.join(self._scratch.name, "hub"), schemas=registry.schemas())
        real, self.store = self.store, self._scratch_store
        try:
            bound, op = self._bind_and_plan(stmt, params, base_dir)
        finally:
            self.store = real
        if not op.any_writes() or (isinstance(bound, BoundExplain) and not bound.analyze):
            raise StorageError(f"no hub at {self._pending} (a read-only statement does not create one; "
                               "run a statement that writes, or start with --create)")
        self.store = HubStore(self._pending, schemas=registry.schemas())
        self.path = str(self.store.path)
        self._drop_scratch()
        return self._bind_and_plan(stmt, params, base_dir)

    def _drop_scratch(self) -> None:
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    @property
    def exists(self) -> bool:
        """False while a hub opened with ``create="on_write"`` has not been created yet."""
        return self.store is not None

    # ---- catalog helpers -----------------------------------------------------------------
    def logit_labels(self, model: str) -> list[str]:
        """The logit labels of a registered model, in logit order (for completion)."""
        if self.store is None:
            return []
        with self.store.read() as con:
            try:
                m = C.model_row(con, model)
            except ZooQLError:
                return []
            return [x for x in C.model_labels(con, m["id"]) if x is not None]

    def completions(self, models: bool = True) -> dict[str, list[str]]:
        """Names for completion, by category. ``models=False`` leaves out the model names
        (a catalog may hold millions: the REPL asks :meth:`complete_names` per prefix)."""
        if self.store is None:
            return {"models": [], "datasets": [], "trees": [], "columns": [*C.MODEL_COLUMNS, "tags"]}
        with self.store.read() as con:
            out = {"datasets": C.dataset_names(con), "trees": C.tree_names(con)}
            if models:
                out["models"] = C.model_names(con)
        try:
            rels = self.relations()
        except (duckdb.Error, ZooQLError):
            rels = {}
        out["relations"] = sorted(rels)
        out["columns"] = sorted({*C.MODEL_COLUMNS, "tags", *(c for cols in rels.values() for c in cols)})
        with self.store.read() as con:
            sources = {"tasks": "SELECT name FROM tasks ORDER BY 1", **registry.completion_sources()}
            for key, sql in sources.items():
                try:
                    out[key] = [r[0] for r in con.execute(sql).fetchall()]
                except duckdb.Error:  # a hub written before that feature existed
                    out[key] = []
        return out

    def complete_names(self, category: str, prefix: str, limit: int = 50) -> list[str]:
        """At most ``limit`` names of ``category`` (``models``) starting with ``prefix``
        (case-insensitive), in order: one LIMITed prefix query, never every name."""
        if category != "models":
            raise ValueError(f"no prefix query for {category!r} (categories: models)")
        if self.store is None:
            return []
        with self.store.read() as con:
            return C.model_names_with_prefix(con, prefix, limit)

    def relations(self) -> dict[str, list[str]]:
        """The relations a SELECT can read and their columns: the catalog's, each method's
        and the stored views (a view's columns are known once it runs: listed empty)."""
        from zooql.core import select, sqlcheck

        rels = {**sqlcheck.CORE_RELATIONS, **registry.relations()}
        known = {n: sqlcheck.output_names(sql) for n, sql in rels.items()}   # from the SQL text
        out = {n: list(known[n]) for n in sorted(rels) if known[n] is not None}
        qualified = [(n, sqlcheck.qualified(rels[n])) for n in sorted(rels) if known[n] is None]
        if qualified:   # a relation whose columns only DuckDB can tell
            with select.shared_sandbox(self.store, qualified) as cur:
                con = cur if cur is not None else select.sandbox(self.store, qualified, [])
                try:
                    out.update({n: [r[0] for r in con.execute(f'DESCRIBE "{n}"').fetchall()]
                                for n, _ in qualified})
                finally:
                    if cur is None:
                        con.close()
            out = dict(sorted(out.items()))
        with self.store.read() as rcon:
            try:
                out.update({r[0]: [] for r in rcon.execute("SELECT name FROM views ORDER BY 1").fetchall()})
            except duckdb.Error:  # a hub written before views existed
                pass
        return out

    def _check_open(self):
        if self._closed:
            raise ZooQLError("hub is closed")

    def close(self) -> None:
        """Close the hub; this process's shared read connections to its catalog are handed
        back (another Hub on the same catalog reopens them when it next reads)."""
        self._closed = True
        self._runtime = None
        self._drop_scratch()
        if self.store is not None:
            self.store.shared.close(wait_s=0)

    def __enter__(self) -> "Hub":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def connect(path: str | os.PathLike | None = None, *, trust_code: bool = False,
            device: str | None = None, create: bool | str = True, executor: str | None = None,
            ray_address: str | None = None, ray_workers: int | None = None) -> Hub:
    """Open the hub at ``path``; ``None`` opens the embedded default hub.

    ``create``: True (the default) creates a missing hub at once; False makes a missing hub
    a :class:`StorageError`; ``"on_write"`` creates it on the first statement that writes
    and makes a read-only statement on a missing hub an error (what the ``zooql`` command
    does, so that a mistyped path is not silently made into a new hub).

    ``executor``: where models run, ``'local'`` (this process, the default) or ``'ray'``
    (Ray actors; ``ray_address`` and ``ray_workers`` as the settings of those names), the
    same as ``SET executor = ...`` for this connection (docs/scale-out.md)."""
    if create not in (True, False, "on_write"):
        raise ValueError(f"create must be True, False or 'on_write', not {create!r}")
    return Hub(path, trust_code=trust_code, device=device, create=create, executor=executor,
               ray_address=ray_address, ray_workers=ray_workers)


def hub_exists(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a ZooQL hub."""
    return os.path.isfile(os.path.join(os.path.expanduser(str(path)), MARKER))


def expected(text: str) -> dict | None:
    """What the grammar accepts after ``text`` (the text before the cursor, without the
    word being typed): ``{"keywords": [...], "names": bool, "strings": bool, "numbers": bool,
    "punct": [...]}``, or None when ``text`` does not parse so far (for completion)."""
    from zooql.lang.complete import expected_after

    return expected_after(registry.parser().lark, text)
