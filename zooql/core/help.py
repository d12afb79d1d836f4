"""HELP [statement words]: the statements of this build (core and every method), each with
its syntax rendered from the grammar rules (zooql/lang/grammar_help.py) and one example
taken from the docs (the first ``;``-terminated statement of a ```sql / ```zql block in
docs/*.md that starts with the statement's keywords). Nothing here is written by hand per
statement, so HELP follows the grammar and the docs."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from zooql.core.binder import BindContext
from zooql.errors import BindError
from zooql.lang import ast as A
from zooql.lang import grammar_help as G
from zooql.plan.hooks import binds, plans
from zooql.plan.nodes import Operator, Rows

DOCS = Path(__file__).resolve().parents[2] / "docs"
DOC_ORDER = ("language.md", "find.md", "discover.md", "recommend.md", "vlm_selection.md")


@functools.lru_cache(maxsize=4)
def doc_statements(docs: str = str(DOCS)) -> tuple[tuple[str, str], ...]:
    """(statement, doc file) for every ``;``-terminated statement in the docs' example blocks."""
    folder = Path(docs)
    if not folder.is_dir():
        return ()
    names = [n for n in DOC_ORDER if (folder / n).exists()]
    names += sorted(p.name for p in folder.glob("*.md") if p.name not in names)
    out = []
    for name in names:
        text = (folder / name).read_text(encoding="utf-8")
        for block in re.findall(r"```(?:sql|zql)\n(.*?)```", text, flags=re.S):
            cur = ""
            for line in block.splitlines():
                code = line.split("--")[0].strip()    # the examples hold no '--' inside strings
                if not code:
                    continue
                cur = (cur + " " + code).strip()
                if cur.endswith(";"):
                    out.append((re.sub(r"\s+", " ", cur), name))
                    cur = ""
    return tuple(out)


def example(s: G.StatementHelp, docs: str = str(DOCS)) -> tuple[str, str] | None:
    for stmt, doc in doc_statements(docs):
        words = [w.upper() for w in re.findall(r"[A-Za-z_]+|\S", stmt)]
        kw = [w for w in words if w not in ("OR", "REPLACE", "ANALYZE", "IF", "EXISTS")]
        if tuple(kw[:len(s.words)]) == s.words:
            return stmt, doc
    return None


@dataclass(frozen=True)
class BoundHelp:
    topic: tuple[str, ...]
    grammar: str


@binds(A.Help)
def _bind_help(stmt: A.Help, bc: BindContext):
    if stmt.topic and not G.matching(bc.grammar, stmt.topic):
        heads = [s.head for s in G.statements(bc.grammar)]
        raise BindError(f"no statement starts with {' '.join(stmt.topic).upper()}",
                        hint="statements: " + ", ".join(heads))
    return BoundHelp(stmt.topic, bc.grammar)


@plans(BoundHelp)
def _plan_help(b: BoundHelp) -> Operator:
    return Help(topic=" ".join(b.topic).upper(), grammar=b.grammar)


@dataclass(frozen=True)
class Help(Operator):
    topic: str = ""
    grammar: str = ""

    def explain_params(self):
        return {"topic": self.topic or None}

    def run(self, ctx, inputs):
        if not self.topic:
            rows = []
            for s in G.statements(self.grammar):
                ex = example(s)
                rows.append((s.head, ex[0] if ex else None))
            return Rows(["statement", "example"], rows,
                        message=f"{len(rows)} statements; HELP <statement> (e.g. HELP FIND) shows the syntax")
        lines = []
        found = G.matching(self.grammar, tuple(self.topic.split()))
        for s in found:
            lines += [s.head, "  syntax:"] + [f"    {x}" for x in s.syntax]
            ex = example(s)
            lines += ([f"  example ({'docs/' + ex[1]}):", f"    {ex[0]}"] if ex else ["  example: (none in the docs)"])
            lines.append("")
        return Rows(["help"], [(x,) for x in lines[:-1]],
                    message=f"{len(found)} statement{'' if len(found) == 1 else 's'} matching {self.topic}")
