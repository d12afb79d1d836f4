"""Parse-tree callbacks of Hidden Gems: DISCOVER BEST (a mixin of the Transformer
that the registry builds)."""
from __future__ import annotations

from zooql.errors import ParseError  # noqa: F401
from zooql.lang.parser import clauses, span  # noqa: F401
from zooql.methods.hidden_gems import ast as A


class Syntax:
    def count(self, meta, items):
        tok = items[0]
        if not str(tok).isdigit() or int(str(tok)) < 1:
            raise ParseError(f"DISCOVER BEST k needs a whole number >= 1, got {str(tok)[:40]} "
                             f"(line {tok.line}, column {tok.column})", line=tok.line, column=tok.column)
        return ("k", int(str(tok)))

    def per_model(self, meta, items):
        return True

    def total(self, meta, items):
        return False

    def budget_clause(self, meta, items):
        return ("budget", (items[0], items[1] if len(items) > 1 else True))

    def discover_stmt(self, meta, items):
        k = 1
        if isinstance(items[0], tuple) and items[0][0] == "k":
            k = items[0][1]
            items = items[1:]
        kw = clauses(items[2:])
        budget, per_model = kw["budget"]
        return A.Discover(items[0], items[1], budget, per_model, k, kw.get("using"), kw.get("seed"),
                          kw.get("where"), kw.get("options", ()), span=span(meta))
