"""Typed registration of binders and planners.

``@binds(AstType)`` and ``@plans(BoundType)`` only tag a function; nothing is registered
by importing a module. The method registry collects the tagged functions of the modules a
method declares into a :class:`Dispatch`, and refuses a statement type claimed twice.
"""
from __future__ import annotations

from typing import Any, Callable

from zooql.errors import ZooQLError


def binds(ast_type: type):
    """Tag ``fn(stmt, bind_context) -> bound`` as the binder of ``ast_type``."""
    def deco(fn):
        fn.__zooql_binds__ = ast_type
        return fn
    return deco


def plans(bound_type: type):
    """Tag ``fn(bound) -> logical plan node`` as the planner of ``bound_type``."""
    def deco(fn):
        fn.__zooql_plans__ = bound_type
        return fn
    return deco


class Dispatch:
    """Binder and planner tables keyed by type, with the owner of each entry."""

    def __init__(self):
        self.binders: dict[type, Callable] = {}
        self.planners: dict[type, Callable] = {}
        self.owners: dict[type, str] = {}

    def _add(self, table: dict, key: type, fn: Callable, owner: str) -> None:
        if key in table and table[key] is not fn:
            raise ZooQLError(f"{key.__name__} is claimed by both {self.owners[key]} and {owner}")
        table[key] = fn
        self.owners[key] = owner

    def collect(self, module: Any, owner: str) -> None:
        for obj in vars(module).values():
            if callable(obj) and getattr(obj, "__module__", None) == module.__name__:
                if hasattr(obj, "__zooql_binds__"):
                    self._add(self.binders, obj.__zooql_binds__, obj, owner)
                if hasattr(obj, "__zooql_plans__"):
                    self._add(self.planners, obj.__zooql_plans__, obj, owner)

    def binder(self, ast_type: type) -> Callable | None:
        return self.binders.get(ast_type)

    def planner(self, bound_type: type) -> Callable | None:
        return self.planners.get(bound_type)
