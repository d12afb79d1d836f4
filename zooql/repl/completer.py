"""Tab completion for the REPL, following the grammar.

The text before the cursor (without the word being typed) goes through Lark's interactive
LALR parser (``zooql.api.expected``), which says what may come next: the keywords the
grammar accepts there, and whether a name or a string may follow. Names are of the kind
the preceding keyword asks for (models after MODEL or LIKE, tasks after TASK or SOURCES,
probe sets after WITH or PROBES, model columns in WHERE, ...; from ``hub.completions()``);
inside ``model.logit['...`` the model's logit labels are offered, in other strings file
paths. Text the grammar already rejects falls back to keyword and name prefixes. Nothing
pops up by itself on an empty (continuation) line; Tab still completes there."""
from __future__ import annotations

import re

import threading
from typing import Iterable

from prompt_toolkit.completion import Completer, Completion, PathCompleter
from prompt_toolkit.document import Document

from zooql.repl import lexer as lx

CATEGORIES = ("models", "datasets", "trees", "probesets")
#: How many model names one completion offers (a prefix query with this LIMIT).
MODEL_LIMIT = 50

# Which kind of name follows a keyword where the grammar accepts a name.
_CONTEXT = {
    "MODEL": "models",
    "MODELS": "models",
    "LIKE": "models",
    "DATASET": "datasets",
    "DATASETS": "datasets",
    "ON": "tasks",
    "TREE": "trees",
    "TREES": "trees",
    "PROBESET": "probesets",
    "PROBESETS": "probesets",
    "PROBES": "probesets",
    "WITH": "probesets",
    "TASK": "tasks",
    "SOURCES": "tasks",
    "GRAPH": "graphs",
    "WHERE": "columns",
    "AND": "columns",
    "OR": "columns",
    "NOT": "columns",
    "BY": "columns",
    "AS": None,       # a new name: nothing to offer
    "SET": None,
    "FROM": "relations",
    "JOIN": "relations",
    "SELECT": "columns",
}
_SKIP = {",", "(", "IF", "EXISTS"}

_META = {"columns": "column", "labels": "logit label", "models": "model", "datasets": "dataset", "trees": "tree", "probesets": "probe set", "tasks": "task", "relations": "relation",
         "graphs": "semantic graph"}


def quote_name(name: str) -> str:
    """A name as it must be written in a query: bare when it is a valid identifier
    that is not a keyword, "double quoted" otherwise."""
    if lx.IDENT_RE.match(name) and name.upper() not in lx.keyword_set():
        return name
    return '"' + name.replace('"', '""') + '"'


def _in_sql_query(text: str) -> bool:
    """Whether the statement being typed is a SELECT / WITH query, which the grammar reads as
    one raw token (so its expectations say nothing about relations and columns)."""
    cur = text.rsplit(";", 1)[-1].lstrip().upper()
    return cur.startswith(("SELECT", "WITH")) and not re.match(r"SELECT\s+MODELS\s+FOR\b", cur)


def _expected(text: str) -> dict | None:
    try:
        from zooql.api import expected

        return expected(text)
    except Exception:  # completion never fails the prompt
        return None


def _bare_ok(before: str, name: str) -> bool:
    """Whether `name` written bare after `before` is read as a name (not a keyword)."""
    exp = _expected(before + name + " ")
    return exp is not None and exp["previous"][-1:] == [name]


def _wanted(previous: list[str]) -> str | None:
    """The kind of name asked for after these tokens: a category, '' for none (a new
    name), None when any name fits."""
    for tok in reversed(previous):
        up = tok.upper()
        if up in _SKIP:
            continue
        if up in _CONTEXT:
            return _CONTEXT[up] if _CONTEXT[up] is not None else ""
        if tok in (".", "=", "<", ">", "<=", ">=", "!=", "<>"):
            return ""
        return None
    return None


def _prev_keyword(toks) -> str | None:
    for t in reversed(toks):
        if t.kind in (lx.WS, lx.COMMENT):
            continue
        return _CONTEXT.get(t.text.upper()) if t.kind == lx.WORD else None
    return None


class ZooQLCompleter(Completer):
    def __init__(self, hub=None, *, dot_commands: Iterable[str] = ()):
        self._lock = threading.Lock()
        self.names: dict[str, list[str]] = {c: [] for c in CATEGORIES}
        self.dot_commands = sorted(dot_commands)
        self._paths = PathCompleter(expanduser=True)
        self._hub = hub
        self._prefix_models = False
        self._last_models = None     # (prefix, names, complete): the last prefix query
        if hub is not None:
            self.refresh(hub)

    # -- names ------------------------------------------------------------------
    def refresh(self, hub) -> None:
        """Reload names from the hub; a hub that fails to answer leaves them as they were."""
        self._hub = hub
        try:
            try:
                got = hub.completions(models=False) or {}
            except TypeError:   # a hub object without the argument: every name at once
                got = hub.completions() or {}
        except Exception:
            return
        # model names are asked for per prefix (LIMITed query) when the hub can do it
        self._prefix_models = "models" not in got and hasattr(hub, "complete_names")
        self._last_models = None
        names = {c: sorted({str(n) for n in (got.get(c) or [])}) for c in CATEGORIES}
        for extra, vals in got.items():  # categories the engine adds later
            if extra not in names:
                names[extra] = sorted({str(n) for n in (vals or [])})
        with self._lock:
            self.names = names

    def set_names(self, names: dict[str, list[str]]) -> None:
        with self._lock:
            self.names = {k: sorted(set(v)) for k, v in names.items()}
            if "models" in names:
                self._prefix_models = False

    # -- completion -------------------------------------------------------------
    def get_completions(self, document: Document, complete_event):
        text = document.text_before_cursor
        stripped = text.lstrip()

        # Dot-commands: only at the start of the input.
        if stripped.startswith(".") and not any(ch.isspace() for ch in stripped):
            for cmd in self.dot_commands:
                if cmd.startswith(stripped):
                    yield Completion(cmd, start_position=-len(stripped), display_meta="command")
            return
        if stripped.startswith("."):
            yield from self._dot_args(stripped, document, complete_event)
            return

        toks = lx.tokenize(text)
        last = toks[-1] if toks else None

        if last is not None and last.kind == lx.COMMENT:
            return
        if last is not None and last.kind == lx.STRING and last.unterminated:
            yield from self._string_completions(text[:last.start], last.text[1:], complete_event)
            return

        # The word being typed.
        if last is not None and last.kind == lx.WORD and last.end == len(text):
            word = last.text
        elif last is not None and last.kind == lx.QUOTED_IDENT and last.unterminated:
            word = last.text  # includes the opening quote
        else:
            word = ""
        if not word and not complete_event.completion_requested and not text.rsplit("\n", 1)[-1].strip():
            return  # an empty (continuation) line: no pop-up while typing
        before = text[:len(text) - len(word)]
        exp = None if _in_sql_query(before) else _expected(before)
        if exp is None:  # not valid so far, or SQL (one token to the grammar): plain prefixes
            yield from self._word_completions(word, _prev_keyword(toks[:-1] if word else toks), None)
            return
        wanted = _wanted(exp["previous"]) if exp["names"] else None
        yield from self._word_completions(word, wanted, exp, before)

    def _word_completions(self, word: str, wanted: str | None, exp: dict | None, before: str = ""):
        """Names (of kind `wanted` first) and keywords starting with `word`. With `exp`
        (the grammar's expectations) only what the grammar accepts is offered."""
        quoted = word.startswith('"')
        prefix = word[1:] if quoted else word
        low = prefix.lower()
        with self._lock:
            names = dict(self.names)
        if exp is None:
            order = ([wanted] if wanted in names else []) + [c for c in names if c not in (wanted, "columns")]
        elif not exp["names"] or wanted == "":
            order = []
        else:
            order = [wanted] if wanted else [c for c in names if c != "columns"]
        seen: set[str] = set()
        name_hits = []
        for cat in order:
            for n in (self._model_names(prefix) if cat == "models" and self._prefix_models else names.get(cat, [])):
                if n.lower().startswith(low) and n not in seen:
                    seen.add(n)
                    name_hits.append((n, cat))

        def name_completions():
            for n, cat in name_hits:
                text = ('"' + n.replace('"', '""') + '"') if quoted else quote_name(n)
                if exp is not None and not quoted and text != n and lx.IDENT_RE.match(n) and _bare_ok(before, n):
                    text = n  # a keyword-like name the grammar takes bare here (WHERE tree = ...)
                elif cat in ("relations", "columns") and not quoted and lx.IDENT_RE.match(n):
                    text = n   # SQL names: ZooQL's statement keywords need no quotes there
                yield Completion(text, start_position=-len(word), display=n,
                                 display_meta=_META.get(cat, cat))

        def keyword_completions():
            if quoted or (exp is None and not prefix):
                return
            up = prefix.upper()
            for kw in (exp["keywords"] if exp is not None else lx.keywords()):
                if kw.startswith(up) and kw != up:
                    yield Completion(kw, start_position=-len(word), display_meta="keyword")

        if wanted:
            yield from name_completions()
            yield from keyword_completions()
        else:
            yield from keyword_completions()
            yield from name_completions()

    def _model_names(self, prefix: str) -> list[str]:
        """Model names starting with ``prefix``: one prefix query with a LIMIT, refined
        locally while the typed word extends a prefix whose answer was complete."""
        low = prefix.lower()
        last = self._last_models
        if last is not None and low.startswith(last[0]) and last[2]:
            return [n for n in last[1] if n.lower().startswith(low)]
        try:
            got = list(self._hub.complete_names("models", prefix, MODEL_LIMIT))
        except Exception:  # completion never fails the prompt
            return []
        self._last_models = (low, got, len(got) < MODEL_LIMIT)
        return got

    def _string_completions(self, before: str, partial: str, complete_event):
        """Inside a '...' literal: logit labels after ``model.logit[``, else file paths."""
        exp = _expected(before)
        prev = exp["previous"] if exp is not None else []
        if len(prev) >= 4 and prev[-1] == "[" and prev[-2].upper() == "LOGIT" and prev[-3] == ".":
            model = prev[-4]
            if model.startswith('"'):
                model = model[1:-1].replace('""', '"')
            typed = partial.replace("''", "'").lower()
            for label in self._labels(model):
                if label.lower().startswith(typed):
                    yield Completion(label.replace("'", "''") + "']", start_position=-len(partial),
                                     display=label, display_meta="logit label")
            return
        if exp is not None and not exp["strings"]:
            return
        yield from self._path_completions(partial, complete_event)

    def _labels(self, model: str) -> list[str]:
        hub = self._hub
        try:
            return list(hub.logit_labels(model)) if hub is not None else []
        except Exception:
            return []

    def _path_completions(self, partial: str, complete_event):
        partial = partial.replace("''", "'")
        doc = Document(partial, len(partial))
        for c in self._paths.get_completions(doc, complete_event):
            yield Completion(c.text.replace("'", "''"), start_position=c.start_position,
                             display=c.display, display_meta=c.display_meta)

    def _dot_args(self, stripped: str, document: Document, complete_event):
        cmd, _, arg = stripped.partition(" ")
        arg = arg.lstrip()
        if cmd == ".mode":
            from zooql.repl.formatting import MODES

            for m in MODES:
                if m.startswith(arg):
                    yield Completion(m, start_position=-len(arg))
        elif cmd in (".timer", ".pager", ".progress"):
            for m in ("on", "off") + (("verbose",) if cmd == ".progress" else ()):
                if m.startswith(arg):
                    yield Completion(m, start_position=-len(arg))
        elif cmd in (".open", ".read"):
            doc = Document(arg, len(arg))
            yield from self._paths.get_completions(doc, complete_event)
