"""AST nodes of ProbeLog: probe sets, PROBE, FIND, REFRESH DESCRIPTORS; the core nodes are re-exported so binders use one module."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zooql.lang.ast import *  # noqa: F401,F403  (core nodes: Literal, Name, Statement, ...)
from zooql.lang.ast import Name, Node, Statement, Span, _span  # noqa: F401


@dataclass(frozen=True)
class CreateProbeSet(Statement):
    name: Name
    path: Node
    limit: Node | None = None
    seed: Node | None = None
    captions: Node | None = None
    span: Span | None = _span()


@dataclass(frozen=True)
class Probe(Statement):
    probe_set: Node
    where: Node | None = None
    batch: Node | None = None
    device: Node | None = None
    sample: Node | None = None
    seed: Node | None = None
    span: Span | None = _span()


@dataclass(frozen=True)
class LogitRef(Node):
    model: Name
    logit: Node  # Literal int index or str label
    span: Span | None = _span()


@dataclass(frozen=True)
class Find(Statement):
    target: str                  # 'logits' | 'models'
    text: Node | None = None     # RECOGNIZING 'text'
    like: Node | None = None     # LogitRef | Name/Literal (a model)
    models: tuple | None = None  # IN (a, b, ...); None = whole hub
    aligner: Node | None = None
    probe_set: Node | None = None
    where: Node | None = None
    top: Node | None = None
    options: tuple = ()
    span: Span | None = _span()
    images: Node | None = None   # LIKE IMAGES 'folder/' (query by example images)


@dataclass(frozen=True)
class RefreshDescriptors(Statement):
    probe_set: Node | None = None
    options: tuple = ()
    span: Span | None = _span()


@dataclass(frozen=True)
class Vacuum(Statement):
    probe_set: Node | None = None   # None: every probe set
    span: Span | None = _span()
