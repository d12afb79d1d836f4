"""Language keywords, read from the grammar (used by the REPL completer and lexer)."""
from __future__ import annotations

import re

from zooql.query.parser import grammar_text


def _keywords() -> list[str]:
    return sorted(set(m.upper() for m in re.findall(r'"([A-Za-z_]+)"i', grammar_text())))


KEYWORDS: list[str] = _keywords()
