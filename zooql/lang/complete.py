"""What the grammar accepts at a point of the text, for the REPL's completion.

Uses Lark's interactive LALR parser: the text before the cursor (without the word being
typed) is fed token by token and ``accepts()`` gives the terminals that may come next,
which are sorted into keywords, names (``IDENT``/``QUOTED_IDENT``), strings, numbers and
punctuation. Imports only lark.
"""
from __future__ import annotations

from lark import Lark
from lark.exceptions import LarkError

_NAME_TERMINALS = ("IDENT", "QUOTED_IDENT")


def expected_after(lark: Lark, text: str) -> dict | None:
    """``{"keywords": [...], "names": bool, "strings": bool, "numbers": bool,
    "punct": [...], "end": bool, "previous": [...]}`` for what may follow `text`, or None
    when `text` is not a valid beginning of input. ``previous`` holds the text of the last
    tokens (most recent last), to tell which kind of name is wanted."""
    try:
        ip = lark.parse_interactive(text)
        tokens = ip.exhaust_lexer()
        accepted = ip.accepts()
    except LarkError:
        return None
    out = {"keywords": [], "names": False, "strings": False, "numbers": False, "punct": [], "end": False,
           "previous": [str(t) for t in tokens[-8:]]}
    for name in accepted:
        if name == "$END":
            out["end"] = True
            continue
        if name in _NAME_TERMINALS:
            out["names"] = True
            continue
        if name == "STRING":
            out["strings"] = True
            continue
        if name == "NUMBER":
            out["numbers"] = True
            continue
        try:
            pattern = lark.get_terminal(name).pattern
        except KeyError:
            continue
        if pattern.type == "str":
            value = pattern.value
            if value.replace("_", "").isalpha():
                out["keywords"].append(value.upper())
            else:
                out["punct"].append(value)
    out["keywords"].sort()
    out["punct"].sort()
    return out
