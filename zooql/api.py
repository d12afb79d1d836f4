"""Python API: ``zooql.connect(path)`` -> :class:`Hub`; ``hub.execute(query, params)``
-> :class:`Result`.

A statement runs in four phases: parse (text -> AST), bind (names and parameters
against the catalog), plan (operators) and execute. Statements whose plan writes run
inside one catalog transaction under the hub's writer lock; anything that fails rolls
the statement back.
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable, Iterator

import duckdb

from zooql.core.binder import BindContext, BoundExplain, bind
from zooql.core.params import check_params
from zooql.errors import BindError, ExecutionError, ZooQLError
from zooql.lang import ast as A
from zooql.methods import registry
from zooql.plan import nodes as P
from zooql.plan.planner import plan as make_plan
from zooql.storage import catalog as C
from zooql.storage.hub import HubStore, default_hub_path

ProgressFn = Callable[[str, int, int], None]


class Result:
    """The result of a statement: column names, rows and a message. The rows are kept as
    the operator produced them, a ``pyarrow.Table`` (SHOW and other catalog scans, straight
    from DuckDB) or row tuples; ``to_arrow()`` hands over the table without a copy."""

    def __init__(self, columns: list[str], rows: list[tuple] | None = None, *, message: str | None = None,
                 elapsed: float = 0.0, kind: str = "", plan_text: str | None = None, table=None):
        self._data = P.Rows(columns, rows, message, table=table)
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
        """The rows as a ``pyarrow.Table``."""
        return self._data.table

    def to_pandas(self):
        try:
            import pandas  # noqa: F401
        except ImportError:
            raise ExecutionError("to_pandas() needs pandas, which is not installed") from None
        return self.to_arrow().to_pandas()

    def __repr__(self) -> str:
        return f"<Result {self.kind} columns={self.columns} rows={len(self)}>"


def _hooks() -> dict[str, list]:
    return {name: registry.hooks(name) for name in registry.HOOKS}


def keywords() -> list[str]:
    """Every keyword of the language (core and methods), for the REPL's lexer and completer."""
    return registry.keywords()


def parse(text: str) -> list:
    """Parse ``text`` (one or more statements) into AST nodes without running anything."""
    return registry.parse(text)


def _kind(stmt) -> str:
    name = type(stmt).__name__
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


class Hub:
    """An open hub. Not thread-safe; one Hub per thread."""

    def __init__(self, path: str | os.PathLike | None = None, *, trust_code: bool = False,
                 device: str | None = None):
        self.store = HubStore(path if path is not None else default_hub_path(),
                              schemas=registry.schemas())
        self.path = str(self.store.path)
        self.session: dict[str, Any] = {}
        if trust_code:
            self.session["trust_code"] = True
        if device:
            self.session["device"] = device
        self._runtime = None
        self._runtime_key = None
        self._closed = False

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

    # ---- statements ----------------------------------------------------------------------
    def execute(self, query: str, params: Any = None, *, progress: ProgressFn | None = None,
                base_dir: str | None = None) -> Result:
        """Run every statement in ``query``; return the result of the last one."""
        self._check_open()
        stmts = registry.parse(query)
        check_params(stmts, params)
        if not stmts:
            return Result([], [], message="no statement", kind="empty")
        result = None
        for stmt in stmts:
            result = self._run_one(stmt, params, progress, base_dir or os.getcwd())
        return result

    def explain(self, query: str, params: Any = None, *, base_dir: str | None = None) -> str:
        stmts = registry.parse(query)
        if len(stmts) != 1:
            raise ZooQLError("explain() takes exactly one statement")
        check_params(stmts, params)
        stmt = stmts[0]
        if not isinstance(stmt, A.Explain):
            stmt = A.Explain(stmt, False)
        res = self._run_one(stmt, params, None, base_dir or os.getcwd())
        return "\n".join(r[0] for r in res.rows)

    def _bind_and_plan(self, stmt, params, base_dir):
        with self.store.read() as con:
            try:
                bound = bind(stmt, BindContext(con=con, base_dir=base_dir, params=params,
                                               dispatch=registry.dispatch(), settings=registry.settings()))
            except duckdb.Error as exc:  # a value the catalog refuses while names are resolved
                raise BindError(f"cannot bind the statement against the catalog: "
                                f"{str(exc).splitlines()[0]}") from None
        target = bound.statement if isinstance(bound, BoundExplain) else bound
        return bound, make_plan(target, registry.dispatch())

    def _run_one(self, stmt, params, progress, base_dir) -> Result:
        t0 = time.perf_counter()
        bound, op = self._bind_and_plan(stmt, params, base_dir)
        if isinstance(bound, BoundExplain) and not bound.analyze:
            lines = P.explain(op)
            return Result(["plan"], [(line,) for line in lines], kind="explain",
                          elapsed=time.perf_counter() - t0)
        ctx_args = dict(base_dir=base_dir, progress=progress, runtime_factory=self.runtime,
                        session=self.session, hooks=_hooks())
        try:
            if op.any_writes():
                with self.store.write() as con:
                    ctx = P.ExecContext(self.store, con, **ctx_args)
                    out = P.execute(op, ctx)
                for fn in ctx.after_commit:
                    fn()
            else:
                with self.store.read() as con:
                    ctx = P.ExecContext(self.store, con, **ctx_args)
                    out = P.execute(op, ctx)
        except duckdb.Error as exc:
            raise ExecutionError(f"catalog error: {exc}") from None
        elapsed = time.perf_counter() - t0
        if isinstance(bound, BoundExplain):
            lines = P.explain(op, ctx.stats)
            return Result(["plan"], [(line,) for line in lines], kind="explain_analyze", elapsed=elapsed)
        return Result._of(out, elapsed=elapsed, kind=_kind(stmt))

    # ---- catalog helpers -----------------------------------------------------------------
    def completions(self) -> dict[str, list[str]]:
        with self.store.read() as con:
            out = {"models": C.model_names(con), "datasets": C.dataset_names(con),
                   "trees": C.tree_names(con)}
            sources = {"tasks": "SELECT name FROM tasks ORDER BY 1", **registry.completion_sources()}
            for key, sql in sources.items():
                try:
                    out[key] = [r[0] for r in con.execute(sql).fetchall()]
                except duckdb.Error:  # a hub written before that feature existed
                    out[key] = []
        return out

    def _check_open(self):
        if self._closed:
            raise ZooQLError("hub is closed")

    def close(self) -> None:
        self._closed = True
        self._runtime = None

    def __enter__(self) -> "Hub":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def connect(path: str | os.PathLike | None = None, *, trust_code: bool = False,
            device: str | None = None) -> Hub:
    """Open (creating if needed) the hub at ``path``; ``None`` opens the embedded default hub."""
    return Hub(path, trust_code=trust_code, device=device)
