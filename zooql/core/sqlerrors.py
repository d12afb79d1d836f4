"""Errors of SELECT queries in ZooQL's words, pointing into the query as the user wrote it.

A query reaches sqlglot and DuckDB as ``SqlQuery.sql``: the text with each method
sub-statement replaced by ``(SELECT * FROM __subN)`` and each parameter by ``$p_key``.
:class:`Source` maps a position in that text back to the text as written, so that the line,
column and caret of an error are the user's, never those of the rewritten SQL.
:func:`check_duckdb_syntax` runs DuckDB's own parser on the SQL it will run, at bind time,
and turns its ``Parser Error`` into a ParseError; :func:`duckdb_error` does the same for
the binder and catalog errors DuckDB raises while running.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from zooql.errors import BindError, ParseError
from zooql.lang import ast as A


@dataclass(frozen=True)
class Source:
    """A query in its statement: ``sql`` as parsed, ``text`` as written, starting at
    ``line``/``column`` of the statement text; ``edits``: ((start, end, length), ...), each
    span of ``text`` that is ``length`` characters in ``sql``."""

    sql: str
    text: str
    line: int = 1
    column: int = 1
    edits: tuple = ()

    @classmethod
    def of(cls, stmt: A.SqlQuery) -> "Source":
        line, column = (stmt.span[2], stmt.span[3]) if stmt.span else (1, 1)
        if not stmt.text or not stmt.span:
            return cls(stmt.sql, stmt.sql, line, column)
        base, edits = stmt.span[0], []
        for sub in stmt.subs:
            start, end = sub.span[0] - base, sub.span[1] - base
            edits.append((start, end, max(len(f"(SELECT * FROM {sub.name})"), end - start)))
        for name, value in stmt.params:
            span = getattr(value, "span", None)
            if span:
                edits.append((span[0] - base, span[1] - base, len(name) + 1))
        return cls(stmt.sql, stmt.text, line, column, tuple(sorted(edits)))

    def text_offset(self, offset: int) -> int:
        """The offset in ``text`` of character ``offset`` of ``sql`` (a character inside a
        replacement: where the replaced part starts)."""
        shift = 0                      # sql position - text position, before the next edit
        for start, end, length in self.edits:
            if offset < start + shift:
                break
            if offset < start + shift + length:
                return start
            shift += length - (end - start)
        return max(0, min(offset - shift, len(self.text)))

    def position_at(self, rel_line: int, rel_col: int) -> tuple[int, int]:
        """:meth:`position` of line ``rel_line``, column ``rel_col`` (1-based) of ``sql``."""
        lines = self.sql.split("\n")
        rel_line = max(1, min(rel_line, len(lines)))
        offset = sum(len(x) + 1 for x in lines[:rel_line - 1]) + max(0, min(rel_col - 1, len(lines[rel_line - 1])))
        return self.position(offset)

    def position(self, offset: int) -> tuple[int, int]:
        """Line and column in the statement text of character ``offset`` of ``sql`` (the
        error's caret context is drawn from the statement text by ``Hub.execute``)."""
        off = self.text_offset(offset)
        before = self.text[:off]
        rel_line, rel_col = before.count("\n") + 1, off - (before.rfind("\n") + 1) + 1
        return self.line + rel_line - 1, rel_col + (self.column - 1 if rel_line == 1 else 0)

    def find(self, name: str) -> int | None:
        """The offset in ``sql`` of the first use of the name ``name`` (None: not found)."""
        m = re.search(r"(?<![\w'\"$])" + re.escape(name) + r"(?![\w'\"])", self.sql, flags=re.I)
        return m.start() if m else None


def positioned(msg: str, source: Source | None, name: str | None = None) -> BindError:
    """A BindError with the line, column and caret of ``name`` (by default the first
    'quoted' name or function() of the message) in the query as written."""
    if name is None:
        m = re.search(r"'([^']+)'|(\w+)\(\)", msg)
        name = (m.group(1) or m.group(2)) if m else None
    offset = source.find(name) if source is not None and name else None
    return positioned_at(msg, source, offset, name)


def positioned_at(msg: str, source: Source | None, offset: int | None, name: str | None) -> BindError:
    """A BindError with the line, column and caret of character ``offset`` of the query
    (found by ``name`` when the offset is not known)."""
    if offset is None and source is not None and name:
        offset = source.find(name)
    if offset is None or source is None:
        return BindError(msg)
    line, column = source.position(offset)
    return BindError(f"{msg} at line {line}, column {column}", line=line, column=column)


def duckdb_error(exc, source: Source | None) -> BindError | ParseError:
    """DuckDB's parser, binder or catalog error as a ParseError / BindError: "did you
    mean" from its candidates, and the line, column and caret in the query as written."""
    text = str(exc)
    if text.startswith("Parser Error"):
        return _parse_error(text, source, None)
    lines = text.splitlines()
    msg = re.sub(r"^(Binder|Catalog) Error: ", "", lines[0])
    for line in lines[1:]:
        if line.startswith("Candidate bindings:"):
            names = [x.strip().strip('"') for x in line.split(":", 1)[1].split(",") if x.strip()]
            msg += " (did you mean " + ", ".join(repr(n) for n in names[:3]) + "?)"
    found = re.findall(r'"([^"]+)"', lines[0])
    return positioned(msg, source, found[-1].split(".")[-1] if found else None)


def check_duckdb_syntax(sql: str, source: Source) -> None:
    """Raise a ParseError unless DuckDB's parser reads ``sql`` (the SQL that will run,
    regenerated from ``source.sql``); the error points into the query as written."""
    import duckdb

    try:
        duckdb.extract_statements(sql)
        return
    except duckdb.ParserException as exc:
        regenerated = str(exc)
    except duckdb.Error:
        return              # not a syntax error: DuckDB reports it when the query runs
    try:                    # the same error on the text as parsed has a position we can map
        duckdb.extract_statements(source.sql)
        own = None
    except duckdb.ParserException as exc:
        own = str(exc)
    except duckdb.Error:
        own = None
    raise _parse_error(own or regenerated, source, source.sql if own else None)


KNOWN = {
    "SELECT clause without selection list": "SELECT needs at least one column or expression "
                                            "(e.g. SELECT * or SELECT name)",
}


NO_COLUMNS = {"SELECT clause without selection list":
              re.compile(r"\bSELECT\b(?=\s*(?:\)|;|$|(?:FROM|WHERE|GROUP|ORDER|LIMIT|UNION)\b))", re.I)}


def _parse_error(text: str, source: Source | None, parsed: str | None) -> ParseError:
    """DuckDB's ``Parser Error: ...`` text as a ParseError at the position it names;
    ``parsed``: the SQL DuckDB read when that is ``source.sql`` (else only the token named
    is looked up in the query)."""
    lines = text.splitlines()
    first = re.sub(r"^Parser Error: ", "", lines[0]).strip()
    near = re.match(r'syntax error at or near "(.*)"$', first)
    if near:
        what = f"unexpected {near.group(1)!r}"
    elif first == "syntax error at end of input":
        what = "unexpected end of the query"
    else:
        what = KNOWN.get(first, first[:1].lower() + first[1:])
    offset = _offset(lines, parsed) if parsed is not None else None
    if offset is None and source is not None and near:
        offset = source.find(near.group(1))
    if offset is None and source is not None and first in NO_COLUMNS:    # the SELECT with nothing after it
        m = NO_COLUMNS[first].search(source.sql)
        offset = m.start() if m else None
    if source is None:
        return ParseError(f"syntax error: {what}")
    if near and offset is not None:     # the token as written (a parameter is '?' or ':name', not '$p_1')
        m = re.compile(r"[\w$]+|:\w+|\S").match(source.text, source.text_offset(offset))
        if m:
            what = f"unexpected {m.group(0)!r}"
    line, column = source.position(offset or 0)     # no position: the query's start
    return ParseError(f"syntax error at line {line}, column {column}: {what}", line=line, column=column)


def _offset(lines: list[str], sql: str) -> int | None:
    """The offset in ``sql`` that DuckDB's ``LINE n: ...`` / caret lines point at."""
    for i, line in enumerate(lines[:-1]):
        m = re.match(r"LINE (\d+): (.*)$", line)
        if not m or "^" not in lines[i + 1]:
            continue
        n, shown = int(m.group(1)), m.group(2)
        col = lines[i + 1].index("^") - (len(line) - len(shown))
        src_lines = sql.split("\n")
        if n > len(src_lines):
            return None
        src = src_lines[n - 1]
        if shown.startswith("..."):      # DuckDB shows a window of a long line
            core = shown[3:].removesuffix("...")
            start = src.find(core)
            if start < 0:
                return None
            col = start + col - 3
        return sum(len(x) + 1 for x in src_lines[:n - 1]) + max(0, min(col, len(src)))
    return None
