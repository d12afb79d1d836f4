"""A method added from outside ZooQL: one Method registration, no ZooQL file touched.

The toy method ``GREET MODELS [WHERE ...]`` has its own grammar fragment, AST node,
Transformer mixin, binder, planner, operator (with its printer), schema table and drop
hook; the test registers it, then parses, binds, explains and runs it."""
import dataclasses
import sys
import types
from dataclasses import dataclass
from typing import ClassVar

import pytest

import zooql
from zooql.core.binder import BindContext, bind_model_filter
from zooql.errors import ParseError
from zooql.lang.ast import Node, Statement, Span, _span
from zooql.lang.parser import span
from zooql.methods import registry
from zooql.methods.registry import Method
from zooql.plan.hooks import binds, plans, rule
from zooql.plan.logical import Logical
from zooql.plan.nodes import Expr, Operator, Rows

GRAMMAR = """
%extend statement: greet_stmt
greet_stmt: "GREET"i "MODELS"i where_clause?
"""
SCHEMA = "CREATE TABLE IF NOT EXISTS greetings (model VARCHAR PRIMARY KEY, n INTEGER NOT NULL);"


@dataclass(frozen=True)
class Greet(Statement):
    where: Node | None = None
    span: Span | None = _span()


class Syntax:
    def greet_stmt(self, meta, items):
        return Greet(items[0][1] if items else None, span=span(meta))


@dataclass(frozen=True)
class BoundGreet(Logical):
    sql: str
    params: tuple
    filter: str | None
    scope: str = "filtered"


@rule("greet_scope")
def greet_scope(b):
    """A logical rewrite: a GREET without WHERE greets every model."""
    if isinstance(b, BoundGreet) and b.filter is None and b.scope != "all":
        return dataclasses.replace(b, scope="all")
    return b


@binds(Greet)
def bind_greet(stmt: Greet, bc: BindContext):
    where, text = bind_model_filter(stmt.where, bc)
    sql = "SELECT name FROM models" + (f" WHERE {where.sql}" if where else "") + " ORDER BY name"
    return BoundGreet(sql, tuple(where.params) if where else (), text)


@dataclass(frozen=True)
class GreetOp(Operator):
    sql: str = ""
    params: tuple = ()
    filter: str | None = None
    writes: ClassVar[bool] = True

    def explain_params(self):
        return {"filter": Expr(self.filter) if self.filter else None}

    def run(self, ctx, inputs):
        names = [r[0] for r in ctx.con.execute(self.sql, list(self.params)).fetchall()]
        for n in names:
            ctx.con.execute("INSERT INTO greetings VALUES (?, 1) ON CONFLICT (model) DO UPDATE "
                            "SET n = greetings.n + 1", [n])
        return Rows(["model", "greeting"], [(n, f"hello {n}") for n in names])


@plans(BoundGreet)
def plan_greet(b: BoundGreet):
    return GreetOp(sql=b.sql, params=b.params, filter=b.filter)


def drop_greetings(ctx, model_id, name):
    ctx.con.execute("DELETE FROM greetings WHERE model = ?", [name])


@pytest.fixture
def toy_method():
    pkg = types.ModuleType("zooql_toy")
    pkg.__path__ = []
    mod = types.ModuleType("zooql_toy.bind")
    for obj in (bind_greet, plan_greet, drop_greetings, greet_scope):
        setattr(mod, obj.__name__, obj)
        obj.__module__ = mod.__name__
    sys.modules.update({"zooql_toy": pkg, "zooql_toy.bind": mod})
    registry.register(Method(name="toy", package="zooql_toy", statements=("GREET MODELS",),
                             grammar=None, grammar_text=GRAMMAR, syntax=None, syntax_class=Syntax,
                             modules=("bind",), schema=None, schema_text=SCHEMA,
                             hooks={"on_drop": "bind:drop_greetings"}, tables=("greetings",)))
    yield
    registry.unregister("toy")
    for k in ("zooql_toy", "zooql_toy.bind"):
        sys.modules.pop(k, None)


def test_toy_method_parses_binds_explains_runs(toy_method, tmp_path):
    stmt = registry.parse_one("greet models where tree = 'x'")
    assert isinstance(stmt, Greet) and stmt.where is not None and stmt.span[2:] == (1, 1)
    assert "GREET" in registry.keywords()
    with zooql.connect(tmp_path / "hub") as hub:
        hub.execute("ADD MODEL 'hf:a/one' AS one WITH (tree = 'x')")
        hub.execute("ADD MODEL 'hf:a/two' AS two WITH (tree = 'y')")
        assert hub.explain("GREET MODELS WHERE tree = 'x'") == "GreetOp: filter=(tree = 'x')"
        res = hub.execute("GREET MODELS WHERE tree = 'x'")
        assert res.columns == ["model", "greeting"] and res.rows == [("one", "hello one")]
        hub.execute("GREET MODELS")
        with hub.store.read() as con:
            assert con.execute("SELECT model, n FROM greetings ORDER BY 1").fetchall() == [("one", 2), ("two", 1)]
        hub.execute("DROP MODEL one")          # the method's on_drop hook runs
        with hub.store.read() as con:
            assert con.execute("SELECT model FROM greetings").fetchall() == [("two",)]


def test_explain_verbose_shows_logical_plan_rules_and_physical_plan(toy_method, tmp_path):
    with zooql.connect(tmp_path / "hub") as hub:
        hub.execute("ADD MODEL 'hf:a/one' AS one WITH (tree = 'x')")
        lines = [r[0] for r in hub.execute("EXPLAIN VERBOSE GREET MODELS")]
        assert lines[:2] == ["logical_plan:", "  Greet: scope=filtered"]
        assert "rule: name=toy.greet_scope phase=logical changed=true" in lines
        i = lines.index("logical_plan_after_rules:")
        assert lines[i + 1] == "  Greet: scope=all"
        assert lines[-2:] == ["physical_plan:", "  GreetOp:"]
        lines = [r[0] for r in hub.execute("EXPLAIN VERBOSE GREET MODELS WHERE tree = 'x'")]
        assert "rule: name=toy.greet_scope phase=logical changed=false" in lines
        assert "logical_plan_after_rules:" not in lines


def test_logical_nodes_are_validated():
    with pytest.raises(TypeError, match="BoundGreet.sql must be str"):
        BoundGreet(sql=3, params=(), filter=None)
    with pytest.raises(TypeError, match="params must be tuple"):
        BoundGreet(sql="", params=[1], filter=None)


def test_unregistered_method_is_gone(toy_method):
    registry.unregister("toy")
    with pytest.raises(ParseError):
        registry.parse_one("GREET MODELS")


def test_duplicate_method_name_is_refused():
    with pytest.raises(zooql.ZooQLError, match="already registered"):
        registry.register(Method(name="probelog", package="x"))
