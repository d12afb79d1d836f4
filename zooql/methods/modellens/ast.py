"""AST nodes of ModelLens: RECOMMEND, TRAIN RECOMMENDER; the core nodes are re-exported so binders use one module."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zooql.lang.ast import *  # noqa: F401,F403  (core nodes: Literal, Name, Statement, ...)
from zooql.lang.ast import Name, Node, Statement, Span, _span  # noqa: F401


@dataclass(frozen=True)
class Recommend(Statement):
    dataset: Node
    description: Node | None = None
    metric: Node | None = None
    given: tuple = ()            # tuple[Option] (model = score)
    where: Node | None = None
    top: Node | None = None
    method: Node | None = None
    options: tuple = ()
    span: Span | None = _span()


@dataclass(frozen=True)
class TrainRecommender(Statement):
    options: tuple = ()
    span: Span | None = _span()
