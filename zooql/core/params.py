"""Checks of statement parameters and literal values before binding.

Parameters follow the sqlite3 convention: ``?`` placeholders take a sequence (list or
tuple) whose length is the number of placeholders in the whole query text; ``:name``
placeholders take a mapping holding every name used (other keys are ignored). A ``str`` is
not a sequence of parameters; a wrong count, a missing name or a mix of styles is a
:class:`BindError`.

Every value a statement carries (literals, parameter values, names) must be something the
catalog can store: str without lone surrogates, int within 64 bits, float, bool or None
(a list/tuple of those for ``IN (...)`` and tuple options).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Iterator

from zooql.errors import BindError
from zooql.lang import ast as A

INT_MIN, INT_MAX = -(2 ** 63), 2 ** 63 - 1
_SCALARS = (str, int, float, bool, type(None))


def walk(node: Any) -> Iterator[Any]:
    """Every AST node under ``node`` (tuples followed), without recursion."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, tuple):
            stack.extend(n)
        elif dataclasses.is_dataclass(n) and isinstance(n, A.Node):
            yield n
            stack.extend(getattr(n, f.name) for f in dataclasses.fields(n) if f.name != "span")


def placeholders(stmts) -> tuple[int, list[str]]:
    """(number of ``?``, the ``:names`` in order of first use) over ``stmts``."""
    positional, named = set(), []
    for node in walk(tuple(stmts)):
        if isinstance(node, A.Param):
            if isinstance(node.key, int):
                positional.add(node.key)
            elif node.key not in named:
                named.append(node.key)
    return len(positional), named


def _plural(n: int, what: str = "parameter") -> str:
    return f"{n} {what}{'s' if n != 1 else ''}"


def check_params(stmts, params: Any) -> None:
    """Raise BindError unless ``params`` fits the placeholders of ``stmts``."""
    n_pos, named = placeholders(stmts)
    if params is None:  # as an empty list (for ?) or an empty dict (for :name)
        params = {} if named and not n_pos else ()
    if isinstance(params, (str, bytes, bytearray)):
        raise BindError(f"parameters must be a list/tuple (for ?) or a dict (for :name), not a "
                        f"{type(params).__name__}; wrap a single value in a list: [{params[:20]!r}]")
    if isinstance(params, Mapping):
        if n_pos:
            raise BindError(f"the statement uses {_plural(n_pos, 'positional parameter')} (?) but a "
                            f"mapping of named parameters was given; pass a list or tuple")
        missing = [n for n in named if n not in params]
        if missing:
            raise BindError(f"no value given for parameter :{missing[0]}")
        # as in sqlite3, a mapping may hold more names than the statement uses (the CLI's
        # -p values go to every statement of a script)
        for key in named:
            check_value(params[key], f"parameter :{key}")
        return
    if isinstance(params, Sequence):
        if named:
            raise BindError(f"the statement uses named parameters ({', '.join(':' + n for n in named)}) "
                            f"but a sequence was given; pass a dict")
        if len(params) != n_pos:
            raise BindError(f"the statement uses {_plural(n_pos)}, but {len(params)} "
                            f"{'was' if len(params) == 1 else 'were'} given")
        for i, v in enumerate(params):
            check_value(v, f"parameter ? #{i + 1}")
        return
    raise BindError(f"parameters must be a list/tuple (for ?) or a dict (for :name), not "
                    f"{type(params).__name__}")


def check_value(v: Any, what: str, *, nested: bool = False) -> None:
    """A value the catalog can store, else BindError naming ``what``."""
    if isinstance(v, (list, tuple)) and not nested:
        for x in v:
            check_value(x, what, nested=True)
        return
    if not isinstance(v, _SCALARS):
        raise BindError(f"{what} has unsupported type {type(v).__name__} (use str, int, float, "
                        f"bool, None{'' if nested else ' or a list of those'})")
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise BindError(f"{what} is not valid Unicode text: {exc.reason} at position "
                            f"{exc.start}") from None
    elif isinstance(v, int) and not isinstance(v, bool) and not INT_MIN <= v <= INT_MAX:
        raise BindError(f"{what}: integer {str(v)[:30]}{'...' if len(str(v)) > 30 else ''} is out "
                        f"of range (64-bit integers only)")


def check_literals(stmt) -> None:
    """Check every literal value and name in a statement (after parameter substitution)."""
    for node in walk(stmt):
        where = f" at line {node.span[2]}, column {node.span[3]}" if node.span else ""
        try:
            if isinstance(node, A.Literal):
                check_value(node.value, f"value{where}")
            elif isinstance(node, (A.Name, A.Column)):
                for part in (node.value,) if isinstance(node, A.Name) else node.parts:
                    check_value(part, f"name{where}")
            elif isinstance(node, A.Option):
                check_value(node.key, f"option name{where}")
        except BindError as exc:   # the caret points at the value (Hub.execute adds it)
            if node.span:
                exc.line, exc.column = node.span[2], node.span[3]
            raise
