"""The ZooQL abstract syntax tree: frozen dataclasses with source spans.

Every node carries ``span`` = (start_pos, end_pos, line, column) into the statement
text so that later phases (binder, planner) can point errors at the right place.
Equality ignores spans so that tests can compare trees structurally.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

Span = tuple[int, int, int, int]  # start_pos, end_pos, line, column


def _span() -> Any:
    return field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Node:
    def to_tree(self) -> Any:
        """A plain, span-free representation used by the golden parse-tree files."""
        out: dict[str, Any] = {"node": type(self).__name__}
        for f in fields(self):
            if f.name == "span":
                continue
            out[f.name] = _plain(getattr(self, f.name))
        return out


def _plain(v: Any) -> Any:
    if isinstance(v, Node):
        return v.to_tree()
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


# ---- literals, names, expressions ---------------------------------------------------

@dataclass(frozen=True)
class Literal(Node):
    value: Any  # str, int, float, bool or None
    span: Span | None = _span()


@dataclass(frozen=True)
class Param(Node):
    """A ``?`` (key = position, an int) or ``:name`` (key = the name) parameter."""

    key: Any
    span: Span | None = _span()


@dataclass(frozen=True)
class TupleValue(Node):
    items: tuple
    span: Span | None = _span()


@dataclass(frozen=True)
class Name(Node):
    value: str
    quoted: bool = False
    span: Span | None = _span()


@dataclass(frozen=True)
class Column(Node):
    """A column reference, possibly dotted (``tags.license``)."""

    parts: tuple[str, ...]
    span: Span | None = _span()


@dataclass(frozen=True)
class BinOp(Node):
    op: str  # = != < <= > >= + - * / % AND OR LIKE
    left: Node
    right: Node
    span: Span | None = _span()


@dataclass(frozen=True)
class BoolOp(Node):
    op: str  # AND | OR
    items: tuple
    span: Span | None = _span()


@dataclass(frozen=True)
class UnaryOp(Node):
    op: str  # NOT | NEG
    operand: Node
    span: Span | None = _span()


@dataclass(frozen=True)
class InList(Node):
    operand: Node
    items: tuple
    negated: bool = False
    span: Span | None = _span()


@dataclass(frozen=True)
class Like(Node):
    operand: Node
    pattern: Node
    negated: bool = False
    span: Span | None = _span()


@dataclass(frozen=True)
class IsNull(Node):
    operand: Node
    negated: bool = False
    span: Span | None = _span()


@dataclass(frozen=True)
class Between(Node):
    operand: Node
    low: Node
    high: Node
    negated: bool = False
    span: Span | None = _span()


@dataclass(frozen=True)
class OrderItem(Node):
    expr: Node
    descending: bool = False
    span: Span | None = _span()


@dataclass(frozen=True)
class Option(Node):
    key: str
    value: Node  # Literal | Param | TupleValue
    span: Span | None = _span()


# ---- statements ----------------------------------------------------------------------

@dataclass(frozen=True)
class Statement(Node):
    pass


@dataclass(frozen=True)
class Explain(Statement):
    statement: Statement
    analyze: bool = False
    span: Span | None = _span()
    verbose: bool = False


@dataclass(frozen=True)
class AddModel(Statement):
    source: Node
    alias: Name | None = None
    checkpoint: Node | None = None
    labels: tuple | None = None       # tuple of values
    labels_file: Node | None = None
    options: tuple = ()               # tuple[Option]
    span: Span | None = _span()


@dataclass(frozen=True)
class AddModels(Statement):
    path: Node
    span: Span | None = _span()


@dataclass(frozen=True)
class ShowModels(Statement):
    where: Node | None = None
    order: tuple = ()
    limit: Node | None = None
    span: Span | None = _span()


@dataclass(frozen=True)
class ShowTrees(Statement):
    span: Span | None = _span()


@dataclass(frozen=True)
class ShowDatasets(Statement):
    span: Span | None = _span()


@dataclass(frozen=True)
class CheckHub(Statement):
    """CHECK HUB: catalog/file consistency and checksums, problems as rows."""
    span: Span | None = _span()


@dataclass(frozen=True)
class DescribeModel(Statement):
    name: Name
    span: Span | None = _span()


@dataclass(frozen=True)
class DescribeDataset(Statement):
    name: Node  # Name or Literal
    span: Span | None = _span()


@dataclass(frozen=True)
class DropModel(Statement):
    name: Name
    if_exists: bool = False
    span: Span | None = _span()


@dataclass(frozen=True)
class AlterModel(Statement):
    name: Name
    assignments: tuple  # tuple[Option] (key may be dotted: 'tags.x')
    span: Span | None = _span()


@dataclass(frozen=True)
class AlterDataset(Statement):
    name: Node
    assignments: tuple
    span: Span | None = _span()


@dataclass(frozen=True)
class Import(Statement):
    kind: str  # 'evaluations' | 'outcomes'
    path: Node
    source: Node | None = None
    on_conflict: str = "error"  # 'error' | 'replace' | 'skip' (rows whose key is already stored)
    span: Span | None = _span()


@dataclass(frozen=True)
class SetOption(Statement):
    key: str
    value: Node
    span: Span | None = _span()


# ---- statements of the method issues (DISCOVER, RECOMMEND, FIND) -------------------------

@dataclass(frozen=True)
class CreateTask(Statement):
    name: Name
    path: Node
    images: bool = False
    evaluator: Node | None = None
    limit: Node | None = None
    span: Span | None = _span()
    seed: Node | None = None          # CREATE TASK ... LIMIT n SEED s (random sample of a folder)


# ---- MLL (Model Label Learning, docs/vlm_selection.md) ------------------------------------




# ---- named objects a method (or the core) declares, and HELP ---------------------------------

@dataclass(frozen=True)
class ShowObjects(Statement):
    """``SHOW <plural>`` of a declared object kind (``SHOW TASKS``, ``SHOW PROBE SETS``, ...)."""
    kind: str
    span: Span | None = _span()


@dataclass(frozen=True)
class DescribeObject(Statement):
    """``DESCRIBE <kind> name`` of a declared object kind."""
    kind: str
    name: Node
    span: Span | None = _span()


@dataclass(frozen=True)
class Help(Statement):
    """``HELP [words]``: the statements, or the syntax and an example of those matching ``words``."""
    topic: tuple[str, ...] = ()
    span: Span | None = _span()


# ---- SELECT queries and COPY (zooql/core/select.py) ----------------------------------------

@dataclass(frozen=True)
class SubStatement(Node):
    """A result-producing statement in parentheses inside a query's FROM or WITH; in the
    query's SQL it stands as the relation ``name``."""
    name: str
    statement: Statement
    span: Span | None = _span()


@dataclass(frozen=True)
class SqlQuery(Statement):
    """A read-only SELECT (or WITH ... SELECT) query. ``sql`` is its text with each method
    sub-statement replaced by its relation name (padded so that positions stay put) and
    each parameter by a DuckDB ``$name``; ``params`` are those parameters, in order."""
    sql: str
    subs: tuple = ()                  # tuple[SubStatement]
    params: tuple = ()                # tuple[(duckdb name, Param or Literal)]
    span: Span | None = _span()
    text: str = field(default="", compare=False, repr=False)   # the query as written


@dataclass(frozen=True)
class Copy(Statement):
    """COPY (<statement>) TO 'file' [WITH (format = ...)]."""
    statement: Statement
    path: Node
    options: tuple = ()
    span: Span | None = _span()


@dataclass(frozen=True)
class CreateView(Statement):
    name: Name
    query: SqlQuery
    span: Span | None = _span()


@dataclass(frozen=True)
class DropView(Statement):
    name: Name
    if_exists: bool = False
    span: Span | None = _span()
