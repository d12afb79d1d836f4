"""Logical plan nodes: *what* a statement computes, as the binder resolved it.

Every bound statement is a :class:`Logical` node: a frozen dataclass whose fields are
checked against their annotations when it is built, that prints itself as one EXPLAIN line
(``Name: key=value``) and never runs. Rewrite rules (:mod:`zooql.plan.rules`) map logical
plans to logical plans; a physical planner (tagged :func:`zooql.plan.hooks.plans`) turns the
final logical node into the operator tree that runs (:mod:`zooql.plan.nodes`).
"""
from __future__ import annotations

import dataclasses
import functools
import os
import types
import typing
from typing import Any

from zooql.plan.nodes import fmt_value

_SCALARS = (str, int, float, bool)
_MAX_ITEMS = 8


@functools.lru_cache(maxsize=None)
def _checks(cls) -> tuple[tuple[str, tuple[type, ...]], ...]:
    """(field, allowed types) for the fields annotated with simple types; others unchecked."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation that cannot be resolved is not checked
        return ()
    out = []
    for f in dataclasses.fields(cls):
        allowed = _allowed(hints.get(f.name))
        if allowed:
            out.append((f.name, allowed))
    return tuple(out)


def _allowed(hint) -> tuple[type, ...] | None:
    if hint in _SCALARS or hint is tuple:
        return (int, float) if hint is float else (hint,)
    origin = typing.get_origin(hint)
    if origin is tuple:
        return (tuple,)
    if origin in (typing.Union, types.UnionType):
        parts = [_allowed(a) if a is not type(None) else (type(None),) for a in typing.get_args(hint)]
        if all(parts):
            return tuple(t for p in parts for t in p)
    return None


@dataclasses.dataclass(frozen=True)
class Logical:
    """Base of logical nodes (bound statements)."""

    def __post_init__(self):
        for name, allowed in _checks(type(self)):
            value = getattr(self, name)
            if not isinstance(value, allowed):   # (a bool is an int, as in Python)
                raise TypeError(f"{type(self).__name__}.{name} must be {' or '.join(t.__name__ for t in allowed)}, "
                                f"got {type(value).__name__} {value!r}")

    @property
    def node_name(self) -> str:
        name = type(self).__name__
        return name[5:] if name.startswith("Bound") else name

    @property
    def children(self) -> tuple["Logical", ...]:
        return tuple(v for v in (getattr(self, f.name) for f in dataclasses.fields(self))
                     if isinstance(v, Logical))

    def explain_params(self) -> dict[str, Any]:
        """Default printer: the fields with short values, paths by their base name, SQL
        fragments by their text companion (``where_text``), nothing machine-specific."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name.startswith("_"):
                continue
            v = _printable(f.name, getattr(self, f.name))
            if v is not None:
                out[f.name] = v
        return out

    def explain_line(self) -> str:
        body = " ".join(f"{k}={fmt_value(v)}" for k, v in self.explain_params().items())
        return f"{self.node_name}: {body}" if body else f"{self.node_name}:"


def _printable(key: str, v: Any):
    if v is None or isinstance(v, Logical) or v == () or v == {} or v == "":
        return None
    if isinstance(v, str):
        if key.endswith(("path", "dir", "base_dir")) or os.path.isabs(v):
            return os.path.basename(v.rstrip("/")) or v
        if key.endswith("sql") or len(v) > 120:
            return None
        return v
    if isinstance(v, _SCALARS):
        return v
    if isinstance(v, (tuple, list)) and all(isinstance(x, _SCALARS) or x is None for x in v):
        return list(v[:_MAX_ITEMS]) + (["..."] if len(v) > _MAX_ITEMS else [])
    return None


def explain_logical(node, depth: int = 0) -> list[str]:
    line = node.explain_line() if isinstance(node, Logical) else f"{type(node).__name__}:"
    out = ["  " * depth + line]
    for c in getattr(node, "children", ()):
        out.extend(explain_logical(c, depth + 1))
    return out
