"""AST nodes of MLL: semantic graphs, LABEL MODELS, SELECT MODELS FOR TASK, CLASSIFY; the core nodes are re-exported so binders use one module."""
from __future__ import annotations

from dataclasses import dataclass

from zooql.lang.ast import *  # noqa: F401,F403  (core nodes: Literal, Name, Statement, ...)
from zooql.lang.ast import Name, Node, Statement, Span, _span  # noqa: F401


@dataclass(frozen=True)
class CreateSemanticGraph(Statement):
    name: Name
    path: Node
    replace: bool = False
    root: Node | None = None
    max_images: Node | None = None
    options: tuple = ()
    span: Span | None = _span()


@dataclass(frozen=True)
class LabelModels(Statement):
    graph: Node
    where: Node | None = None
    batch: Node | None = None
    device: Node | None = None
    span: Span | None = _span()


@dataclass(frozen=True)
class SelectModelsForTask(Statement):
    task: Node
    classes: tuple | None = None      # CLASSES ('a', 'b', ...)
    classes_file: Node | None = None  # CLASSES FROM 'file'
    domain: Node | None = None
    using_labels: bool = False
    graph: Node | None = None
    top: Node | None = None
    options: tuple = ()
    span: Span | None = _span()


@dataclass(frozen=True)
class Classify(Statement):
    path: Node
    task: Node
    classes: tuple | None = None
    classes_file: Node | None = None
    domain: Node | None = None
    ensemble: Node | None = None      # USING LABELS ENSEMBLE k
    graph: Node | None = None
    limit: Node | None = None
    batch: Node | None = None
    options: tuple = ()
    span: Span | None = _span()
