"""Text -> AST. Lark LALR parser built from the packaged core grammar plus the grammar
fragments of the registered methods, and a Transformer into frozen dataclasses.

This module knows no method: :class:`Parser` takes the fragments (``%extend statement:``)
and the Transformer mixins it is given (``zooql.methods.registry`` gives them). It imports
only lark and :mod:`zooql.errors`.

Parse errors carry line, column and a caret under the offending token; the expected
tokens are listed only when there are few of them.
"""
from __future__ import annotations

import functools
import re
from importlib import resources

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from zooql.errors import ParseError, ZooQLError
from zooql.lang import ast as A
from zooql.lang import sqlspan

_MAX_EXPECTED = 8
# Deepest parse tree accepted (about 95 nested parentheses or 190 chained NOTs): the
# Transformer, the binder and the WHERE compiler recurse over the tree.
MAX_DEPTH = 200


def core_grammar() -> str:
    return resources.files("zooql.lang").joinpath("grammar.lark").read_text(encoding="utf-8")


def span(meta) -> A.Span | None:
    """The source span of a parse-tree node (None for an empty node)."""
    if getattr(meta, "empty", True):
        return None
    return (meta.start_pos, meta.end_pos, meta.line, meta.column)


def _tokspan(tok: Token) -> A.Span:
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
        return A.Literal(_unquote_string(str(items[0])), span=_tokspan(items[0]))

    def number(self, meta, items):
        return A.Literal(number_value(items[0]), span=_tokspan(items[0]))

    def true(self, meta, items):
        return A.Literal(True, span=span(meta))

    def false(self, meta, items):
        return A.Literal(False, span=span(meta))

    def null(self, meta, items):
        return A.Literal(None, span=span(meta))

    def positional_param(self, meta, items):
        key = self._positional
        self._positional += 1
        return A.Param(key, span=span(meta))

    def named_param(self, meta, items):
        return A.Param(str(items[0]), span=span(meta))

    def value_tuple(self, meta, items):
        return A.TupleValue(tuple(items), span=span(meta))

    def bare_name(self, meta, items):
        return A.Name(str(items[0]), False, span=_tokspan(items[0]))

    def quoted_name(self, meta, items):
        return A.Name(str(items[0])[1:-1].replace('""', '"'), True, span=_tokspan(items[0]))

    def dotted(self, meta, items):
        return A.Column(tuple(n.value for n in items), span=span(meta))

    # ---- expressions ---------------------------------------------------------------
    def column(self, meta, items):
        return items[0]

    def or_(self, meta, items):
        return items[0] if len(items) == 1 else A.BoolOp("OR", tuple(items), span=span(meta))

    def and_(self, meta, items):
        return items[0] if len(items) == 1 else A.BoolOp("AND", tuple(items), span=span(meta))

    def not_(self, meta, items):
        return A.UnaryOp("NOT", items[0], span=span(meta))

    def neg(self, meta, items):
        return A.UnaryOp("NEG", items[0], span=span(meta))

    def compare(self, meta, items):
        op = str(items[1])
        op = "!=" if op == "<>" else op
        return A.BinOp(op, items[0], items[2], span=span(meta))

    def arith(self, meta, items):
        return A.BinOp(str(items[1]), items[0], items[2], span=span(meta))

    def not_kw(self, meta, items):
        return "NOT"

    def in_list(self, meta, items):
        negated = len(items) > 1 and items[1] == "NOT"
        vals = items[2:] if negated else items[1:]
        return A.InList(items[0], tuple(vals), negated, span=span(meta))

    def like(self, meta, items):
        negated = items[1] == "NOT"
        return A.Like(items[0], items[-1], negated, span=span(meta))

    def is_null(self, meta, items):
        return A.IsNull(items[0], len(items) > 1, span=span(meta))

    def between(self, meta, items):
        negated = items[1] == "NOT"
        rest = items[2:] if negated else items[1:]
        return A.Between(items[0], rest[0], rest[1], negated, span=span(meta))

    # ---- clauses -------------------------------------------------------------------
    def where_clause(self, meta, items):
        return ("where", items[0])

    def asc(self, meta, items):
        return False

    def desc(self, meta, items):
        return True

    def order_item(self, meta, items):
        return A.OrderItem(items[0], bool(items[1]) if len(items) > 1 else False, span=span(meta))

    def order_clause(self, meta, items):
        return ("order", tuple(items))

    def limit_clause(self, meta, items):
        return ("limit", items[0])

    def option(self, meta, items):
        return A.Option(items[0].value, items[-1], span=span(meta))

    def assignment(self, meta, items):
        return A.Option(".".join(items[0].parts), items[-1], span=span(meta))

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
        return "analyze"

    def verbose(self, meta, items):
        return "verbose"

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
        mode = items[0] if len(items) == 2 else None
        if isinstance(items[-1], A.Explain):
            inner = items[-1].span
            where = f" at line {inner[2]}, column {inner[3]}" if inner else ""
            raise ParseError(f"EXPLAIN cannot explain an EXPLAIN{where}; write one EXPLAIN [ANALYZE | VERBOSE]")
        return A.Explain(items[-1], mode == "analyze", span=span(meta), verbose=mode == "verbose")

    def add_model(self, meta, items):
        kw = dict(items[1:])
        return A.AddModel(items[0], kw.get("alias"), kw.get("checkpoint"), kw.get("labels"),
                          kw.get("labels_file"), kw.get("options", ()), span=span(meta))

    def add_models(self, meta, items):
        return A.AddModels(items[0], span=span(meta))

    def show_models(self, meta, items):
        kw = dict(items)
        return A.ShowModels(kw.get("where"), kw.get("order", ()), kw.get("limit"), span=span(meta))

    def show_trees(self, meta, items):
        return A.ShowTrees(span=span(meta))

    def show_datasets(self, meta, items):
        return A.ShowDatasets(span=span(meta))

    def check_hub(self, meta, items):
        return A.CheckHub(span=span(meta))

    def describe_model(self, meta, items):
        return A.DescribeModel(items[0], span=span(meta))

    def describe_dataset(self, meta, items):
        return A.DescribeDataset(items[0], span=span(meta))

    def drop_model(self, meta, items):
        return A.DropModel(items[-1], len(items) == 2, span=span(meta))

    def alter_model(self, meta, items):
        return A.AlterModel(items[0], tuple(items[1:]), span=span(meta))

    def alter_dataset(self, meta, items):
        return A.AlterDataset(items[0], tuple(items[1:]), span=span(meta))

    def import_stmt(self, meta, items):
        action = items[-1] if isinstance(items[-1], tuple) and items[-1][0] == "on_conflict" else None
        rest = items[:-1] if action else items
        return A.Import(rest[0], rest[1], rest[2] if len(rest) > 2 else None,
                        action[1] if action else "error", span=span(meta))

    def conflict_clause(self, meta, items):
        return ("on_conflict", items[0])

    def conflict_replace(self, meta, items):
        return "replace"

    def conflict_skip(self, meta, items):
        return "skip"

    def conflict_error(self, meta, items):
        return "error"

    def help_word(self, meta, items):
        return str(items[0])

    def help_stmt(self, meta, items):
        return A.Help(tuple(items), span=span(meta))

    def set_stmt(self, meta, items):
        return A.SetOption(".".join(items[0].parts).lower(), items[-1], span=span(meta))

    def sql_query(self, meta, items):
        return self._parser._sql_query(items[0], self)

    def create_view(self, meta, items):
        return A.CreateView(items[0], items[1], span=span(meta))

    def drop_view(self, meta, items):
        return A.DropView(items[-1], len(items) == 2, span=span(meta))

    def copy_stmt(self, meta, items):
        opts = items[2][1] if len(items) > 2 else ()
        return A.Copy(items[0], items[1], opts, span=span(meta))


    # ---- method statements -------------------------------------------------------------
    def images_kw(self, meta, items):
        return ("images", True)

    def evaluator_clause(self, meta, items):
        return ("evaluator", items[0])

    def create_task(self, meta, items):
        kw = dict(x for x in items[1:] if isinstance(x, tuple))
        path = [x for x in items[1:] if not isinstance(x, tuple)][0]
        return A.CreateTask(items[0], path, kw.get("images", False), kw.get("evaluator"),
                            kw.get("limit"), span=span(meta), seed=kw.get("seed"))

    def using_clause(self, meta, items):
        return ("using", items[0])

    def seed_clause(self, meta, items):
        return ("seed", items[0])

    def options_clause(self, meta, items):
        return ("options", tuple(items))

    def top_clause(self, meta, items):
        return ("top", items[0])

    def batch_clause(self, meta, items):
        return ("batch", items[0])

    def device_clause(self, meta, items):
        return ("device", items[0])
















    # ---- MLL ---------------------------------------------------------------------------














def number_value(tok: Token) -> int | float:
    """The value of a NUMBER token; a float that overflows to infinity is a ParseError."""
    s = str(tok)
    if not any(c in s for c in ".eE"):
        return int(s)
    val = float(s)
    if val in (float("inf"), float("-inf")):
        raise ParseError(f"number {s[:40]} at line {tok.line}, column {tok.column} is out of range "
                         f"(the largest is about 1.8e308)", line=tok.line, column=tok.column)
    return val


def check_depth(text: str, tree: Tree) -> None:
    """Refuse a parse tree deeper than :data:`MAX_DEPTH` (walked without recursion)."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            meta = getattr(node, "meta", None)
            line = getattr(meta, "line", None) or 1
            column = getattr(meta, "column", None) or 1
            raise ParseError(
                f"syntax error at line {line}, column {column}: expression nested too deeply (at most "
                f"{MAX_DEPTH} parse levels, about {MAX_DEPTH // 2 - 5} nested parentheses or "
                f"{MAX_DEPTH - 10} chained NOTs)", line=line, column=column,
                context=caret_context(text, line, column))
        stack.extend((c, depth + 1) for c in node.children if isinstance(c, Tree))


def clauses(items) -> dict:
    """Collect ('key', value) clause pairs; a clause given twice is an error."""
    out: dict = {}
    for key, value in items:
        if key in out:
            raise ParseError(f"clause {key.upper()} given twice")
        out[key] = value
    return out


# ---- the parser ----------------------------------------------------------------------

class Parser:
    """A parser for the core grammar extended by ``fragments`` (grammar texts whose rules
    ``%extend statement``), building the AST with the core Transformer plus ``mixins``
    (classes whose methods are the callbacks of the fragments' rules)."""

    def __init__(self, fragments: tuple[str, ...] = (), mixins: tuple[type, ...] = ()):
        self.grammar = "\n".join((core_grammar(),) + tuple(fragments))
        self._lark = Lark(self.grammar, parser="lalr", propagate_positions=True,
                          maybe_placeholders=False, cache=True, start="start")
        callbacks: dict = {}
        for mixin in mixins:
            for key, fn in vars(mixin).items():
                if key.startswith("_") or not callable(fn):
                    continue
                if key in callbacks or hasattr(_ToAst, key):
                    raise ZooQLError(f"grammar rule callback {key!r} of {mixin.__module__} is defined twice")
                callbacks[key] = v_args(meta=True)(fn)
        self._transformer = type("AstBuilder", (_ToAst,), callbacks)
        # the statements of a text, remembered (the AST is immutable; errors are not kept)
        self._parsed = functools.lru_cache(maxsize=256)(self._parse)

    @property
    def lark(self) -> Lark:
        return self._lark

    def parse(self, text: str) -> list[A.Statement]:
        """Parse one or more ``;``-separated statements (a text parsed before is not parsed
        again: its statements are immutable)."""
        return list(self._parsed(text))

    def _parse(self, text: str) -> tuple[A.Statement, ...]:
        try:
            tree = self._lark.parse(text)
        except UnexpectedInput as exc:
            raise _format_error(text, exc, self.first_keywords()) from None
        check_depth(text, tree)
        try:
            return tuple(self._transform(tree, text)[1])
        except VisitError as exc:
            if isinstance(exc.orig_exc, ZooQLError):
                raise exc.orig_exc from None
            raise

    def _transform(self, tree, text: str, positional: int = 0):
        t = self._transformer()
        t._parser, t._text, t._positional = self, text, positional
        return t, t.transform(tree)

    def _sql_query(self, tok: Token, outer) -> A.SqlQuery:
        """A SELECT query's raw span: its method statements in parentheses are parsed here
        (errors point into the whole text), its parameters become DuckDB ``$names``."""
        raw, base, text = str(tok), tok.start_pos, outer._text
        sql, subs, params, last = [], [], [], 0
        for item in sqlspan.scan(raw, self.statement_starters()):
            start, end = item[1], item[2]
            sql.append(raw[last:start])
            last = end
            if item[0] == "sub":
                name = f"__sub{len(subs) + 1}"
                sub_text = sqlspan.blank(text[:base + start + 1]) + raw[start + 1:end - 1]
                try:
                    tree = self._lark.parse(sub_text)
                except UnexpectedInput as exc:
                    err = _format_error(sub_text, exc)
                    err.context = caret_context(text, err.line, err.column)
                    raise err from None
                sub_t, stmts = self._transform(tree, text, outer._positional)
                outer._positional = sub_t._positional
                if len(stmts) != 1:
                    raise ParseError("a statement in parentheses must be exactly one statement")
                subs.append(A.SubStatement(name, stmts[0], span=(base + start, base + end, 0, 0)))
                rel = f"(SELECT * FROM {name})"
                sql.append(rel + sqlspan.blank(raw[start + len(rel):end]))
            else:
                key = item[3]
                if key is None:
                    key, outer._positional = outer._positional, outer._positional + 1
                params.append((f"p_{key}", A.Param(key, span=(base + start, base + end, 0, 0))))
                sql.append(f"$p_{key}")
        sql.append(raw[last:])
        return A.SqlQuery("".join(sql).rstrip(), tuple(subs), tuple(params), span=_tokspan(tok), text=raw.rstrip())

    @functools.cached_property
    def _starters(self) -> frozenset[str]:
        ip = self._lark.parse_interactive("")
        out = set()
        for name in ip.accepts():
            term = next((t for t in self._lark.terminals if t.name == name), None)
            if term is not None and term.pattern.type == "str":
                out.add(term.pattern.value.upper())
        return frozenset(out)

    def statement_starters(self) -> frozenset[str]:
        """The keywords that start a statement (a parenthesis inside a query that opens
        one of them holds a ZooQL statement)."""
        return self._starters

    def parse_one(self, text: str) -> A.Statement:
        stmts = self.parse(text)
        if len(stmts) != 1:
            raise ParseError(f"expected exactly one statement, got {len(stmts)}")
        return stmts[0]

    def first_keywords(self) -> list[str]:
        """The keywords a statement starts with (from the grammar), for the bad-first-token error."""
        if not hasattr(self, "_first"):
            from zooql.lang.grammar_help import first_keywords

            self._first = first_keywords(self.grammar)
        return self._first

    def keywords(self) -> frozenset[str]:
        """Every keyword of the grammar (upper case), for highlighting and completion."""
        return frozenset(m.upper() for m in re.findall(r'"([A-Za-z_]+)"i', self.grammar)) | sqlspan.SQL_KEYWORDS


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


def caret_context(text: str, line: int, column: int) -> str:
    """The line of ``text`` at ``line`` with a caret under ``column`` (error messages).
    Characters a terminal cannot print (lone surrogates, NUL) are shown escaped."""
    lines = text.splitlines() or [""]
    src = lines[line - 1] if 0 < line <= len(lines) else ""
    shown, pad = _printable(src), len(_printable(src[:column - 1]))
    return f"  {line} | {shown}\n  {' ' * len(str(line))} | {' ' * pad}^"


def _printable(s: str) -> str:
    s = s.replace("\x00", "\\x00")
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


def _statement_start(exc, expected: list[str], first: list[str]) -> str | None:
    """At the start of a statement, what to say instead of a long list of expected tokens."""
    if not first or not set(first) <= set(expected) or isinstance(exc, UnexpectedEOF):
        return None
    import difflib

    tok = str(getattr(getattr(exc, "token", None), "value", "") or "")
    near = difflib.get_close_matches(tok.upper(), first, n=1, cutoff=0.6) if tok else []
    hint = f" (did you mean {near[0]}?)" if near else ""
    return f"{hint}; a statement starts with one of {', '.join(first)} (HELP lists the statements)"


def _format_error(text: str, exc: UnexpectedInput, first: list[str] = ()) -> ParseError:
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
        history = getattr(exc, "token_history", None) or []
        if exc.token.type == "LPAR" and history and getattr(history[-1], "type", None) == "SQL_QUERY":
            what = "unbalanced '(' in the query (or parentheses nested deeper than 10)"
            expected = []
    elif isinstance(exc, UnexpectedCharacters):
        ch = text[exc.pos_in_stream]
        what = {"'": "unterminated 'string'", '"': 'unterminated "quoted name"'}.get(
            ch, f"unexpected character {ch!r}")
        expected = _pretty_expected(exc.allowed or [])
    else:  # pragma: no cover - other lark errors
        what, expected = "syntax error", []
    msg = f"syntax error at line {line}, column {column}: {what}"
    start = _statement_start(exc, expected, list(first))
    if start:
        msg += start
    elif expected and len(expected) <= _MAX_EXPECTED:
        msg += f" (expected {', '.join(expected)})"
    return ParseError(msg, line=line, column=column, context=caret_context(text, line, column),
                      expected=expected)
