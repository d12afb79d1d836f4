"""Operator nodes: frozen, validated dataclasses that the planner builds and the
executor runs. Each operator prints itself as one EXPLAIN line ``Name: key=value``.

Rules of the EXPLAIN format (DataFusion style): one operator per line, children
indented by two spaces under their parent, keys in a fixed order, no ids or
addresses, so the output is deterministic and golden-file testable. EXPLAIN ANALYZE
appends ``rows=N elapsed=X ms`` to every line.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

OPERATORS: dict[str, type["Operator"]] = {}


# Column types an operator may declare (DuckDB spelling); "T[]" is a list of T.
_ARROW_TYPES = {
    "VARCHAR": "string", "TEXT": "string", "DOUBLE": "float64", "FLOAT": "float32", "REAL": "float32",
    "BIGINT": "int64", "INTEGER": "int32", "INT": "int32", "SMALLINT": "int16", "BOOLEAN": "bool_",
    "TIMESTAMP": "timestamp", "JSON": "string", "BLOB": "binary",
}


def arrow_type(name: str):
    """The pyarrow type of a declared column type such as ``DOUBLE`` or ``FLOAT[]``."""
    import pyarrow as pa

    up = name.strip().upper()
    if up.endswith("[]"):
        return pa.list_(arrow_type(up[:-2]))
    key = _ARROW_TYPES.get(up)
    if key is None:
        raise ValueError(f"unknown column type {name!r}")
    return pa.timestamp("us") if key == "timestamp" else getattr(pa, key)()


class Rows:
    """An operator's output: column names plus either row tuples or a ``pyarrow.Table``
    (taken straight from DuckDB, or built column-wise). Each form is derived from the other
    only when asked for, so an Arrow result reaches ``Result.to_arrow()`` without a copy.

    ``types`` declares each column's type (``"VARCHAR"``, ``"DOUBLE"``, ``"BIGINT"``,
    ``"BOOLEAN"``, ``"FLOAT[]"``, ...; None for a column typed from its values): the Arrow
    table built from row tuples then has that schema whatever the values, all-NULL included."""

    __slots__ = ("columns", "_rows", "_table", "message", "types")

    def __init__(self, columns, rows=None, message: str | None = None, *, table=None, types=None):
        self.columns = list(columns)
        self._rows = None if rows is None else list(rows)
        self._table = table
        self.message = message
        self.types = None if types is None else list(types)
        if self.types is not None and len(self.types) != len(self.columns):
            raise ValueError(f"{len(self.types)} column types for {len(self.columns)} columns")
        if rows is None and table is None:
            self._rows = []

    def column_types(self) -> list[str | None]:
        """Declared types, or (for an Arrow result) the DuckDB-style name of each Arrow type."""
        if self.types is not None:
            return list(self.types)
        if self._table is not None:
            return [str(f.type) for f in self._table.schema]
        return [None] * len(self.columns)

    @classmethod
    def from_arrow(cls, table, message: str | None = None) -> "Rows":
        return cls(table.column_names, None, message, table=table)

    @property
    def rows(self) -> list[tuple]:
        if self._rows is None:
            cols = [c.to_pylist() for c in self._table.columns]
            self._rows = list(zip(*cols)) if cols else []
        return self._rows

    @rows.setter
    def rows(self, value) -> None:
        self._rows, self._table = list(value), None

    @property
    def table(self):
        """The rows as a ``pyarrow.Table`` (built column-wise when the operator gave tuples)."""
        if self._table is None:
            import pyarrow as pa

            cols = list(zip(*self._rows)) if self._rows else [() for _ in self.columns]
            types = self.types or [None] * len(self.columns)
            self._table = pa.table({c: _array(list(v), t) for c, v, t in zip(_unique(self.columns), cols, types)})
        return self._table

    def __len__(self) -> int:
        return len(self._rows) if self._rows is not None else self._table.num_rows

    def __eq__(self, other) -> bool:
        return isinstance(other, Rows) and (self.columns, self.rows, self.message) == \
            (other.columns, other.rows, other.message)

    def __repr__(self) -> str:
        return f"Rows(columns={self.columns}, rows={len(self)}, message={self.message!r})"


def _array(values: list, type_name: str | None):
    import pyarrow as pa

    if type_name is None:
        return pa.array(values)
    t = arrow_type(type_name)
    if pa.types.is_list(t):
        values = [v.tolist() if hasattr(v, "tolist") else v for v in values]
    return pa.array(values, type=t)


def _unique(names: list[str]) -> list[str]:
    """Column names made unique for Arrow (a repeated name gets a _2, _3 ... suffix)."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return out


@dataclass
class OpStats:
    rows: int = 0
    elapsed: float = 0.0
    extra: dict = field(default_factory=dict)


class Expr(str):
    """An expression rendered verbatim in EXPLAIN (it carries its own quoting)."""


def fmt_value(v: Any) -> str:
    """Deterministic rendering of a parameter value in an EXPLAIN line."""
    if isinstance(v, Expr):
        return v if v.startswith("(") else f"({v})"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {fmt_value(x)}" for k, x in v.items()) + "}"
    if v is None:
        return "null"
    s = str(v)
    if any(c.isspace() for c in s) or s == "":
        return "'" + s.replace("'", "''") + "'"
    return s


@dataclass(frozen=True)
class Operator:
    """Base operator. Subclasses are frozen dataclasses and must define
    :meth:`explain_params` (their printer) and :meth:`run`."""

    name: ClassVar[str] = "Operator"
    writes: ClassVar[bool] = False
    #: The operator writes only through ``ctx.begin_write()`` (short transactions), so its
    #: statement does the rest of its work without holding the catalog read-write.
    short_writes: ClassVar[bool] = False
    #: The operator runs models through an executor (EXPLAIN shows which one, when not local).
    runs_models: ClassVar[bool] = False

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.__dict__.get("name") is None or cls.__dict__.get("name") == "Operator":
            cls.name = cls.__name__
        prev = OPERATORS.get(cls.name)
        if prev is not None and (prev.__module__, prev.__qualname__) != (cls.__module__, cls.__qualname__):
            raise TypeError(f"operator name {cls.name!r} is used by both {prev.__module__}.{prev.__qualname__} "
                            f"and {cls.__module__}.{cls.__qualname__}")
        OPERATORS[cls.name] = cls

    @property
    def children(self) -> tuple["Operator", ...]:
        return tuple(getattr(self, "child", None) and (self.child,) or ())

    @property
    def details(self) -> tuple["Detail", ...]:
        """Plan lines printed under this operator that are not operators (default none)."""
        return ()

    def explain_params(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} has no printer")

    def executor_params(self, executor: dict | None) -> dict | None:
        """What EXPLAIN appends about where this operator runs (``executor`` is the
        session's executor, None for local): the executor for operators that run models."""
        return executor if executor and self.runs_models else None

    def explain_line(self) -> str:
        params = self.explain_params()
        body = " ".join(f"{k}={fmt_value(v)}" for k, v in params.items() if v is not None)
        return f"{self.name}: {body}".rstrip(": ").rstrip() if body else f"{self.name}:"

    def run(self, ctx: "ExecContext", inputs: list[Rows]) -> Rows:  # pragma: no cover
        raise NotImplementedError

    def any_writes(self) -> bool:
        return self.writes or any(c.any_writes() for c in self.children)

    def writes_briefly(self) -> bool:
        """True when every writing operator of the tree writes in short transactions."""
        return (not self.writes or self.short_writes) and all(c.writes_briefly() for c in self.children)


DETAILS: dict[str, type["Detail"]] = {}


@dataclass(frozen=True)
class Detail:
    """A line of an operator's plan that is not an operator: what it will do, printed under
    it (e.g. DISCOVER's planned rounds). Details never run; EXPLAIN ANALYZE shows what
    their operator recorded for them."""

    name: ClassVar[str] = "Detail"

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.__dict__.get("name") is None or cls.__dict__.get("name") == "Detail":
            cls.name = cls.__name__
        DETAILS[cls.name] = cls

    def explain_params(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} has no printer")

    explain_line = Operator.explain_line


def _with_stats(line: str, node, stats: dict[int, OpStats] | None) -> str:
    if stats is not None and id(node) in stats:
        st = stats[id(node)]
        line += f" rows={st.rows} elapsed={st.elapsed * 1000:.1f}ms"
        for k, v in st.extra.items():
            line += f" {k}={fmt_value(v)}"
    return line


def explain(op: Operator, stats: dict[int, OpStats] | None = None, depth: int = 0,
            executor: dict | None = None) -> list[str]:
    """The plan's lines. ``executor``: what operators that run models print about where
    they run (``executor=ray workers=n``); None for the local executor (nothing printed)."""
    line = op.explain_line()
    extra = op.executor_params(executor)
    if extra:
        line += "".join(f" {k}={fmt_value(v)}" for k, v in extra.items() if v is not None)
    out = [_with_stats("  " * depth + line, op, stats)]
    for d in op.details:
        out.append(_with_stats("  " * (depth + 1) + d.explain_line(), d, stats))
    for c in op.children:
        out.extend(explain(c, stats, depth + 1, executor))
    return out


class ExecContext:
    """What operators see while running: the open catalog connection, the hub store,
    settings, progress and statistics.

    ``con`` is either one connection (read statements; short writing statements, inside
    their single transaction) or, for a statement whose writers all declare
    ``short_writes``, the statement's connections (``storage.hub.StatementConnections``):
    a read-only connection until :meth:`begin_write` opens a short read-write transaction,
    which :meth:`commit` (or the end of the statement) commits."""

    def __init__(self, store, con, *, base_dir: str, progress: Callable | None = None,
                 runtime_factory: Callable | None = None, session: dict | None = None,
                 hooks: dict[str, list[Callable]] | None = None, conns=None):
        self.store = store
        self._con = con
        self._conns = conns
        self.base_dir = base_dir
        self.progress = progress
        self._runtime_factory = runtime_factory
        self.session = session if session is not None else {}
        self.hooks = hooks or {}     # "on_drop" / "on_describe" / "on_import" -> functions
        self.stats: dict[int, OpStats] = {}
        self.after_commit: list[Callable[[], None]] = []

    @property
    def con(self):
        """The catalog connection to read (and, inside :meth:`begin_write`, write) through.
        Do not keep it across :meth:`begin_write` / :meth:`commit`: they swap it."""
        return self._conns.con if self._conns is not None else self._con

    @con.setter
    def con(self, value) -> None:
        self._con, self._conns = value, None

    def begin_write(self):
        """The connection to write through, in a transaction: opened read-write now for a
        statement running with short writes, the statement's own transaction otherwise."""
        return self._conns.begin() if self._conns is not None else self._con

    def commit(self) -> None:
        """Commit the work so far (a unit of long work: one model probed, one vector
        computed); an interrupt after this keeps it. Readers are not blocked afterwards."""
        if self._conns is not None:
            self._conns.commit()
        else:
            self._con.execute("COMMIT")
            self._con.execute("BEGIN TRANSACTION")

    @property
    def runtime(self):
        """The hub's model runtime, configured from this statement's settings."""
        return self._runtime_factory(self)

    def setting(self, key: str, default: Any = None) -> Any:
        if key in self.session:
            return self.session[key]
        rows = self.con.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchall()
        if not rows:
            return default
        import json
        return json.loads(rows[0][0])

    def report(self, task: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(task, done, total)


def execute(op: Operator, ctx: ExecContext) -> Rows:
    inputs = [execute(c, ctx) for c in op.children]
    t0 = time.perf_counter()
    out = op.run(ctx, inputs)
    st = ctx.stats.setdefault(id(op), OpStats())
    st.elapsed += time.perf_counter() - t0
    st.rows = len(out)
    return out
