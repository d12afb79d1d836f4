"""Planning: bound statement (a logical node) -> the operator tree that runs it.

1. The logical rewrite rules run in order over the bound statement (the core's, then each
   method's, collected by the registry from functions tagged :func:`zooql.plan.hooks.rule`).
2. The physical planner tagged for the resulting node's type builds the operator tree.
3. The physical rules run over that tree.

Each rule is a small pure function with a name; ``trace`` records, per rule, whether it
changed the plan (``EXPLAIN VERBOSE`` prints it).
"""
from __future__ import annotations

from zooql.errors import ZooQLError
from zooql.plan.nodes import Operator
from zooql.plan.rules import apply_rules


def _plan(bound, dispatch, trace: list | None):
    """(logical node after the logical rules, operator tree after the physical rules)."""
    logical = apply_rules(bound, dispatch.rules["logical"], trace)
    fn = dispatch.planner(type(logical))
    if fn is None:
        raise ZooQLError(f"no planner for {type(logical).__name__}")
    return logical, apply_rules(fn(logical), dispatch.rules["physical"], trace)


def plan(bound, dispatch, *, trace: list | None = None) -> Operator:
    return _plan(bound, dispatch, trace)[1]


def plan_verbose(bound, dispatch) -> tuple[list[str], Operator]:
    """EXPLAIN VERBOSE: the logical plan, each rule and whether it changed the plan, the
    logical plan after the rules, and the physical plan."""
    from zooql.plan.logical import explain_logical
    from zooql.plan.nodes import explain

    trace: list = []
    logical, op = _plan(bound, dispatch, trace)
    n_logical = len(dispatch.rules["logical"])
    lines = ["logical_plan:"] + ["  " + x for x in explain_logical(bound)]
    for i, (name, changed) in enumerate(trace):
        lines.append(f"rule: name={name} phase={'logical' if i < n_logical else 'physical'} "
                     f"changed={'true' if changed else 'false'}")
    if any(changed for _, changed in trace[:n_logical]):
        lines += ["logical_plan_after_rules:"] + ["  " + x for x in explain_logical(logical)]
    lines += ["physical_plan:"] + ["  " + x for x in explain(op)]
    return lines, op
