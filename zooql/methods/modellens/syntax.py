"""Parse-tree callbacks of ModelLens: RECOMMEND, TRAIN RECOMMENDER (a mixin of the Transformer
that the registry builds)."""
from __future__ import annotations

from zooql.errors import ParseError  # noqa: F401
from zooql.lang.parser import clauses, span  # noqa: F401
from zooql.methods.modellens import ast as A


class Syntax:
    def described_clause(self, meta, items):
        return ("described", items[0])

    def metric_clause(self, meta, items):
        return ("metric", items[0])

    def given_item(self, meta, items):
        return A.Option(items[0].value, items[-1], span=span(meta))

    def given_clause(self, meta, items):
        return ("given", tuple(items))

    def recommend_stmt(self, meta, items):
        kw = clauses(items[1:])
        return A.Recommend(items[0], kw.get("described"), kw.get("metric"), kw.get("given", ()),
                           kw.get("where"), kw.get("top"), kw.get("using"), kw.get("options", ()),
                           span=span(meta))

    def train_recommender(self, meta, items):
        return A.TrainRecommender(items[0][1] if items else (), span=span(meta))
