"""Rewrite rules over operator trees: small pure functions ``Operator -> Operator`` with a
name, applied in order. ``EXPLAIN VERBOSE`` lists each rule and whether it changed the plan."""
from __future__ import annotations

import dataclasses
from typing import Callable

from zooql.plan.nodes import Operator

Rule = Callable[[Operator], Operator]


def transform_up(op: Operator, fn: Callable[[Operator], Operator]) -> Operator:
    """Apply ``fn`` bottom-up to every node reachable through a ``child`` field."""
    child = getattr(op, "child", None)
    if isinstance(child, Operator):
        new_child = transform_up(child, fn)
        if new_child is not child:
            op = dataclasses.replace(op, child=new_child)
    return fn(op)


RULES: list[tuple[str, Rule]] = []


def apply_rules(op: Operator, rules: list[tuple[str, Rule]] | None = None,
                trace: list | None = None) -> Operator:
    for name, rule in (RULES if rules is None else rules):
        new = rule(op)
        if trace is not None:
            trace.append((name, new != op))
        op = new
    return op
