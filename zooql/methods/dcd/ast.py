"""AST nodes of DCD: RANK MODELS ... USING CONDUCTANCE; the core nodes are re-exported so binders use one module."""
from __future__ import annotations

from dataclasses import dataclass

from zooql.lang.ast import *  # noqa: F401,F403  (core nodes: Literal, Name, Statement, ...)
from zooql.lang.ast import Name, Node, Statement, Span, _span  # noqa: F401


@dataclass(frozen=True)
class RankModels(Statement):
    """RANK MODELS FOR TASK t USING CONDUCTANCE [SOURCES (...)] [WHERE] [TOP k] [OPTIONS] (DCD)."""

    task: Node
    method: Node | None = None
    sources: tuple | None = None   # tuple of Name/Literal; None = every task with evaluations
    where: Node | None = None
    top: Node | None = None
    options: tuple = ()
    span: Span | None = _span()
