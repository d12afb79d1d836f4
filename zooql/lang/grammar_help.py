"""Read the statements out of the grammar text, for HELP and for the parse error of a bad
first token: each statement's head (its leading keywords), its rule rendered as syntax and
the clause rules it uses. Pure text processing of the Lark grammar (core + fragments), so
the help can never drift from what the parser accepts."""
from __future__ import annotations

import re
from dataclasses import dataclass

# rules not expanded in a statement's syntax: names, literals and expressions
BASIC = frozenset({"value", "name", "name_or_string", "string", "number", "dotted", "expr", "option",
                   "option_value", "order_item", "statement", "assignment", "given_item"})
_KW = re.compile(r'^"([A-Za-z_]+)"i$')


@dataclass(frozen=True)
class StatementHelp:
    head: str                    # e.g. "CREATE [OR REPLACE] SEMANTIC GRAPH"
    words: tuple[str, ...]       # the head's required keywords: ("CREATE", "SEMANTIC", "GRAPH")
    rule: str                    # the grammar rule (or alias) of the statement
    syntax: tuple[str, ...]      # the statement line, then "rule: ..." lines of its clauses


def rules(grammar: str) -> dict[str, list[str]]:
    """rule name -> its alternatives (text, aliases removed), ``%extend`` alternatives appended."""
    out: dict[str, list[str]] = {}
    current = None
    for raw in grammar.splitlines():
        line = re.sub(r"//.*$", "", raw).rstrip()
        if not line.strip():
            current = None
            continue
        m = re.match(r"^(%extend\s+)?\??([a-z_][a-z0-9_]*)\s*:(.*)$", line)
        if m:
            current = m.group(2)
            out.setdefault(current, [])
            body = m.group(3)
        elif current and line.lstrip().startswith("|"):
            body = line.lstrip()[1:]
        else:
            current = None
            continue
        out[current] += [a.strip() for a in _split_alts(body) if a.strip()]
    return out


def _split_alts(body: str) -> list[str]:
    parts, depth, cur, quote = [], 0, "", False
    for ch in body:
        if ch == '"' :
            quote = not quote
        if not quote and ch in "([":
            depth += 1
        elif not quote and ch in ")]":
            depth -= 1
        if ch == "|" and depth == 0 and not quote:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def _tokens(alt: str) -> tuple[list[str], str | None]:
    alias = None
    if "->" in alt:
        alt, alias = alt.split("->", 1)
        alias = alias.strip()
    return re.findall(r'"(?:[^"\\]|\\.)*"i?|/[^/]*/|[A-Za-z_][A-Za-z0-9_]*[?*+]?|[()\[\]|?*+]', alt), alias


def _render(alt: str, table: dict[str, list[str]]) -> str:
    toks, _ = _tokens(alt)
    out = []
    for t in toks:
        kw = _KW.match(t)
        if kw:
            out.append(kw.group(1).upper())
        elif t.startswith('"'):
            out.append("'" + t.strip('"i').strip('"') + "'")
        elif t.endswith("?") and t[:-1] in table:
            out.append(f"[{_render_inline(t[:-1], table)}]")
        elif t.endswith("*") and t[:-1] in table:
            out.append(f"[{t[:-1]} ...]")
        else:
            out.append(t)
    return " ".join(out).replace("( ", "(").replace(" )", ")").replace(") *", ")*").replace(") +", ")+").replace(") ?", ")?")


def _render_inline(name: str, table) -> str:
    """An optional pure-keyword rule (``or_replace``) shows as its keywords, others by name."""
    alts = table.get(name, [])
    if len(alts) == 1 and all(_KW.match(t) for t in _tokens(alts[0])[0]):
        return " ".join(_KW.match(t).group(1).upper() for t in _tokens(alts[0])[0])
    return name


def _head(alt: str, table) -> tuple[str, tuple[str, ...]]:
    toks, _ = _tokens(alt)
    shown, words = [], []
    for t in toks:
        kw = _KW.match(t)
        if kw:
            shown.append(kw.group(1).upper())
            words.append(kw.group(1).upper())
            continue
        inline = _render_inline(t[:-1], table) if t.endswith("?") and t[:-1] in table else None
        if inline and inline.isupper() and words:
            shown.append(f"[{inline}]")
            continue
        break
    return " ".join(shown), tuple(words)


def statements(grammar: str) -> list[StatementHelp]:
    """Every statement of the grammar, in the order the grammar lists them."""
    table = rules(grammar)
    out = []
    for ref in table.get("statement", []):
        rule = ref.strip()
        for alt in table.get(rule, []):
            _, alias = _tokens(alt)
            head, words = _head(alt, table)
            if not words:
                continue
            out.append(StatementHelp(head, words, alias or rule, (_render(alt, table),) + _clauses(alt, table)))
    return out


def _clauses(alt: str, table, depth: int = 3) -> tuple[str, ...]:
    seen, lines, frontier = set(), [], [alt]
    for _ in range(depth):
        nxt = []
        for a in frontier:
            for t in _tokens(a)[0]:
                name = t.rstrip("?*+")
                if name in table and name not in BASIC and name not in seen and not _KW.match(t):
                    if _render_inline(name, table) != name:   # pure keywords, shown inline
                        continue
                    seen.add(name)
                    alts = table[name]
                    lines.append(f"{name}: " + " | ".join(_render(x, table) for x in alts))
                    nxt += alts
        frontier = nxt
    return tuple(lines)


def first_keywords(grammar: str) -> list[str]:
    """The keywords a statement can start with."""
    return sorted({s.words[0] for s in statements(grammar)})


def matching(grammar: str, topic: tuple[str, ...]) -> list[StatementHelp]:
    """The statements whose head starts with ``topic`` (or that ``topic`` starts with)."""
    words = tuple(w.upper() for w in topic)
    out = []
    for s in statements(grammar):
        n = min(len(words), len(s.words))
        if n and words[:n] == s.words[:n]:
            out.append(s)
    return out
