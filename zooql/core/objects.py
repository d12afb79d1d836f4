"""Named objects the user creates, listed by ``SHOW <plural>`` and described by
``DESCRIBE <kind> name``. The core declares its own kinds (tasks); every method declares
its kinds in its :class:`zooql.methods.registry.Method` (``objects=``); the registry
generates the grammar rules of both statements from these declarations, and passes the
table to the binder (:attr:`zooql.core.binder.BindContext.objects`). The core knows no
method: a kind is data (a listing query and a describe function named by reference).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from zooql.core.binder import BindContext
from zooql.core.kinds import ObjectKind
from zooql.core.where import suggest
from zooql.errors import BindError
from zooql.lang import ast as A
from zooql.plan.hooks import binds, plans
from zooql.plan.nodes import Operator, Rows


@dataclass(frozen=True)
class BoundObject:
    kind: ObjectKind
    name: str | None = None      # None: SHOW


def _kind(bc: BindContext, kind: str) -> ObjectKind:
    k = bc.objects.get(kind)
    if k is None:  # pragma: no cover - the grammar only has declared kinds
        raise BindError(f"unknown object kind {kind!r}")
    return k


@binds(A.ShowObjects)
def _bind_show_objects(stmt: A.ShowObjects, bc: BindContext):
    return BoundObject(_kind(bc, stmt.kind))


@binds(A.DescribeObject)
def _bind_describe_object(stmt: A.DescribeObject, bc: BindContext):
    from zooql.core.binder import value_of

    k = _kind(bc, stmt.kind)
    name = str(value_of(stmt.name))
    names = [r[0] for r in bc.con.execute(k.list_sql).fetchall()]
    if name not in names:
        raise BindError(f"unknown {k.kind} {name!r}{suggest(name, names)}",
                        hint=f"{k.plural}: {', '.join(names[:20]) or 'none yet'} (SHOW {k.plural.upper()})")
    return BoundObject(k, name)


@plans(BoundObject)
def _plan_object(b: BoundObject) -> Operator:
    if b.name is None:
        return ShowObjects(kind=b.kind.kind, sql=b.kind.list_sql)
    return DescribeObject(kind=b.kind.kind, object=b.name, describe=b.kind.describe_ref())


@dataclass(frozen=True)
class ShowObjects(Operator):
    kind: str = ""
    sql: str = ""

    def explain_params(self):
        return {"kind": self.kind}

    def run(self, ctx, inputs):
        table = ctx.con.sql(self.sql).to_arrow_table()
        n = table.num_rows
        return Rows.from_arrow(table, message=f"{n} {self.kind}{'' if n == 1 else 's'}")


@dataclass(frozen=True)
class DescribeObject(Operator):
    kind: str = ""
    object: str = ""
    describe: str = ""           # "module:function"

    def explain_params(self):
        return {"kind": self.kind, "name": self.object}

    def run(self, ctx, inputs):
        mod, _, fn = self.describe.partition(":")
        rows = getattr(importlib.import_module(mod), fn)(ctx.con, self.object)
        return Rows(["property", "value"], [(k, None if v is None else str(v)) for k, v in rows])
