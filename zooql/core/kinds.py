"""Declarations of the kinds of named objects (:class:`ObjectKind`) and the core's own kinds.
Imports nothing heavy: the method registry reads these to build the grammar."""
from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class ObjectKind:
    """One kind of named object. ``list_sql`` lists them, the name first; ``describe`` is
    ``"module:function"`` (absolute, or relative to ``package``) of ``fn(con, name)`` returning
    ``(property, value)`` pairs."""

    kind: str                    # singular, lower case words: "probe set"
    plural: str                  # "probe sets"
    list_sql: str                # SELECT name, ... ORDER BY name
    describe: str                # "module:function"
    package: str = ""            # the declaring package (for a relative ``describe``)
    owner: str = "core"

    def describe_ref(self) -> str:
        mod, _, fn = self.describe.partition(":")
        if self.package and not mod.startswith(self.package + "."):
            mod = f"{self.package}.{mod}"
        return f"{mod}:{fn}"


def _describe_task(con, name: str) -> list[tuple]:
    row = con.execute("SELECT name, kind, path, evaluator, n_queries, fingerprint, info, created_at "
                      "FROM tasks WHERE name = ?", [name]).fetchone()
    info = json.loads(row[6]) if row[6] else {}
    out = [("name", row[0]), ("kind", row[1]), ("path", row[2]), ("evaluator", row[3]),
           ("queries", row[4]), ("fingerprint", row[5][:16])]
    out += [(k, json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in sorted(info.items())]
    out.append(("created_at", row[7]))
    return out


CORE_OBJECTS = (
    ObjectKind("task", "tasks",
               "SELECT name, kind, n_queries AS queries, evaluator, path, created_at FROM tasks ORDER BY name",
               "zooql.core.kinds:_describe_task"),
)


