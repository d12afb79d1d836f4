"""Parse-tree callbacks of MLL: semantic graphs, LABEL MODELS, SELECT MODELS FOR TASK, CLASSIFY (a mixin of the Transformer
that the registry builds)."""
from __future__ import annotations

from zooql.errors import ParseError  # noqa: F401
from zooql.lang.parser import clauses, span  # noqa: F401
from zooql.methods.mll import ast as A


class Syntax:
    def or_replace(self, meta, items):
        return ("replace", True)

    def root_clause(self, meta, items):
        return ("root", items[0])

    def max_images_clause(self, meta, items):
        return ("max_images", items[0])

    def on_graph(self, meta, items):
        return ("graph", items[0])

    def classes_list(self, meta, items):
        return ("classes", tuple(items))

    def classes_file(self, meta, items):
        return ("classes_file", items[0])

    def domain_clause(self, meta, items):
        return ("domain", items[0])

    def using_labels(self, meta, items):
        return ("using_labels", True)

    def using_ensemble(self, meta, items):
        return ("ensemble", items[0])

    def create_semantic_graph(self, meta, items):
        replace = bool(items and items[0] == ("replace", True))
        items = items[1:] if replace else items
        kw = clauses(items[2:])
        return A.CreateSemanticGraph(items[0], items[1], replace, kw.get("root"), kw.get("max_images"),
                                     kw.get("options", ()), span=span(meta))

    def label_models(self, meta, items):
        kw = clauses(items)
        return A.LabelModels(kw["graph"], kw.get("where"), kw.get("batch"), kw.get("device"), span=span(meta))

    def select_models_task(self, meta, items):
        kw = clauses(items[1:])
        return A.SelectModelsForTask(items[0], kw.get("classes"), kw.get("classes_file"), kw.get("domain"),
                                     kw.get("using_labels", False), kw.get("graph"), kw.get("top"),
                                     kw.get("options", ()), span=span(meta))

    def classify_stmt(self, meta, items):
        kw = clauses(items[2:])
        return A.Classify(items[0], items[1], kw.get("classes"), kw.get("classes_file"), kw.get("domain"),
                          kw.get("ensemble"), kw.get("graph"), kw.get("limit"), kw.get("batch"),
                          kw.get("options", ()), span=span(meta))
