"""The raw span of a SELECT query: finds, outside strings, quoted names and comments, the
method statements in parentheses (``(FIND MODELS ...) AS f``) and the parameters (``?``,
``:name``), so that the parser can parse the former as ZooQL statements and the binder
can hand the rest to DuckDB with bound parameters. Imports nothing but the standard
library.
"""
from __future__ import annotations

import re

# SQL keywords of SELECT queries, for highlighting and completion (the grammar's own
# keywords are listed by the parser).
SQL_KEYWORDS = frozenset("""SELECT WITH DISTINCT FROM JOIN LEFT RIGHT FULL INNER OUTER CROSS USING ON
WHERE GROUP BY HAVING ORDER ASC DESC LIMIT OFFSET UNION ALL INTERSECT EXCEPT CASE WHEN THEN ELSE
END CAST OVER PARTITION ROWS RANGE PRECEDING FOLLOWING UNBOUNDED CURRENT ROW FILTER RECURSIVE
VIEW COPY TO""".split())

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SQL_SELECT = re.compile(r"SELECT\b(?!\s+MODELS\s+FOR\b)", re.I)


def _skip(text: str, i: int) -> int:
    """The index after the string, quoted name or comment starting at ``i`` (else ``i``)."""
    ch = text[i]
    if ch in "'\"":
        j = i + 1
        while j < len(text):
            if text[j] == ch:
                if j + 1 < len(text) and text[j + 1] == ch:
                    j += 2
                    continue
                return j + 1
            j += 1
        return len(text)
    if text.startswith("--", i):
        j = text.find("\n", i)
        return len(text) if j < 0 else j
    if text.startswith("/*", i):
        j = text.find("*/", i + 2)
        return len(text) if j < 0 else j + 2
    return i


def closing_paren(text: str, i: int) -> int:
    """Index of the ``)`` matching the ``(`` at ``i`` (or -1)."""
    depth, j = 0, i
    while j < len(text):
        k = _skip(text, j)
        if k != j:
            j = k
            continue
        if text[j] == "(":
            depth += 1
        elif text[j] == ")":
            depth -= 1
            if depth == 0:
                return j
        j += 1
    return -1


def statement_at(text: str, i: int, starters: frozenset[str]) -> bool:
    """Whether the parenthesis at ``i`` opens a ZooQL statement (its first word starts a
    statement and it is not an SQL sub-select)."""
    j = i + 1
    while j < len(text) and text[j].isspace():
        j += 1
    m = _WORD.match(text, j)
    if not m:
        return False
    word = m.group().upper()
    if word in ("SELECT", "WITH"):
        return word == "SELECT" and not _SQL_SELECT.match(text, j)
    return word in starters


def scan(text: str, starters: frozenset[str]):
    """Split a query: yields ``("sub", start, end)`` for a statement in parentheses
    (``text[start:end]`` includes them) and ``("param", start, end, key)`` for ``?``
    (key None) and ``:name``, in order of appearance."""
    i = 0
    while i < len(text):
        k = _skip(text, i)
        if k != i:
            i = k
            continue
        ch = text[i]
        if ch == "(" and statement_at(text, i, starters):
            end = closing_paren(text, i)
            if end > 0:
                yield ("sub", i, end + 1)
                i = end + 1
                continue
        if ch == "?":
            yield ("param", i, i + 1, None)
        elif ch == ":" and not text.startswith("::", i) and (i == 0 or text[i - 1] != ":"):
            m = _WORD.match(text, i + 1)
            if m:
                yield ("param", i, m.end(), m.group())
                i = m.end()
                continue
        i += 1


def blank(text: str) -> str:
    """``text`` with every character but newlines turned into a space (keeps positions)."""
    return "".join(c if c == "\n" else " " for c in text)
