"""AST nodes of Hidden Gems: DISCOVER BEST; the core nodes are re-exported so binders use one module."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zooql.lang.ast import *  # noqa: F401,F403  (core nodes: Literal, Name, Statement, ...)
from zooql.lang.ast import Name, Node, Statement, Span, _span  # noqa: F401


@dataclass(frozen=True)
class Discover(Statement):
    tree: Node
    task: Node
    budget: Node
    per_model: bool = True
    k: int = 1
    strategy: Node | None = None
    seed: Node | None = None
    where: Node | None = None
    options: tuple = ()
    span: Span | None = _span()
