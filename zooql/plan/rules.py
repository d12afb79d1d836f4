"""Rewrite rules: small pure functions with a name, over logical nodes or operator trees,
applied in order (see :mod:`zooql.plan.planner`). A rule returns its input unchanged when
it does not apply; :func:`apply_rules` records whether each one changed the plan."""
from __future__ import annotations

from typing import Any, Callable

Rule = Callable[[Any], Any]


def apply_rules(plan, rules: list[tuple[str, Rule]], trace: list | None = None):
    for name, rule in rules:
        new = rule(plan)
        if trace is not None:
            trace.append((name, new is not plan and new != plan))
        plan = new
    return plan
