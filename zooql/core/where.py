"""Compile a WHERE/ORDER BY expression AST to DuckDB SQL with bound parameters.

User values never enter the SQL text: every literal becomes a ``?`` parameter, and
column names come from a fixed allow-list (``columns``) or become JSON lookups into the
``tags`` column with the key passed as a parameter.

What DuckDB would only refuse while running is refused (or defined) here, so a WHERE never
fails with the engine's words: text compared with a time column must read as a time
(BindError pointing at the value), LIKE on a time matches its text, ``x / 0`` and ``x % 0``
are NULL. Integer arithmetic stays exact; an overflow of it (a property of the data, known
only while running) is ExecutionError "arithmetic overflow: ..." (``api.execution_error``).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from zooql.errors import BindError
from zooql.lang import ast as A

_SQL_OPS = {"=", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%"}
TIME_FORMS = "'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM[:SS]'"


def _where(node: A.Node) -> str:
    return f"at line {node.span[2]}, column {node.span[3]}" if getattr(node, "span", None) else ""


def _time_error(node: A.Node, column: str) -> BindError:
    where = _where(node)
    return BindError(f"value {where}: {render(node)} is not a time, but {column} is one (write a time as "
                     f"{TIME_FORMS})".replace("value : ", "value: ", 1),
                     line=node.span[2] if where else None, column=node.span[3] if where else None)


def is_time_text(text: str) -> bool:
    """Whether DuckDB reads ``text`` as a TIMESTAMP (the check runs in a private in-memory
    connection, so a comparison with a time column never fails while the statement runs)."""
    import duckdb

    global _TIME_CON
    if _TIME_CON is None:
        _TIME_CON = duckdb.connect(":memory:")
    try:
        return _TIME_CON.execute("SELECT TRY_CAST(? AS TIMESTAMP) IS NOT NULL", [text]).fetchone()[0]
    except duckdb.Error:
        return False


_TIME_CON = None


_TAG_CASTS = {"number": "DOUBLE", "bool": "BOOLEAN", "time": "TIMESTAMP"}


@dataclass
class Compiled:
    sql: str
    params: list = field(default_factory=list)


def suggest(name: str, candidates) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


class ExprCompiler:
    """``columns`` maps user-visible column names to SQL column names; ``json_column``
    (e.g. ``tags``) holds free-form keys reachable as ``tags.key`` or, when the key is
    known (``tag_keys``), as a bare name."""

    def __init__(self, columns: dict[str, str], *, json_column: str | None = "tags",
                 tag_keys=(), table: str = "models", types: dict[str, str] | None = None):
        self.columns = columns
        self.types = types or {}  # column -> 'text' | 'number' | 'bool' | 'time'; checked at bind
        self.json_column = json_column
        self._tag_keys = tag_keys   # a collection, or a function giving one (asked only if needed)
        self.table = table
        self.params: list = []

    @property
    def tag_keys(self) -> set:
        """The known tag keys; a function given for them runs on first use (reading every
        model's tags is a scan of the catalog, needed only for a bare unknown name)."""
        if callable(self._tag_keys):
            self._tag_keys = self._tag_keys()
        if not isinstance(self._tag_keys, set):
            self._tag_keys = set(self._tag_keys)
        return self._tag_keys

    def compile(self, node: A.Node, condition: bool = False) -> Compiled:
        """``node`` as SQL; ``condition``: it is a WHERE (text or a time is refused there)."""
        self.params = []
        sql = self._condition(node) if condition else self._c(node)
        return Compiled(sql, list(self.params))

    # ---- helpers -------------------------------------------------------------------------
    def _p(self, value) -> str:
        self.params.append(value)
        return "?"

    def _is_numeric(self, node: A.Node) -> bool:
        if isinstance(node, A.Literal):
            return isinstance(node.value, (int, float)) and not isinstance(node.value, bool)
        if isinstance(node, A.BinOp) and node.op in "+-*/%":
            return True
        return isinstance(node, A.UnaryOp) and node.op == "NEG"

    def _kind(self, node: A.Node) -> str | None:
        """The value kind of an operand when it is known (None: any, e.g. a tag or NULL)."""
        if isinstance(node, A.Literal):
            v = node.value
            if v is None:
                return None
            return "bool" if isinstance(v, bool) else "text" if isinstance(v, str) else "number"
        if isinstance(node, A.Column) and len(node.parts) == 1:
            return self.types.get(node.parts[0].lower())
        if isinstance(node, A.BinOp) and node.op in "+-*/%":
            return "number"
        if isinstance(node, A.UnaryOp) and node.op == "NEG":
            return "number"
        if isinstance(node, (A.BinOp, A.BoolOp, A.UnaryOp, A.InList, A.Like, A.IsNull, A.Between)):
            return "bool"     # a comparison or a condition
        return None

    def _is_tag(self, node: A.Node) -> bool:
        """Whether ``node`` is a value of the JSON column (``tags.key`` or a known bare key)."""
        if not isinstance(node, A.Column) or not self.json_column:
            return False
        parts = node.parts
        if len(parts) == 1:
            return parts[0].lower() not in self.columns and parts[0] in self.tag_keys
        return parts[0].lower() == self.json_column

    def _condition(self, node: A.Node) -> str:
        """``node`` where a condition stands (WHERE, AND, OR, NOT): text and times are
        refused here (DuckDB would fail casting them while running); a tag is true when
        its value reads as true."""
        kind = self._kind(node)
        if kind in ("text", "time"):
            where = _where(node)
            example = "'2024-01-01'" if kind == "time" else "'...'"
            raise BindError(f"{render(node)} is {kind}, not a condition{' ' + where if where else ''}: compare it, "
                            f"e.g. {render(node)} = {example} or {render(node)} IS NOT NULL",
                            line=node.span[2] if where else None, column=node.span[3] if where else None)
        if self._is_tag(node):
            return self._operand(node, "bool")
        return self._c(node)

    def _same_kind(self, a: A.Node, b: A.Node, op: str) -> None:
        ka, kb = self._kind(a), self._kind(b)
        for x, kx, y in ((a, ka, b), (b, kb, a)):
            if kx == "time" and isinstance(y, A.Literal) and isinstance(y.value, str) \
                    and not is_time_text(y.value):
                raise _time_error(y, render(x))
        ka, kb = ("text" if k == "time" else k for k in (ka, kb))
        if ka is None or kb is None or ka == kb:
            return
        where = _where(a)
        raise BindError(f"cannot compare {render(a)} ({ka}) {op} {render(b)} ({kb}){' ' + where if where else ''}: "
                        f"both sides of {op} must be of the same kind (write a number as 5, text as '5')",
                        line=a.span[2] if where else None, column=a.span[3] if where else None)

    def _numeric_operand(self, node: A.Node, op: str) -> None:
        kind = self._kind(node)
        if kind not in (None, "number"):
            raise BindError(f"{op} needs numbers, but {render(node)} is {kind}")

    def _json(self, key: str, want) -> str:
        """A tag's value as text, or (``want``: a kind, or True for a number) as that kind,
        NULL where it does not read as one."""
        path = self._p("$." + '"' + key.replace('"', '\\"') + '"')
        cast = _TAG_CASTS.get("number" if want is True else want)
        if cast:
            return f"TRY_CAST(json_extract_string({self.json_column}, {path}) AS {cast})"
        return f"json_extract_string({self.json_column}, {path})"

    def _column(self, node: A.Column, numeric_ctx=False) -> str:
        parts = node.parts
        if len(parts) == 1 and parts[0].lower() in self.columns:
            return self.columns[parts[0].lower()]
        if self.json_column and len(parts) >= 2 and parts[0].lower() == self.json_column:
            return self._json(".".join(parts[1:]), numeric_ctx)
        if self.json_column and len(parts) == 1 and parts[0] in self.tag_keys:
            return self._json(parts[0], numeric_ctx)
        name = ".".join(parts)
        hint = suggest(name, list(self.columns) + [f"{self.json_column}.{k}" for k in self.tag_keys])
        raise BindError(f"unknown column {name!r} in {self.table}{hint}; "
                        f"tag values are reached as {self.json_column}.<key>")

    def _want(self, *others: A.Node):
        """The kind a tag compared with ``others`` is read as: theirs when they agree on
        one (a number also when one is numeric), else text."""
        kinds = {self._kind(x) for x in others if not self._is_tag(x)} - {None}
        if any(self._is_numeric(x) for x in others):
            return "number"
        return kinds.pop() if len(kinds) == 1 else None

    def _operand(self, node: A.Node, numeric_ctx) -> str:
        if isinstance(node, A.Column):
            return self._column(node, numeric_ctx)
        return self._c(node)

    def _c(self, node: A.Node) -> str:
        if isinstance(node, A.Literal):
            if node.value is None:
                return "NULL"
            return self._p(node.value)
        if isinstance(node, A.Param):  # the binder substitutes params before compiling
            raise BindError(f"unbound parameter {node.key!r}")
        if isinstance(node, A.Column):
            return self._column(node)
        if isinstance(node, A.BoolOp):
            return "(" + f" {node.op} ".join(self._condition(x) for x in node.items) + ")"
        if isinstance(node, A.UnaryOp):
            if node.op == "NOT":
                return f"(NOT {self._condition(node.operand)})"
            self._numeric_operand(node.operand, "'-'")
            return f"(-{self._operand(node.operand, True)})"
        if isinstance(node, A.BinOp):
            if node.op not in _SQL_OPS:
                raise BindError(f"unsupported operator {node.op!r}")
            if node.op in "+-*/%":
                self._numeric_operand(node.left, repr(node.op))
                self._numeric_operand(node.right, repr(node.op))
            else:
                self._same_kind(node.left, node.right, node.op)
            if node.op in "+-*/%":
                left, right = self._operand(node.left, True), self._operand(node.right, True)
            else:
                left, right = self._operand(node.left, self._want(node.right)), \
                    self._operand(node.right, self._want(node.left))
            if node.op in "/%":      # by zero: NULL (DuckDB refuses x % 0 while running)
                right = f"NULLIF({right}, 0)"
            return f"({left} {node.op} {right})"
        if isinstance(node, A.InList):
            for x in node.items:
                self._same_kind(node.operand, x, "IN")
            numeric = all(self._is_numeric(x) for x in node.items) or self._want(*node.items)
            operand = self._operand(node.operand, numeric)  # parameters in textual order
            items = ", ".join(self._c(x) for x in node.items)
            neg = "NOT " if node.negated else ""
            return f"({operand} {neg}IN ({items}))"
        if isinstance(node, A.Like):
            neg = "NOT " if node.negated else ""
            for side in (node.operand, node.pattern):
                if self._kind(side) not in (None, "text", "time"):
                    raise BindError(f"LIKE needs text, but {render(side)} is {self._kind(side)}")
            operand = self._operand(node.operand, False)
            if self._kind(node.operand) == "time":   # a time matches LIKE by its text
                operand = f"CAST({operand} AS VARCHAR)"
            return f"({operand} {neg}LIKE {self._c(node.pattern)})"
        if isinstance(node, A.IsNull):
            return f"({self._operand(node.operand, False)} IS {'NOT ' if node.negated else ''}NULL)"
        if isinstance(node, A.Between):
            neg = "NOT " if node.negated else ""
            self._same_kind(node.operand, node.low, "BETWEEN")
            self._same_kind(node.operand, node.high, "BETWEEN")
            sides = (node.operand, node.low, node.high)
            want = self._want(*sides) or (True if all(self._is_tag(x) or self._kind(x) is None for x in sides)
                                          else None)
            return (f"({self._operand(node.operand, want)} {neg}BETWEEN "
                    f"{self._operand(node.low, want)} AND {self._operand(node.high, want)})")
        raise BindError(f"unsupported expression {type(node).__name__}")


def render(node: A.Node) -> str:
    """Deterministic ZooQL-like rendering of an expression for EXPLAIN lines."""
    if isinstance(node, A.Literal):
        v = node.value
        if isinstance(v, str):
            return "'" + v.replace("'", "''") + "'"
        if v is None:
            return "NULL"
        if isinstance(v, bool):
            return "TRUE" if v else "FALSE"
        return repr(v)
    if isinstance(node, A.Column):
        return ".".join(node.parts)
    if isinstance(node, A.BoolOp):
        return "(" + f" {node.op} ".join(render(x) for x in node.items) + ")"
    if isinstance(node, A.UnaryOp):
        return f"NOT {render(node.operand)}" if node.op == "NOT" else f"-{render(node.operand)}"
    if isinstance(node, A.BinOp):
        return f"{render(node.left)} {node.op} {render(node.right)}"
    if isinstance(node, A.InList):
        return f"{render(node.operand)} {'NOT ' if node.negated else ''}IN ({', '.join(render(x) for x in node.items)})"
    if isinstance(node, A.Like):
        return f"{render(node.operand)} {'NOT ' if node.negated else ''}LIKE {render(node.pattern)}"
    if isinstance(node, A.IsNull):
        return f"{render(node.operand)} IS {'NOT ' if node.negated else ''}NULL"
    if isinstance(node, A.Between):
        return f"{render(node.operand)} BETWEEN {render(node.low)} AND {render(node.high)}"
    if isinstance(node, A.Param):
        return f":{node.key}" if isinstance(node.key, str) else "?"
    return type(node).__name__
