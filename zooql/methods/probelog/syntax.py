"""Parse-tree callbacks of ProbeLog: probe sets, PROBE, FIND, REFRESH DESCRIPTORS, VACUUM (a mixin of the Transformer
that the registry builds)."""
from __future__ import annotations

from zooql.errors import ParseError  # noqa: F401
from zooql.lang.parser import clauses, span  # noqa: F401
from zooql.methods.probelog import ast as A


class Syntax:
    def captions_clause(self, meta, items):
        return ("captions", items[0])

    def create_probe_set(self, meta, items):
        kw = clauses(items[2:])
        return A.CreateProbeSet(items[0], items[1], kw.get("limit"), kw.get("seed"), kw.get("captions"),
                                span=span(meta))

    def probe_models(self, meta, items):
        return ("models", items[0][1] if items else None)

    def sample_clause(self, meta, items):
        return ("sample", items[0])

    def probe_stmt(self, meta, items):
        where = None
        if isinstance(items[0], tuple) and items[0][0] == "models":
            where = items[0][1]
            items = items[1:]
        kw = clauses(items[1:])
        return A.Probe(items[0], where, kw.get("batch"), kw.get("device"), kw.get("sample"), kw.get("seed"),
                       span=span(meta))

    def target_logits(self, meta, items):
        return "logits"

    def target_models(self, meta, items):
        return "models"

    def recognizing(self, meta, items):
        return ("text", items[0])

    def like_logit(self, meta, items):
        if items[1].value.lower() != "logit":
            raise ParseError(f"expected <model>.logit[...] in FIND ... LIKE, got .{items[1].value}",
                             line=meta.line, column=meta.column)
        return ("like", A.LogitRef(items[0], items[2], span=span(meta)))

    def like_images(self, meta, items):
        return ("images", items[0])

    def like_model(self, meta, items):
        return ("like", items[0])

    def in_models(self, meta, items):
        return ("in", tuple(items))

    def in_hub(self, meta, items):
        if items[0].value.lower() != "hub":
            raise ParseError(f"FIND ... IN expects 'hub' or a list (a, b, ...), got {items[0].value!r}",
                             line=meta.line, column=meta.column)
        return ("in", None)

    def aligner_clause(self, meta, items):
        if len(items) == 2:   # USING ALIGNER teacher:my_cnn (unquoted kind:model)
            value = f"{_text(items[0])}:{_text(items[1])}"
            return ("aligner", type(items[0])(value, span=getattr(items[0], "span", None))
                    if hasattr(items[0], "quoted") else value)
        return ("aligner", items[0])

    def probes_clause(self, meta, items):
        return ("probes", items[0])

    def find_stmt(self, meta, items):
        target, query = items[0], items[1]
        kw = clauses(items[2:])
        return A.Find(target, query[1] if query[0] == "text" else None,
                      query[1] if query[0] == "like" else None, kw.get("in"), kw.get("aligner"),
                      kw.get("probes"), kw.get("where"), kw.get("top"), kw.get("options", ()),
                      span=span(meta), images=query[1] if query[0] == "images" else None)

    def refresh_stmt(self, meta, items):
        kw = clauses(items)
        return A.RefreshDescriptors(kw.get("probes"), kw.get("options", ()), span=span(meta))


    def vacuum_stmt(self, meta, items):
        return A.Vacuum(items[0] if items else None, span=span(meta))


def _text(node) -> str:
    return str(getattr(node, "value", node))
