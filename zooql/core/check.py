"""CHECK HUB: verify that the catalog and the files beside it agree, and that every file
with a recorded checksum still has it. Problems come back as rows (``severity``,
``object``, ``file``, ``problem``, ``fix``); none means the hub is consistent. The CLI exits
with status 3 when any row is returned.

The core checks the catalog itself (format version, logits of missing models) and the
files every statement may leave (temporary files of an interrupted write); each method
checks its own tables and files through its ``on_check`` hook, called with the statement's
ExecContext and returning rows of the same shape.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from zooql.lang import ast as A
from zooql.plan.hooks import binds, plans
from zooql.plan.nodes import OpStats, Operator, Rows
from zooql.storage.hub import is_temporary

COLUMNS = ("severity", "object", "file", "problem", "fix")
TMP_FIX = "a write was interrupted before it renamed this file into place; nothing names it: delete it"


@dataclass(frozen=True)
class BoundCheckHub:
    pass


@binds(A.CheckHub)
def _bind_check(stmt: A.CheckHub, bc) -> BoundCheckHub:
    return BoundCheckHub()


@plans(BoundCheckHub)
def _plan_check(b: BoundCheckHub) -> Operator:
    return CheckHub()


def core_checks(ctx) -> list[tuple]:
    from zooql.storage.hub import FORMAT_VERSION, READS_FORMATS

    out = []
    con = ctx.con
    row = con.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
    if row is None or str(row[0]) not in {str(v) for v in READS_FORMATS}:
        out.append(("error", "catalog", str(ctx.store.catalog_path),
                    f"meta records format version {row[0] if row else None}, expected {FORMAT_VERSION}",
                    "open the hub with the ZooQL version that wrote it"))
    n = con.execute("SELECT count(*) FROM logits WHERE model_id NOT IN (SELECT id FROM models)").fetchone()[0]
    if n:
        out.append(("error", "logits", str(ctx.store.catalog_path), f"{n} logit rows name no model",
                    "DROP MODEL did not finish; report this as a bug"))
    for dirpath, dirnames, filenames in os.walk(ctx.store.path):
        for fn in filenames:
            if is_temporary(fn):
                out.append(("warning", "file", os.path.join(dirpath, fn), "temporary file left behind", TMP_FIX))
    return out


@dataclass(frozen=True)
class CheckHub(Operator):
    """Catalog/file consistency and checksums of the whole hub (core and every method)."""

    def explain_params(self):
        return {"checks": "catalog, files, checksums"}

    def run(self, ctx, inputs):
        rows = core_checks(ctx)
        for hook in ctx.hooks.get("on_check", ()):
            rows.extend(hook(ctx))
        rows.sort(key=lambda r: (r[0] != "error", r[1], r[2] or ""))
        st = ctx.stats.setdefault(id(self), OpStats())
        errors = sum(1 for r in rows if r[0] == "error")
        st.extra.update(errors=errors, warnings=len(rows) - errors)
        if not rows:
            msg = f"hub {ctx.store.path} is consistent: catalog, files and checksums agree"
        else:
            msg = (f"hub {ctx.store.path}: {errors} error(s), {len(rows) - errors} warning(s); "
                   "see the fix column")
        return Rows(list(COLUMNS), rows, message=msg)

