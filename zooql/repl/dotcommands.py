"""REPL dot-commands (``.help``, ``.mode csv``, ``.open PATH``, ...).

A dot-command is one line starting with '.', run when Enter is pressed (no ';').
Each command is a function ``(repl, arg: str) -> None`` where ``repl`` is the
running :class:`zooql.repl.repl.Repl` (``mode``, ``timer``, ``hub``, ``open_hub``,
``run_text``, ``print``, ``quit``).
"""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from typing import Callable

from zooql.repl.formatting import MODES


class DotCommandError(Exception):
    """Wrong use of a dot-command; the message is shown as ``Error: ...``."""


@dataclass
class DotCommand:
    name: str
    func: Callable
    usage: str
    help: str
    aliases: tuple[str, ...] = field(default_factory=tuple)


COMMANDS: dict[str, DotCommand] = {}
_ALIASES: dict[str, str] = {}


def command(name: str, usage: str, help: str, aliases: tuple[str, ...] = ()):
    def deco(func):
        COMMANDS[name] = DotCommand(name, func, usage, help, aliases)
        for a in aliases:
            _ALIASES[a] = name
        return func

    return deco


def names() -> list[str]:
    """Every command word, aliases included (for completion)."""
    return sorted(list(COMMANDS) + list(_ALIASES))


def is_dot_command(text: str) -> bool:
    return text.lstrip().startswith(".")


def run(repl, line: str) -> None:
    """Run one dot-command line. Raises DotCommandError on misuse."""
    line = line.strip()
    word, _, arg = line.partition(" ")
    if not word.startswith("."):
        word, arg = line.split(None, 1)[0], ""
    name = _ALIASES.get(word, word)
    cmd = COMMANDS.get(name)
    if cmd is None:
        raise DotCommandError(f"unknown command {word}; type .help for the list")
    cmd.func(repl, arg.strip())


def _one_path(arg: str, usage: str) -> str:
    try:
        parts = shlex.split(arg)
    except ValueError as e:
        raise DotCommandError(f"{e}; usage: {usage}") from None
    if len(parts) != 1:
        raise DotCommandError(f"usage: {usage}")
    return os.path.expanduser(parts[0])


def _on_off(arg: str, current: bool, usage: str) -> bool:
    a = arg.lower()
    if a in ("", "toggle"):
        return not current
    if a in ("on", "true", "yes", "1"):
        return True
    if a in ("off", "false", "no", "0"):
        return False
    raise DotCommandError(f"usage: {usage}")


# ---------------------------------------------------------------------------

@command(".help", ".help [COMMAND | STATEMENT]",
         "Show this help, the help of one command, or a statement's syntax and example (HELP FIND).",
         aliases=(".h", ".?"))
def _help(repl, arg: str) -> None:
    if arg:
        name = _ALIASES.get(arg if arg.startswith(".") else "." + arg, None) or (
            arg if arg.startswith(".") else "." + arg)
        cmd = COMMANDS.get(name)
        if cmd is None and not arg.startswith("."):
            repl.run_text(f"HELP {arg.rstrip(';')};")   # a statement: the HELP statement answers
            return
        if cmd is None:
            raise DotCommandError(f"unknown command {arg}")
        extra = f"  (also {', '.join(cmd.aliases)})" if cmd.aliases else ""
        repl.print(f"{cmd.usage}\n    {cmd.help}{extra}")
        return
    width = max(len(c.usage) for c in COMMANDS.values())
    lines = [
        "Type ZooQL statements ending with ';' (Enter inside a statement starts a new line;",
        "Alt+Enter / Esc Enter runs the buffer as it is). Ctrl-C cancels the input or a",
        "running statement, Ctrl-D quits. Tab completes keywords and names.",
        "HELP; lists the statements, HELP FIND; (or .help FIND) shows one's syntax and an example.",
        "",
    ]
    for c in COMMANDS.values():
        lines.append(f"{c.usage.ljust(width)}  {c.help}")
    repl.print("\n".join(lines))


@command(".mode", f".mode [{'|'.join(MODES)}]",
         "Set (or show) how results are printed (line: one field per line).")
def _mode(repl, arg: str) -> None:
    if not arg:
        repl.print(f"mode: {repl.mode}")
        return
    m = arg.lower()
    if m not in MODES:
        raise DotCommandError(f"unknown mode {arg!r}; usage: .mode [{'|'.join(MODES)}]")
    repl.mode = m
    repl.say(f"mode: {m}")


@command(".pager", ".pager [on|off]", "Page results longer than the terminal ($ZOOQL_PAGER, $PAGER or "
         "less; never when output is not a terminal).")
def _pager(repl, arg: str) -> None:
    current = repl.pager if repl.pager is not None else True
    repl.pager = _on_off(arg, current, ".pager [on|off]")
    repl.say(f"pager: {'on' if repl.pager else 'off'}")


@command(".progress", ".progress [on|off|verbose]",
         "Progress bars: one per statement; verbose adds a line per finished model or step.")
def _progress(repl, arg: str) -> None:
    a = arg.lower()
    if a == "verbose":
        repl.progress, repl.verbose = (True if repl.progress is None else repl.progress), True
    elif a:
        repl.progress = _on_off(a, repl.progress is not False, ".progress [on|off|verbose]")
        repl.verbose = False
    state = "off" if repl.progress is False else ("verbose" if repl.verbose else "on")
    repl.say(f"progress: {state}")


@command(".timer", ".timer [on|off]", "Print the time each statement takes.")
def _timer(repl, arg: str) -> None:
    repl.timer = _on_off(arg, repl.timer, ".timer [on|off]")
    repl.say(f"timer: {'on' if repl.timer else 'off'}")


@command(".open", ".open PATH", "Close this hub and open the hub at PATH (a new one is created by "
         "the first statement that writes).")
def _open(repl, arg: str) -> None:
    path = _one_path(arg, ".open PATH")
    repl.open_hub(path)
    new = "" if getattr(repl.hub, "exists", True) else " (new: created by the first statement that writes)"
    repl.print(f"opened hub {repl.hub_path()}{new}")


@command(".hub", ".hub", "Show the path of the open hub.")
def _hub(repl, arg: str) -> None:
    repl.print(repl.hub_path())


@command(".read", ".read FILE", "Run the statements and dot-commands in FILE (paths in it are relative "
         "to its folder).",
         aliases=(".run",))
def _read(repl, arg: str) -> None:
    path = _one_path(arg, ".read FILE")
    if not os.path.isfile(path):
        raise DotCommandError(f"cannot read {path}: no such file")
    repl.run_file(path)


@command(".explain", ".explain STATEMENT", "Show the plan of a statement without running it.")
def _explain(repl, arg: str) -> None:
    if not arg:
        raise DotCommandError("usage: .explain STATEMENT")
    repl.print(repl.hub.explain(arg.rstrip().rstrip(";")))


def _names_command(category: str, title: str):
    def func(repl, arg: str) -> None:
        try:
            got = repl.hub.completions() or {}
        except Exception as e:  # noqa: BLE001 - shown to the user
            raise DotCommandError(f"cannot list {category}: {e}") from None
        names = sorted(got.get(category) or [])
        if arg:
            import fnmatch

            names = [n for n in names if fnmatch.fnmatch(n.lower(), arg.lower())]
        repl.show_rows([title], [(n,) for n in names])

    return func


for _cat, _title, _what in (("models", "model", "models"), ("datasets", "dataset", "datasets"),
                            ("trees", "tree", "trees"), ("probesets", "probe_set", "probe sets")):
    command(f".{_cat}", f".{_cat} [PATTERN]", f"List the names of {_what} (glob PATTERN filters).")(
        _names_command(_cat, _title))


@command(".tables", ".tables [PATTERN]", "List the relations a SELECT can read (catalog, methods, views).")
def _tables(repl, arg: str) -> None:
    import fnmatch

    try:
        names = sorted(repl.hub.relations())
    except Exception as e:  # noqa: BLE001 - shown to the user
        raise DotCommandError(f"cannot list relations: {e}") from None
    repl.show_rows(["relation"], [(n,) for n in names if not arg or fnmatch.fnmatch(n, arg.lower())])


@command(".schema", ".schema [RELATION]", "Show the columns of one relation, or of every relation.")
def _schema(repl, arg: str) -> None:
    try:
        rels = repl.hub.relations()
    except Exception as e:  # noqa: BLE001 - shown to the user
        raise DotCommandError(f"cannot list relations: {e}") from None
    if arg and arg.lower() not in rels:
        raise DotCommandError(f"unknown relation {arg!r} (see .tables)")
    names = [arg.lower()] if arg else sorted(rels)
    repl.show_rows(["relation", "columns"], [(n, ", ".join(rels[n]) or "(a view)") for n in names])


@command(".quit", ".quit", "Leave the REPL (also .exit, Ctrl-D).", aliases=(".exit", ".q"))
def _quit(repl, arg: str) -> None:
    repl.quit()
