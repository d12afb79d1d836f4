"""A golden-file runner in the spirit of sqllogictest (DataFusion's ``.slt`` files).

A file is a sequence of records separated by blank lines; each runs on one fresh hub in a
scratch folder (relative paths in statements resolve against it)::

    # a comment
    file evals.csv                    -- write a file into the scratch folder
    model,dataset,metric,score
    a,gsm8k,acc,0.5

    statement ok
    ADD MODEL 'hf:org/a' AS a WITH (tree = 't')

    statement error BindError: unknown model 'x'
    DESCRIBE MODEL x

    query
    SHOW MODELS WHERE tree = 't'
    ----
    name | source | tree
    a | hf:org/a | t

    explain
    SHOW MODELS WHERE tree = 't'
    ----
    CatalogScan: table=models filter=(tree = 't')

``statement error`` expects a ZooQL error whose ``Class: first line of the message``
contains the given text. ``query`` expects the result's column names then its rows, values
separated by `` | `` (NULL for None, floats with 6 significant digits). ``explain`` runs
EXPLAIN on the statement and expects its lines. :func:`run_file` with ``update=True``
rewrites the expected parts from what the statements produce (review the diff).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path


@dataclasses.dataclass
class Record:
    kind: str            # file | statement | query | explain
    arg: str             # file name, 'ok' / 'error <text>', ''
    sql: str
    expected: list[str]
    line: int
    prefix: str = ""     # the comment lines (and blank lines between them) before the record


def parse_file(text: str) -> list[Record]:
    """The records of a file; each keeps the comments before it (``Record.prefix``), so that
    an update rewrites the expected parts and nothing else."""
    records, block, start, prefix = [], [], 1, []
    for i, line in enumerate(text.splitlines() + [""], 1):
        if line.strip() == "":
            if block:
                rec = _record(block, start)
                rec.prefix = "\n".join(prefix).lstrip("\n")
                records.append(rec)
                prefix = []
            elif prefix:
                prefix.append("")
            block, start = [], i + 1
        elif line.startswith("#") and not block:
            prefix.append(line)
            start = i + 1
        else:
            block.append(line)
    return records


def _trailer(text: str) -> str:
    """Comment lines after the last record."""
    lines = text.rstrip("\n").splitlines()
    tail = []
    while lines and (lines[-1].startswith("#") or not lines[-1].strip()):
        tail.insert(0, lines.pop())
    return "\n".join(tail).strip("\n")


def _record(lines: list[str], line: int) -> Record:
    head, _, arg = lines[0].partition(" ")
    body = lines[1:]
    if head == "file":
        return Record("file", arg.strip(), "\n".join(body), [], line)
    if head not in ("statement", "query", "explain"):
        raise ValueError(f"line {line}: unknown record {head!r} (file, statement, query, explain)")
    if "----" in body:
        k = body.index("----")
        sql, expected = body[:k], body[k + 1:]
    else:
        sql, expected = body, []
    return Record(head, arg.strip(), "\n".join(sql), expected, line)


def fmt(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _error_line(exc) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def run_record(hub, rec: Record, folder: Path) -> tuple[bool, list[str], str]:
    """Run one record; returns (passed, actual lines for the expected part, description)."""
    from zooql.errors import ZooQLError

    if rec.kind == "file":
        (folder / rec.arg).write_text(rec.sql + "\n")
        return True, [], ""
    sql = "EXPLAIN " + rec.sql if rec.kind == "explain" else rec.sql
    try:
        res = hub.execute(sql, base_dir=str(folder))
    except ZooQLError as exc:
        got = _error_line(exc)
        if rec.kind == "statement" and rec.arg.startswith("error"):
            want = rec.arg[len("error"):].strip()
            return want in got, [got], f"expected an error containing {want!r}, got {got!r}"
        return False, [got], f"unexpected error {got!r}"
    if rec.kind == "statement":
        if rec.arg == "ok":
            return True, [], ""
        return False, [], f"expected an error ({rec.arg}), the statement succeeded"
    if rec.kind == "explain":
        actual = [r[0] for r in res.rows]
    else:
        actual = [" | ".join(res.columns)] + [" | ".join(fmt(v) for v in row) for row in res.rows]
    return actual == rec.expected, actual, "result differs"


def run_file(path: str | os.PathLike, scratch: str | os.PathLike, *, update: bool = False) -> list[str]:
    """Run every record of ``path`` on a fresh hub in ``scratch``; return the failures (empty
    when all pass). With ``update`` the file is rewritten with the actual results."""
    import zooql

    path, folder = Path(path), Path(scratch)
    folder.mkdir(parents=True, exist_ok=True)
    records = parse_file(path.read_text())
    failures, out = [], []
    with zooql.connect(folder / "hub") as hub:
        for rec in records:
            ok, actual, why = run_record(hub, rec, folder)
            if not ok:
                failures.append(f"{path.name}:{rec.line}: {rec.kind} {rec.arg}\n{rec.sql}\n-- {why}\n"
                                f"-- expected:\n" + "\n".join(rec.expected) + "\n-- actual:\n" + "\n".join(actual))
            out.append(_render(rec, actual))
    if update:
        tail = _trailer(path.read_text())
        path.write_text("\n\n".join(out + ([tail] if tail else [])) + "\n")
    return failures


def _render(rec: Record, actual: list[str]) -> str:
    return (rec.prefix + "\n" if rec.prefix else "") + _render_body(rec, actual)


def _render_body(rec: Record, actual: list[str]) -> str:
    if rec.kind == "file":
        return f"file {rec.arg}\n{rec.sql}"
    if rec.kind == "statement":
        arg = rec.arg
        if arg.startswith("error") and actual:
            arg = "error " + actual[0]
        return f"statement {arg}\n{rec.sql}"
    return f"{rec.kind}\n{rec.sql}\n----\n" + "\n".join(actual)


def discover(root: str | os.PathLike) -> list[Path]:
    """Every ``.slt`` file under ``root`` (tests/golden and each method's golden/ folder)."""
    return sorted(Path(root).rglob("*.slt"))
