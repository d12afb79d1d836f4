"""Tokenizer for ZooQL text, shared by the REPL's highlighter, its statement splitter
and its completer.

It mirrors the lexical rules of ``zooql/lang/grammar.lark`` (bare identifiers with
inner hyphens, ``"double quoted"`` identifiers, ``'single quoted'`` strings with ``''``
escapes, ``--`` line comments, ``?`` and ``:name`` parameters) but never fails: text
the grammar would reject still tokenizes (as ``error`` tokens), so highlighting works
while the user types.

The highlighter is a plain prompt_toolkit :class:`~prompt_toolkit.lexers.Lexer`, so
pygments is not needed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

# Token kinds.
WS = "ws"
COMMENT = "comment"
STRING = "string"
QUOTED_IDENT = "quoted_ident"
NUMBER = "number"
WORD = "word"          # bare identifier or keyword
PARAM = "param"
OPERATOR = "operator"
PUNCT = "punct"
SEMI = "semi"
ERROR = "error"

IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*\Z")

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*)
  | (?P<string>'(?:[^']|'')*'?)
  | (?P<quoted_ident>"(?:[^"]|"")*"?)
  | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*)
  | (?P<param>\?|:[A-Za-z_][A-Za-z0-9_]*)
  | (?P<operator><>|!=|<=|>=|[=<>+\-*/%])
  | (?P<semi>;)
  | (?P<punct>[(),.])
  | (?P<error>.)
    """,
    re.VERBOSE | re.DOTALL,
)

def keywords() -> list[str]:
    """The language's keywords (upper case): the core grammar's and every method's."""
    return list(_keywords())


@lru_cache(maxsize=1)
def keyword_set() -> frozenset[str]:
    return frozenset(_keywords())


@lru_cache(maxsize=1)
def _keywords() -> tuple[str, ...]:
    from zooql.api import keywords as language_keywords

    return tuple(language_keywords())


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    start: int

    @property
    def end(self) -> int:
        return self.start + len(self.text)

    @property
    def unterminated(self) -> bool:
        if self.kind == STRING:
            return len(self.text) < 2 or not _closed(self.text, "'")
        if self.kind == QUOTED_IDENT:
            return len(self.text) < 2 or not _closed(self.text, '"')
        return False

    @property
    def significant(self) -> bool:
        return self.kind not in (WS, COMMENT)


def _closed(text: str, quote: str) -> bool:
    # text starts with `quote`; doubled quotes inside are escapes.
    body = text[1:]
    if not body.endswith(quote):
        return False
    # Count the run of quotes at the end of body: an odd run closes the literal.
    run = len(body) - len(body.rstrip(quote))
    return run % 2 == 1


def tokenize(text: str) -> list[Token]:
    return list(iter_tokens(text))


def iter_tokens(text: str) -> Iterator[Token]:
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOKEN_RE.match(text, pos)
        assert m is not None  # the last alternative matches any character
        kind = m.lastgroup or ERROR
        yield Token(kind, m.group(), pos)
        pos = m.end()


# ---------------------------------------------------------------------------
# Statements
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Statement:
    text: str     # the statement, without its terminating ';'
    start: int    # offset of text in the whole input

    def padded(self, whole: str) -> str:
        """The statement preceded by whitespace standing for the text before it, so that
        line and column numbers in error messages match the whole input."""
        before = whole[: self.start]
        nl = before.count("\n")
        col = self.start - (before.rfind("\n") + 1)
        return "\n" * nl + " " * col + self.text


def split_statements(text: str) -> list[Statement]:
    """Split on ';' outside strings, quoted names and comments. Only statements with
    something besides whitespace and comments are returned; a last statement with no
    ';' is included."""
    out: list[Statement] = []
    significant = False
    first_sig = None
    for tok in iter_tokens(text):
        if tok.kind == SEMI:
            if significant:
                out.append(Statement(text[first_sig:tok.start].rstrip(), first_sig))
            significant = False
            first_sig = None
        elif tok.significant:
            if not significant:
                first_sig = tok.start
            significant = True
    if significant:
        out.append(Statement(text[first_sig:].rstrip(), first_sig))
    return out


def split_script(text: str) -> list[tuple[str, Statement]]:
    """A script's items in order: ``("sql", statement)`` and ``("dot", line)`` for lines
    starting with '.' between statements (dot-commands, as in the REPL). Offsets are those
    of the whole text, so ``padded(text)`` keeps line numbers."""
    out: list[tuple[str, Statement]] = []
    region = 0
    pos = 0
    for line in text.splitlines(keepends=True):
        body = line.strip()
        if body.startswith(".") and statement_complete_or_empty(text[region:pos]):
            out += [("sql", Statement(st.text, st.start + region)) for st in split_statements(text[region:pos])]
            out.append(("dot", Statement(body, pos + line.index(body))))
            region = pos + len(line)
        pos += len(line)
    out += [("sql", Statement(st.text, st.start + region)) for st in split_statements(text[region:])]
    return out


def statement_complete_or_empty(text: str) -> bool:
    return not split_statements(text) or statement_complete(text)


def statement_complete(text: str) -> bool:
    """True when `text` ends a statement with ';' outside strings and comments."""
    last = None
    for tok in iter_tokens(text):
        if tok.unterminated:
            return False
        if tok.significant:
            last = tok
    return last is not None and last.kind == SEMI


def input_complete(text: str) -> bool:
    """Whether the REPL should run what is in the buffer when Enter is pressed."""
    stripped = text.strip()
    if not stripped:
        return True
    if stripped.startswith("."):
        return True  # dot-commands are one line
    if stripped.lower() in ("exit", "quit", "help", r"\q"):
        return True
    return statement_complete(text)


# ---------------------------------------------------------------------------
# Highlighting
# ---------------------------------------------------------------------------

STYLE_CLASSES = {
    COMMENT: "class:comment",
    STRING: "class:string",
    QUOTED_IDENT: "class:name",
    NUMBER: "class:number",
    PARAM: "class:param",
    OPERATOR: "class:operator",
    PUNCT: "class:punctuation",
    SEMI: "class:punctuation",
    ERROR: "class:error",
    WS: "",
}

STYLE_RULES = {
    "keyword": "bold ansiblue",
    "string": "ansigreen",
    "name": "ansicyan",
    "number": "ansimagenta",
    "param": "ansiyellow",
    "comment": "italic ansibrightblack",
    "operator": "",
    "punctuation": "",
    "error": "ansired",
    "dotcommand": "bold ansicyan",
    "prompt": "bold",
    "continuation": "ansibrightblack",
}


def style_fragments(text: str) -> list[list[tuple[str, str]]]:
    """Style fragments for each line of `text` (tokens spanning lines are split)."""
    kw = keyword_set()
    lines: list[list[tuple[str, str]]] = [[]]
    if text.lstrip().startswith("."):
        # Dot-command: highlight the command word, leave the arguments plain.
        lead = len(text) - len(text.lstrip())
        m = re.match(r"\.\S*", text[lead:])
        cmd_end = lead + (m.end() if m else 0)
        pieces = [("", text[:lead]), ("class:dotcommand", text[lead:cmd_end]), ("", text[cmd_end:])]
    else:
        pieces = []
        for tok in iter_tokens(text):
            if tok.kind == WORD:
                style = "class:keyword" if tok.text.upper() in kw else ""
            else:
                style = STYLE_CLASSES.get(tok.kind, "")
            pieces.append((style, tok.text))
    for style, chunk in pieces:
        parts = chunk.split("\n")
        for i, part in enumerate(parts):
            if i:
                lines.append([])
            if part:
                lines[-1].append((style, part))
    return lines


try:  # pragma: no branch
    from prompt_toolkit.lexers import Lexer as _PTLexer

    class ZooQLLexer(_PTLexer):
        """Syntax highlighting for the REPL's input buffer."""

        def lex_document(self, document):  # type: ignore[override]
            lines = style_fragments(document.text)

            def get_line(lineno: int):
                if 0 <= lineno < len(lines):
                    return lines[lineno]
                return []

            return get_line

except ImportError:  # pragma: no cover - prompt_toolkit is a dependency
    ZooQLLexer = None  # type: ignore[assignment,misc]


def make_style():
    from prompt_toolkit.styles import Style

    return Style.from_dict(STYLE_RULES)
