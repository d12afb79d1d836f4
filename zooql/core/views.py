"""CREATE VIEW name AS <select> / DROP VIEW: the query text is stored in the catalog's
``views`` table and parsed, bound and planned again each time a query reads the view (so a
view over a method statement re-runs it); EXPLAIN shows the view's plan under the query's.
"""
from __future__ import annotations

from dataclasses import dataclass

import duckdb

from zooql.core import sqlcheck
from zooql.core.binder import BindContext
from zooql.core.where import suggest
from zooql.errors import BindError
from zooql.lang import ast as A
from zooql.plan.hooks import binds, plans
from zooql.plan.logical import Logical
from zooql.plan.nodes import Operator, Rows

_MAX_DEPTH = 16


def stored(bc: BindContext) -> dict[str, str]:
    """The views of the catalog: name -> query text (none on a hub written before views)."""
    if not hasattr(bc, "_views"):
        try:
            bc._views = dict(bc.con.execute("SELECT name, query FROM views").fetchall())
        except duckdb.Error:
            bc._views = {}
    return bc._views


def expand(tree, names: list[str], bc: BindContext, bind_query) -> list[tuple[str, Operator]]:
    """Replace each view of ``names`` read by ``tree`` (sqlglot) with the relation of its
    re-bound query; return (relation, plan) of each."""
    if not names:
        return []
    from sqlglot import exp

    from zooql.plan.planner import plan

    views = stored(bc)
    out = []
    stack = getattr(bc, "_view_stack", ())
    for name in names:
        if name not in views:
            continue
        if name in stack or len(stack) >= _MAX_DEPTH:
            raise BindError(f"view {name!r} refers to itself (through {' -> '.join(stack + (name,))})")
        if bc.parse is None:  # pragma: no cover - the API always passes the parser
            raise BindError("views need the full parser")
        query = bc.parse(views[name])
        bc._view_stack = stack + (name,)
        try:
            op = plan(bind_query(query, bc), bc.dispatch)
        except BindError as exc:
            raise BindError(f"view {name!r} no longer binds: {exc.message}") from None
        finally:
            bc._view_stack = stack
        rel = f"__view_{name}"
        ctes = {str(c.alias).lower() for c in tree.find_all(exp.CTE)}
        for t in tree.find_all(exp.Table):
            if isinstance(t.this, exp.Identifier) and str(t.name).lower() == name and name not in ctes:
                if not t.alias:
                    t.set("alias", exp.TableAlias(this=exp.to_identifier(name)))
                t.set("this", exp.to_identifier(rel))
        out.append((rel, op))
    return out


@dataclass(frozen=True)
class BoundCreateView(Logical):
    name: str
    query: str


@dataclass(frozen=True)
class BoundDropView(Logical):
    name: str
    if_exists: bool = False


@binds(A.CreateView)
def _bind_create_view(stmt: A.CreateView, bc: BindContext) -> BoundCreateView:
    from zooql.core.binder import bind

    name = stmt.name.value.lower()
    if name in sqlcheck.CORE_RELATIONS or name in bc.relations:
        raise BindError(f"{name!r} is a catalog relation; choose another view name")
    if name in stored(bc):
        raise BindError(f"view {name!r} already exists (DROP VIEW {name} first)")
    if stmt.query.params:
        raise BindError("a view cannot have parameters (? or :name)")
    bc._view_stack = (name,)
    try:
        bind(stmt.query, bc)     # checks the query now; it is bound again on every use
    finally:
        bc._view_stack = ()
    return BoundCreateView(name, stmt.query.text)


@binds(A.DropView)
def _bind_drop_view(stmt: A.DropView, bc: BindContext) -> BoundDropView:
    name = stmt.name.value.lower()
    if name not in stored(bc) and not stmt.if_exists:
        raise BindError(f"unknown view {name!r}{suggest(name, stored(bc))}")
    return BoundDropView(name, stmt.if_exists)


@dataclass(frozen=True)
class CreateView(Operator):
    view: str = ""
    query: str = ""
    writes = True

    def explain_params(self):
        return {"view": self.view}

    def run(self, ctx, inputs):
        ctx.con.execute("INSERT INTO views (name, query) VALUES (?, ?)", [self.view, self.query])
        return Rows([], [], message=f"created view {self.view}")


@dataclass(frozen=True)
class DropView(Operator):
    view: str = ""
    writes = True

    def explain_params(self):
        return {"view": self.view}

    def run(self, ctx, inputs):
        n = ctx.con.execute("DELETE FROM views WHERE name = ? RETURNING name", [self.view]).fetchall()
        return Rows([], [], message=f"dropped view {self.view}" if n else f"no view {self.view}")


@plans(BoundCreateView)
def _plan_create_view(b: BoundCreateView) -> Operator:
    return CreateView(view=b.name, query=b.query)


@plans(BoundDropView)
def _plan_drop_view(b: BoundDropView) -> Operator:
    return DropView(view=b.name)
