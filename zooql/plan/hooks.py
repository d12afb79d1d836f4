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


def rule(name: str, *, phase: str = "logical"):
    """Tag ``fn(plan) -> plan`` as a rewrite rule named ``name``: a small pure function over
    logical nodes (``phase='logical'``, before physical planning) or operator trees
    (``phase='physical'``). It returns its input unchanged when it does not apply."""
    if phase not in ("logical", "physical"):
        raise ValueError(f"unknown rule phase {phase!r}")

    def deco(fn):
        fn.__zooql_rule__ = (name, phase)
        return fn
    return deco


class Dispatch:
    """Binder and planner tables keyed by type, with the owner of each entry."""

    def __init__(self):
        self.binders: dict[type, Callable] = {}
        self.planners: dict[type, Callable] = {}
        self.owners: dict[type, str] = {}
        self.rules: dict[str, list[tuple[str, Callable]]] = {"logical": [], "physical": []}

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
                if hasattr(obj, "__zooql_rule__"):
                    name, phase = obj.__zooql_rule__
                    if any(n == name for n, _ in self.rules[phase]):
                        raise ZooQLError(f"rewrite rule {name!r} is defined twice")
                    self.rules[phase].append((f"{owner}.{name}", obj))

    def binder(self, ast_type: type) -> Callable | None:
        return self.binders.get(ast_type)

    def planner(self, bound_type: type) -> Callable | None:
        return self.planners.get(bound_type)
