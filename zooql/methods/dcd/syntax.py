"""Parse-tree callbacks of DCD: RANK MODELS ... USING CONDUCTANCE (a mixin of the Transformer
that the registry builds)."""
from __future__ import annotations

from zooql.errors import ParseError  # noqa: F401
from zooql.lang.parser import clauses, span  # noqa: F401
from zooql.methods.dcd import ast as A


class Syntax:
    def sources_clause(self, meta, items):
        return ("sources", tuple(items))

    def rank_stmt(self, meta, items):
        kw = clauses(items[1:])
        return A.RankModels(items[0], kw.get("using"), kw.get("sources"), kw.get("where"), kw.get("top"),
                            kw.get("options", ()), span=span(meta))
