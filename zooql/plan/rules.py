"""Rewrite rules: small pure functions with a name, over logical nodes or operator trees,
applied in order (see :mod:`zooql.plan.planner`). A rule returns its input unchanged when
it does not apply; :func:`apply_rules` records whether each one changed the plan."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

Rule = Callable[[Any], Any]


def transform_up(op, fn: Callable[[Any], Any]):
    """Apply ``fn`` bottom-up to every node reachable through a ``child`` field."""
    child = getattr(op, "child", None)
    if child is not None and dataclasses.is_dataclass(child):
        new_child = transform_up(child, fn)
        if new_child is not child:
            op = dataclasses.replace(op, child=new_child)
    return fn(op)


def apply_rules(plan, rules: list[tuple[str, Rule]], trace: list | None = None):
    for name, rule in rules:
        new = rule(plan)
        if trace is not None:
            trace.append((name, new is not plan and new != plan))
        plan = new
    return plan
