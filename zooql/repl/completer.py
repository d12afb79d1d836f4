"""Tab completion for the REPL: keywords (upper case), names of models, datasets,
trees and probe sets from ``hub.completions()``, dot-commands, and file paths inside
string literals."""
from __future__ import annotations

import threading
from typing import Iterable

from prompt_toolkit.completion import Completer, Completion, PathCompleter
from prompt_toolkit.document import Document

from zooql.repl import lexer as lx

CATEGORIES = ("models", "datasets", "trees", "probesets")

# Which kind of name usually follows a keyword; the names of that kind are offered first.
_CONTEXT = {
    "MODEL": "models",
    "MODELS": "models",
    "DATASET": "datasets",
    "DATASETS": "datasets",
    "ON": "datasets",
    "TREE": "trees",
    "TREES": "trees",
    "PROBESET": "probesets",
    "PROBESETS": "probesets",
    "PROBES": "probesets",
    "TASK": "tasks",
    "SOURCES": "tasks",
    "GRAPH": "graphs",
    "FROM": "relations",
    "JOIN": "relations",
    "SELECT": "columns",
    "BY": "columns",
}

_META = {"models": "model", "datasets": "dataset", "trees": "tree", "probesets": "probe set", "tasks": "task",
         "relations": "relation", "columns": "column",
         "graphs": "semantic graph"}


def quote_name(name: str) -> str:
    """A name as it must be written in a query: bare when it is a valid identifier
    that is not a keyword, "double quoted" otherwise."""
    if lx.IDENT_RE.match(name) and name.upper() not in lx.keyword_set():
        return name
    return '"' + name.replace('"', '""') + '"'


class ZooQLCompleter(Completer):
    def __init__(self, hub=None, *, dot_commands: Iterable[str] = ()):
        self._lock = threading.Lock()
        self.names: dict[str, list[str]] = {c: [] for c in CATEGORIES}
        self.dot_commands = sorted(dot_commands)
        self._paths = PathCompleter(expanduser=True)
        if hub is not None:
            self.refresh(hub)

    # -- names ------------------------------------------------------------------
    def refresh(self, hub) -> None:
        """Reload names from the hub; a hub that fails to answer leaves them as they were."""
        try:
            got = hub.completions() or {}
        except Exception:
            return
        names = {c: sorted({str(n) for n in (got.get(c) or [])}) for c in CATEGORIES}
        for extra, vals in got.items():  # categories the engine adds later
            if extra not in names:
                names[extra] = sorted({str(n) for n in (vals or [])})
        with self._lock:
            self.names = names

    def set_names(self, names: dict[str, list[str]]) -> None:
        with self._lock:
            self.names = {k: sorted(set(v)) for k, v in names.items()}

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
            # A path inside a '...' literal.
            yield from self._path_completions(last.text[1:], complete_event)
            return

        # The word being typed.
        if last is not None and last.kind == lx.WORD and last.end == len(text):
            word = last.text
            prev_toks = toks[:-1]
        elif last is not None and last.kind == lx.QUOTED_IDENT and last.unterminated:
            word = last.text  # includes the opening quote
            prev_toks = toks[:-1]
        else:
            word = ""
            prev_toks = toks

        prev_kw = None
        for t in reversed(prev_toks):
            if t.kind == lx.WS or t.kind == lx.COMMENT:
                continue
            if t.kind == lx.WORD:
                prev_kw = t.text.upper()
            break

        yield from self._word_completions(word, prev_kw)

    def _word_completions(self, word: str, prev_kw: str | None):
        quoted = word.startswith('"')
        prefix = word[1:] if quoted else word
        low = prefix.lower()
        with self._lock:
            names = dict(self.names)

        wanted = _CONTEXT.get(prev_kw or "")
        order = ([wanted] if wanted in names else []) + [c for c in names if c != wanted]
        seen: set[str] = set()
        name_hits = []
        for cat in order:
            for n in names.get(cat, []):
                if n.lower().startswith(low) and n not in seen:
                    seen.add(n)
                    name_hits.append((n, cat))

        def name_completions():
            for n, cat in name_hits:
                text = ('"' + n.replace('"', '""') + '"') if quoted else quote_name(n)
                if cat in ("relations", "columns") and not quoted and lx.IDENT_RE.match(n):
                    text = n   # SQL names: ZooQL's statement keywords need no quotes there
                yield Completion(text, start_position=-len(word), display=n,
                                 display_meta=_META.get(cat, cat))

        def keyword_completions():
            if quoted or not prefix:
                return
            up = prefix.upper()
            for kw in lx.keywords():
                if kw.startswith(up) and kw != up:
                    yield Completion(kw, start_position=-len(word), display_meta="keyword")

        if wanted:
            yield from name_completions()
            yield from keyword_completions()
        else:
            yield from keyword_completions()
            yield from name_completions()

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
        elif cmd == ".timer":
            for m in ("on", "off"):
                if m.startswith(arg):
                    yield Completion(m, start_position=-len(arg))
        elif cmd in (".open", ".read"):
            doc = Document(arg, len(arg))
            yield from self._paths.get_completions(doc, complete_event)
