"""Text -> AST. Lark LALR parser built from the packaged grammar, plus a Transformer
into the frozen dataclasses of :mod:`zooql.query.ast`.

Parse errors carry line, column and a caret under the offending token; the expected
tokens are listed only when there are few of them.
"""
from __future__ import annotations

import functools
from importlib import resources

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from zooql.errors import ParseError, ZooQLError
from zooql.query import ast as A

_MAX_EXPECTED = 8


@functools.lru_cache(maxsize=1)
def _parser() -> Lark:
    text = resources.files("zooql.query").joinpath("grammar.lark").read_text(encoding="utf-8")
    return Lark(text, parser="lalr", propagate_positions=True, maybe_placeholders=False,
                cache=True, start="start")


def grammar_text() -> str:
    return resources.files("zooql.query").joinpath("grammar.lark").read_text(encoding="utf-8")


def _span(meta) -> A.Span | None:
    if getattr(meta, "empty", True):
        return None
    return (meta.start_pos, meta.end_pos, meta.line, meta.column)


def _tok_span(tok: Token) -> A.Span:
    return (tok.start_pos, tok.end_pos, tok.line, tok.column)


def _unquote_string(s: str) -> str:
    return s[1:-1].replace("''", "'")


@v_args(meta=True)
class _ToAst(Transformer):
    def __init__(self):
        super().__init__()
        self._positional = 0

    # ---- literals ------------------------------------------------------------------
    def string(self, meta, items):
        return A.Literal(_unquote_string(str(items[0])), span=_tok_span(items[0]))

    def number(self, meta, items):
        s = str(items[0])
        val = float(s) if any(c in s for c in ".eE") else int(s)
        return A.Literal(val, span=_tok_span(items[0]))

    def true(self, meta, items):
        return A.Literal(True, span=_span(meta))

    def false(self, meta, items):
        return A.Literal(False, span=_span(meta))

    def null(self, meta, items):
        return A.Literal(None, span=_span(meta))

    def positional_param(self, meta, items):
        key = self._positional
        self._positional += 1
        return A.Param(key, span=_span(meta))

    def named_param(self, meta, items):
        return A.Param(str(items[0]), span=_span(meta))

    def value_tuple(self, meta, items):
        return A.TupleValue(tuple(items), span=_span(meta))

    def bare_name(self, meta, items):
        return A.Name(str(items[0]), False, span=_tok_span(items[0]))

    def quoted_name(self, meta, items):
        return A.Name(str(items[0])[1:-1].replace('""', '"'), True, span=_tok_span(items[0]))

    def dotted(self, meta, items):
        return A.Column(tuple(n.value for n in items), span=_span(meta))

    # ---- expressions ---------------------------------------------------------------
    def column(self, meta, items):
        return items[0]

    def or_(self, meta, items):
        return items[0] if len(items) == 1 else A.BoolOp("OR", tuple(items), span=_span(meta))

    def and_(self, meta, items):
        return items[0] if len(items) == 1 else A.BoolOp("AND", tuple(items), span=_span(meta))

    def not_(self, meta, items):
        return A.UnaryOp("NOT", items[0], span=_span(meta))

    def neg(self, meta, items):
        return A.UnaryOp("NEG", items[0], span=_span(meta))

    def compare(self, meta, items):
        op = str(items[1])
        op = "!=" if op == "<>" else op
        return A.BinOp(op, items[0], items[2], span=_span(meta))

    def arith(self, meta, items):
        return A.BinOp(str(items[1]), items[0], items[2], span=_span(meta))

    def not_kw(self, meta, items):
        return "NOT"

    def in_list(self, meta, items):
        negated = len(items) > 1 and items[1] == "NOT"
        vals = items[2:] if negated else items[1:]
        return A.InList(items[0], tuple(vals), negated, span=_span(meta))

    def like(self, meta, items):
        negated = items[1] == "NOT"
        return A.Like(items[0], items[-1], negated, span=_span(meta))

    def is_null(self, meta, items):
        return A.IsNull(items[0], len(items) > 1, span=_span(meta))

    def between(self, meta, items):
        negated = items[1] == "NOT"
        rest = items[2:] if negated else items[1:]
        return A.Between(items[0], rest[0], rest[1], negated, span=_span(meta))

    # ---- clauses -------------------------------------------------------------------
    def where_clause(self, meta, items):
        return ("where", items[0])

    def asc(self, meta, items):
        return False

    def desc(self, meta, items):
        return True

    def order_item(self, meta, items):
        return A.OrderItem(items[0], bool(items[1]) if len(items) > 1 else False, span=_span(meta))

    def order_clause(self, meta, items):
        return ("order", tuple(items))

    def limit_clause(self, meta, items):
        return ("limit", items[0])

    def option(self, meta, items):
        return A.Option(items[0].value, items[-1], span=_span(meta))

    def assignment(self, meta, items):
        return A.Option(".".join(items[0].parts), items[-1], span=_span(meta))

    def with_clause(self, meta, items):
        return ("options", tuple(items))

    def as_name(self, meta, items):
        return ("alias", items[0])

    def from_ckpt(self, meta, items):
        return ("checkpoint", items[0])

    def labels_list(self, meta, items):
        return ("labels", tuple(items))

    def labels_file(self, meta, items):
        return ("labels_file", items[0])

    def if_exists(self, meta, items):
        return True

    def analyze(self, meta, items):
        return True

    def kind_evaluations(self, meta, items):
        return "evaluations"

    def kind_outcomes(self, meta, items):
        return "outcomes"

    def source_clause(self, meta, items):
        return items[0]

    # ---- statements ----------------------------------------------------------------
    def start(self, meta, items):
        return list(items)

    def explain_stmt(self, meta, items):
        analyze = len(items) == 2
        return A.Explain(items[-1], analyze, span=_span(meta))

    def add_model(self, meta, items):
        kw = dict(items[1:])
        return A.AddModel(items[0], kw.get("alias"), kw.get("checkpoint"), kw.get("labels"),
                          kw.get("labels_file"), kw.get("options", ()), span=_span(meta))

    def add_models(self, meta, items):
        return A.AddModels(items[0], span=_span(meta))

    def show_models(self, meta, items):
        kw = dict(items)
        return A.ShowModels(kw.get("where"), kw.get("order", ()), kw.get("limit"), span=_span(meta))

    def show_trees(self, meta, items):
        return A.ShowTrees(span=_span(meta))

    def show_datasets(self, meta, items):
        return A.ShowDatasets(span=_span(meta))

    def describe_model(self, meta, items):
        return A.DescribeModel(items[0], span=_span(meta))

    def describe_dataset(self, meta, items):
        return A.DescribeDataset(items[0], span=_span(meta))

    def drop_model(self, meta, items):
        return A.DropModel(items[-1], len(items) == 2, span=_span(meta))

    def alter_model(self, meta, items):
        return A.AlterModel(items[0], tuple(items[1:]), span=_span(meta))

    def alter_dataset(self, meta, items):
        return A.AlterDataset(items[0], tuple(items[1:]), span=_span(meta))

    def import_stmt(self, meta, items):
        return A.Import(items[0], items[1], items[2] if len(items) > 2 else None, span=_span(meta))

    def set_stmt(self, meta, items):
        return A.SetOption(".".join(items[0].parts).lower(), items[-1], span=_span(meta))


    # ---- method statements -------------------------------------------------------------
    def images_kw(self, meta, items):
        return ("images", True)

    def evaluator_clause(self, meta, items):
        return ("evaluator", items[0])

    def create_task(self, meta, items):
        kw = dict(x for x in items[1:] if isinstance(x, tuple))
        path = [x for x in items[1:] if not isinstance(x, tuple)][0]
        return A.CreateTask(items[0], path, kw.get("images", False), kw.get("evaluator"),
                            kw.get("limit"), span=_span(meta), seed=kw.get("seed"))

    def count(self, meta, items):
        return ("k", int(str(items[0])))

    def per_model(self, meta, items):
        return True

    def total(self, meta, items):
        return False

    def budget_clause(self, meta, items):
        return ("budget", (items[0], items[1] if len(items) > 1 else True))

    def using_clause(self, meta, items):
        return ("using", items[0])

    def seed_clause(self, meta, items):
        return ("seed", items[0])

    def options_clause(self, meta, items):
        return ("options", tuple(items))

    def discover_stmt(self, meta, items):
        k = 1
        if isinstance(items[0], tuple) and items[0][0] == "k":
            k = items[0][1]
            items = items[1:]
        kw = _clauses(items[2:])
        budget, per_model = kw["budget"]
        return A.Discover(items[0], items[1], budget, per_model, k, kw.get("using"), kw.get("seed"),
                          kw.get("where"), kw.get("options", ()), span=_span(meta))

    def described_clause(self, meta, items):
        return ("described", items[0])

    def metric_clause(self, meta, items):
        return ("metric", items[0])

    def given_item(self, meta, items):
        return A.Option(items[0].value, items[-1], span=_span(meta))

    def given_clause(self, meta, items):
        return ("given", tuple(items))

    def top_clause(self, meta, items):
        return ("top", items[0])

    def recommend_stmt(self, meta, items):
        kw = _clauses(items[1:])
        return A.Recommend(items[0], kw.get("described"), kw.get("metric"), kw.get("given", ()),
                           kw.get("where"), kw.get("top"), kw.get("using"), kw.get("options", ()),
                           span=_span(meta))

    def train_recommender(self, meta, items):
        return A.TrainRecommender(items[0][1] if items else (), span=_span(meta))

    def captions_clause(self, meta, items):
        return ("captions", items[0])

    def create_probe_set(self, meta, items):
        kw = _clauses(items[2:])
        return A.CreateProbeSet(items[0], items[1], kw.get("limit"), kw.get("seed"), kw.get("captions"),
                                span=_span(meta))

    def probe_models(self, meta, items):
        return ("models", items[0][1] if items else None)

    def batch_clause(self, meta, items):
        return ("batch", items[0])

    def device_clause(self, meta, items):
        return ("device", items[0])

    def sample_clause(self, meta, items):
        return ("sample", items[0])

    def probe_stmt(self, meta, items):
        where = None
        if isinstance(items[0], tuple) and items[0][0] == "models":
            where = items[0][1]
            items = items[1:]
        kw = _clauses(items[1:])
        return A.Probe(items[0], where, kw.get("batch"), kw.get("device"), kw.get("sample"), kw.get("seed"),
                       span=_span(meta))

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
        return ("like", A.LogitRef(items[0], items[2], span=_span(meta)))

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
        return ("aligner", items[0])

    def probes_clause(self, meta, items):
        return ("probes", items[0])

    def find_stmt(self, meta, items):
        target, query = items[0], items[1]
        kw = _clauses(items[2:])
        return A.Find(target, query[1] if query[0] == "text" else None,
                      query[1] if query[0] == "like" else None, kw.get("in"), kw.get("aligner"),
                      kw.get("probes"), kw.get("where"), kw.get("top"), kw.get("options", ()),
                      span=_span(meta))

    def refresh_stmt(self, meta, items):
        kw = _clauses(items)
        return A.RefreshDescriptors(kw.get("probes"), kw.get("options", ()), span=_span(meta))

    def sources_clause(self, meta, items):
        return ("sources", tuple(items))

    def rank_stmt(self, meta, items):
        kw = _clauses(items[1:])
        return A.RankModels(items[0], kw.get("using"), kw.get("sources"), kw.get("where"), kw.get("top"),
                            kw.get("options", ()), span=_span(meta))

    # ---- MLL ---------------------------------------------------------------------------
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
        kw = _clauses(items[2:])
        return A.CreateSemanticGraph(items[0], items[1], replace, kw.get("root"), kw.get("max_images"),
                                     kw.get("options", ()), span=_span(meta))

    def label_models(self, meta, items):
        kw = _clauses(items)
        return A.LabelModels(kw["graph"], kw.get("where"), kw.get("batch"), kw.get("device"), span=_span(meta))

    def select_models_task(self, meta, items):
        kw = _clauses(items[1:])
        return A.SelectModelsForTask(items[0], kw.get("classes"), kw.get("classes_file"), kw.get("domain"),
                                     kw.get("using_labels", False), kw.get("graph"), kw.get("top"),
                                     kw.get("options", ()), span=_span(meta))

    def classify_stmt(self, meta, items):
        kw = _clauses(items[2:])
        return A.Classify(items[0], items[1], kw.get("classes"), kw.get("classes_file"), kw.get("domain"),
                          kw.get("ensemble"), kw.get("graph"), kw.get("limit"), kw.get("batch"),
                          kw.get("options", ()), span=_span(meta))


def _clauses(items) -> dict:
    """Collect ('key', value) clause pairs; a clause given twice is an error."""
    out: dict = {}
    for key, value in items:
        if key in out:
            raise ParseError(f"clause {key.upper()} given twice")
        out[key] = value
    return out


# ---- extension hooks: later issues register transformer methods ------------------------

def register(rule: str):
    """Decorator registering a Transformer callback for a grammar rule added later."""

    def deco(fn):
        setattr(_ToAst, rule, v_args(meta=True)(lambda self, meta, items: fn(meta, items, _span)))
        return fn

    return deco


# ---- entry points ----------------------------------------------------------------------

def parse(text: str) -> list[A.Statement]:
    """Parse one or more ``;``-separated statements."""
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        raise _format_error(text, exc) from None
    try:
        return _ToAst().transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, ZooQLError):
            raise exc.orig_exc from None
        raise


def parse_one(text: str) -> A.Statement:
    stmts = parse(text)
    if len(stmts) != 1:
        raise ParseError(f"expected exactly one statement, got {len(stmts)}")
    return stmts[0]


_TOKEN_NAMES = {
    "SEMICOLON": "';'", "EQ": "'='", "LPAR": "'('", "RPAR": "')'", "COMMA": "','", "EQUAL": "'='", "DOT": "'.'",
    "STRING": "a 'string'", "NUMBER": "a number", "IDENT": "a name", "QUOTED_IDENT": 'a "quoted name"',
    "QMARK": "'?'", "COLON": "':'", "COMP_OP": "a comparison", "ADD_OP": "'+' or '-'",
    "MUL_OP": "'*', '/' or '%'", "MINUS": "'-'", "$END": "end of input", "LSQB": "'['", "RSQB": "']'",
}


def _pretty_expected(names) -> list[str]:
    out = set()
    for n in names:
        if n in _TOKEN_NAMES:
            out.add(_TOKEN_NAMES[n])
        elif n.startswith("__ANON"):
            continue
        else:
            out.add(n.upper())
    return sorted(out)


def _caret(text: str, line: int, column: int) -> str:
    lines = text.splitlines() or [""]
    src = lines[line - 1] if 0 < line <= len(lines) else ""
    return f"  {line} | {src}\n  {' ' * len(str(line))} | {' ' * (column - 1)}^"


def _format_error(text: str, exc: UnexpectedInput) -> ParseError:
    line = getattr(exc, "line", None) or 1
    column = getattr(exc, "column", None) or 1
    if isinstance(exc, UnexpectedEOF) or (isinstance(exc, UnexpectedToken) and exc.token.type == "$END"):
        lines = text.rstrip().splitlines() or [""]
        line, column = len(lines), len(lines[-1]) + 1
        what = "unexpected end of input"
        expected = _pretty_expected(exc.expected)
    elif isinstance(exc, UnexpectedToken):
        what = f"unexpected {exc.token.value!r}"
        expected = _pretty_expected(exc.accepts or exc.expected)
    elif isinstance(exc, UnexpectedCharacters):
        ch = text[exc.pos_in_stream]
        what = {"'": "unterminated 'string'", '"': 'unterminated "quoted name"'}.get(
            ch, f"unexpected character {ch!r}")
        expected = _pretty_expected(exc.allowed or [])
    else:  # pragma: no cover - other lark errors
        what, expected = "syntax error", []
    msg = f"syntax error at line {line}, column {column}: {what}"
    if expected and len(expected) <= _MAX_EXPECTED:
        msg += f" (expected {', '.join(expected)})"
    return ParseError(msg, line=line, column=column, context=_caret(text, line, column),
                      expected=expected)


def statement_complete(text: str) -> bool:
    """True when ``text`` ends with a ``;`` outside strings, quoted names and comments.

    Used by the REPL to decide when a multi-line input is complete.
    """
    in_str = in_ident = in_comment = False
    last_sig = ""
    i = 0
    while i < len(text):
        c = text[i]
        if in_comment:
            if c == "\n":
                in_comment = False
        elif in_str:
            if c == "'":
                in_str = False
            last_sig = c
        elif in_ident:
            if c == '"':
                in_ident = False
            last_sig = c
        elif c == "-" and text[i:i + 2] == "--":
            in_comment = True
            i += 1
        elif c == "'":
            in_str = True
            last_sig = c
        elif c == '"':
            in_ident = True
            last_sig = c
        elif not c.isspace():
            last_sig = c
        i += 1
    return not in_str and not in_ident and last_sig == ";"
