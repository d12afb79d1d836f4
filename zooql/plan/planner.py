"""Planning: a bound statement -> the operator tree that runs it.

The planner function of the statement's bound type (collected by the method registry from
functions tagged with :func:`zooql.plan.hooks.plans`) builds the tree; the rewrite rules of
:mod:`zooql.plan.rules` then run over it in order, each a small pure function with a name.
"""
from __future__ import annotations

from zooql.errors import ZooQLError
from zooql.plan.nodes import Operator
from zooql.plan.rules import apply_rules


def plan(bound, dispatch, *, trace: list | None = None) -> Operator:
    fn = dispatch.planner(type(bound))
    if fn is None:
        raise ZooQLError(f"no planner for {type(bound).__name__}")
    return apply_rules(fn(bound), trace=trace)
