"""The method registry: every paper's method is one package under ``zooql/methods/`` that
declares itself with a :class:`Method` in its ``__init__.py``; third-party packages add
theirs through the ``zooql.methods`` entry-point group.

A method declares its grammar fragment (``%extend statement: ...``), the Transformer mixin
for its rules, the modules holding its binders and planners (functions tagged with
:func:`zooql.plan.hooks.binds` / :func:`zooql.plan.hooks.plans`), its schema SQL, the
settings it owns, completion sources (category -> SQL listing names) and typed hooks
(``on_drop``, ``on_describe``, ``on_import``, ``on_check``). The core asks this registry; nothing below it names a method.

Declaring a method imports nothing heavy: the grammar and the mixin are all that parsing
needs, binder modules are imported on first bind.
"""
from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Callable

from zooql.errors import ZooQLError

BUILTIN = (
    "zooql.methods.probelog",
    "zooql.methods.hidden_gems",
    "zooql.methods.modellens",
    "zooql.methods.mll",
    "zooql.methods.dcd",
)
ENTRY_POINT_GROUP = "zooql.methods"


@dataclass(frozen=True)
class Method:
    """What a method package contributes. ``package`` is its import path; the other
    module names are relative to it."""

    name: str
    package: str
    statements: tuple[str, ...] = ()           # statement heads, for HELP and completion
    grammar: str | None = "grammar.lark"       # fragment file in the package (package data)
    grammar_text: str | None = None            # or the fragment itself
    syntax: str | None = "syntax:Syntax"       # Transformer mixin "module:Class"
    syntax_class: type | None = None           # or the class itself
    modules: tuple[str, ...] = ("bind",)       # modules with @binds / @plans functions
    schema: str | None = "schema.sql"          # schema SQL file (idempotent CREATE ... IF NOT EXISTS)
    schema_text: str | None = None             # or the SQL itself
    settings: dict[str, type] = field(default_factory=dict)
    completions: dict[str, str] = field(default_factory=dict)   # category -> SELECT name ...
    hooks: dict[str, str] = field(default_factory=dict)         # hook -> "module:function"
    tables: tuple[str, ...] = ()               # user-facing tables (documentation, DROP checks)
    objects: tuple = ()                        # zooql.core.kinds.ObjectKind: SHOW <plural> / DESCRIBE <kind>
    relations: dict[str, str] = field(default_factory=dict)     # SELECT relations: name -> SQL over its tables

    def __post_init__(self):
        unknown = set(self.hooks) - HOOKS
        if unknown:
            raise ZooQLError(f"method {self.name}: unknown hook(s) {sorted(unknown)}; known: {sorted(HOOKS)}")

    # ---- pieces, loaded on demand -------------------------------------------------------
    def fragment(self) -> str:
        if self.grammar_text is not None:
            return self.grammar_text
        if self.grammar is None:
            return ""
        return resources.files(self.package).joinpath(self.grammar).read_text(encoding="utf-8")

    def mixin(self) -> type | None:
        if self.syntax_class is not None:
            return self.syntax_class
        return _resolve(self.package, self.syntax) if self.syntax else None

    def schema_sql(self) -> str:
        if self.schema_text is not None:
            return self.schema_text
        if not self.schema:
            return ""
        return resources.files(self.package).joinpath(self.schema).read_text(encoding="utf-8")

    def hook(self, name: str) -> Callable | None:
        ref = self.hooks.get(name)
        return _resolve(self.package, ref) if ref else None

    def load_modules(self) -> list[Any]:
        return [importlib.import_module(_absolute(self.package, m)) for m in self.modules]


HOOKS = frozenset({"on_drop", "on_describe", "on_import", "on_check"})


def _absolute(package: str, module: str) -> str:
    """Module names in a Method are relative to its package unless they name it in full."""
    return module if module.startswith(package + ".") else f"{package}.{module}"


def _resolve(package: str, ref: str):
    mod, _, attr = ref.partition(":")
    return getattr(importlib.import_module(_absolute(package, mod)), attr)


# ---- the registry --------------------------------------------------------------------------

_EXTRA: list[Method] = []


def register(method: Method) -> None:
    """Add a method at run time (tests, notebooks). Rebuilds the parser and dispatch tables."""
    if any(m.name == method.name for m in methods()):
        raise ZooQLError(f"a method named {method.name!r} is already registered")
    _EXTRA.append(method)
    _invalidate()


def unregister(name: str) -> None:
    _EXTRA[:] = [m for m in _EXTRA if m.name != name]
    _invalidate()


def _invalidate() -> None:
    methods.cache_clear()
    objects.cache_clear()
    parser.cache_clear()
    dispatch.cache_clear()
    hook_table.cache_clear()


@functools.lru_cache(maxsize=1)
def methods() -> tuple[Method, ...]:
    """Built-in methods, then entry-point methods, then those registered at run time."""
    out: list[Method] = [importlib.import_module(p).METHOD for p in BUILTIN]
    out += _entry_point_methods()
    out += _EXTRA
    names = [m.name for m in out]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ZooQLError(f"method name(s) registered twice: {sorted(dup)}")
    return tuple(out)


def _entry_point_methods() -> list[Method]:
    from importlib.metadata import entry_points

    out = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        obj = ep.load()
        if not isinstance(obj, Method):
            raise ZooQLError(f"entry point {ep.name!r} in {ENTRY_POINT_GROUP} is not a zooql Method")
        out.append(obj)
    return out


@functools.lru_cache(maxsize=1)
def parser():
    """The full parser: core grammar plus every method's fragment and mixin."""
    from zooql.lang.parser import Parser

    ms = methods()
    frag, mixin = _object_grammar(tuple(objects().values()))
    return Parser(tuple(m.fragment() for m in ms if m.fragment()) + (frag,),
                  tuple(x for x in (m.mixin() for m in ms) if x is not None) + (mixin,))


@functools.lru_cache(maxsize=1)
def objects() -> dict:
    """Every kind of named object: the core's (tasks) and each method's, kind -> ObjectKind."""
    from dataclasses import replace

    from zooql.core.kinds import CORE_OBJECTS

    out = {k.kind: k for k in CORE_OBJECTS}
    for m in methods():
        for k in m.objects:
            if k.kind in out:
                raise ZooQLError(f"object kind {k.kind!r} of method {m.name} is already declared by {out[k.kind].owner}")
            out[k.kind] = replace(k, package=m.package, owner=m.name)
    return out


def _object_grammar(kinds: tuple) -> tuple[str, type]:
    """The grammar rules ``SHOW <plural>`` / ``DESCRIBE <kind> name`` of the declared kinds, and
    the Transformer mixin building their AST nodes."""
    from zooql.lang import ast as A
    from zooql.lang.parser import span

    def words(text):
        return " ".join(f'"{w.upper()}"i' for w in text.split())

    shows, describes, callbacks = [], [], {}
    for i, k in enumerate(kinds):
        shows.append(f'"SHOW"i {words(k.plural)} -> show_obj_{i}')
        describes.append(f'"DESCRIBE"i {words(k.kind)} name_or_string -> describe_obj_{i}')
        callbacks[f"show_obj_{i}"] = (lambda kind: lambda self, meta, items: A.ShowObjects(
            kind, span=span(meta)))(k.kind)
        callbacks[f"describe_obj_{i}"] = (lambda kind: lambda self, meta, items: A.DescribeObject(
            kind, items[0], span=span(meta)))(k.kind)
    if not kinds:
        return "", type("ObjectSyntax", (), {})
    text = ("%extend statement: show_objects | describe_object\n"
            "show_objects: " + "\n    | ".join(shows) + "\n"
            "describe_object: " + "\n    | ".join(describes) + "\n")
    return text, type("ObjectSyntax", (), callbacks)


def parse(text: str):
    return parser().parse(text)


def parse_one(text: str):
    return parser().parse_one(text)


def keywords() -> list[str]:
    return sorted(parser().keywords())


def schemas() -> tuple[str, ...]:
    return tuple(s for s in (m.schema_sql() for m in methods()) if s)


def settings() -> dict[str, type]:
    out: dict[str, type] = {}
    for m in methods():
        out.update(m.settings)
    return out


def completion_sources() -> dict[str, str]:
    out: dict[str, str] = {}
    for m in methods():
        out.update(m.completions)
    return out


def relations() -> dict[str, str]:
    """The relations every method offers to SELECT (name -> SQL over its tables)."""
    out: dict[str, str] = {}
    for m in methods():
        dup = set(out) & set(m.relations)
        if dup:
            raise ZooQLError(f"relation(s) {sorted(dup)} declared by two methods")
        out.update(m.relations)
    return out


@functools.lru_cache(maxsize=1)
def hook_table() -> dict[str, tuple[Callable, ...]]:
    """Every method's hook functions by hook name (resolved once, not per statement)."""
    return {name: tuple(h for h in (m.hook(name) for m in methods()) if h is not None)
            for name in sorted(HOOKS)}


@functools.lru_cache(maxsize=1)
def dispatch():
    """Binder and planner tables: the core's plus every method's, built from the tagged
    functions of the declared modules; a statement type claimed twice is an error."""
    from zooql.plan.hooks import Dispatch
    from zooql.core import binder, check, help, objects, planner, select, tasks_bind, views

    d = Dispatch()
    for mod in (binder, planner, tasks_bind, check, objects, help, select, views):
        d.collect(mod, owner="core")
    for m in methods():
        for mod in m.load_modules():
            d.collect(mod, owner=m.name)
    return d
