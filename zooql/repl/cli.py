"""The ``zooql`` command.

::

    zooql [PATH] [--trust]                  interactive prompt on the hub at PATH (statements
                                            from stdin when stdin is not a terminal)
    zooql [PATH] -c "SHOW MODELS" -c ...    run statements (each -c in order) and exit
    zooql [PATH] run FILE.zql [FILE ...]    run files; relative paths in a file are
                                            resolved against the file's folder
    zooql demo                              build and query the demo hub

PATH (or ``--hub PATH``) is the hub folder, like ``duckdb FILE``; without it the embedded
default hub is used. A PATH that holds no hub is created by the first statement that
writes; a read-only statement there is an error (a mistyped path does not silently become
a new hub); ``--create`` creates it at once.

At start the statements and dot-commands of ``~/.zooqlrc`` are run (``-init FILE`` runs
FILE instead, ``--no-init`` none), in every mode. Scripts and ``-c`` text may contain
dot-commands on lines of their own (``.mode csv``, ``.tables``).

Options common to all: ``-f/--format table|line|markdown|csv|json``, ``--timer``,
``--no-progress``, ``--verbose``, ``--debug``, ``-p NAME=VALUE`` (query parameters).
With ``-f json`` every statement prints one JSON document on its own line (JSON Lines).

Exit status: 0 on success, 1 for a ZooQL error (message on stderr as ``Error: ...``,
never a traceback; for ``run FILE`` it starts with ``FILE:LINE:``), 130 when interrupted
(Ctrl-C), 2 for a usage error or an internal error (a bug: one line, traceback only with
``--debug``).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import traceback
from typing import Any, Sequence, TextIO

from zooql.errors import Cancelled, ZooQLError
from zooql.repl.formatting import MODES, format_elapsed, render_split
from zooql.repl.lexer import PARAM, split_script, tokenize
from zooql.repl.progress import ProgressBar, no_echo

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INTERNAL = 2
EXIT_INTERRUPTED = 130
EXIT_PROBLEMS = 3      # CHECK HUB found problems


def _version() -> str:
    try:
        from zooql import __version__  # type: ignore

        return str(__version__)
    except Exception:
        return "unknown"


def _param(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    name = name.strip().lstrip(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, _param_value(value)


def _param_value(value: str) -> Any:
    low = value.strip().lower()
    if low == "null":
        return None
    if low in ("true", "false"):
        return low == "true"
    for conv in (int, float):
        try:
            return conv(value)
        except ValueError:
            pass
    return value


SUBCOMMANDS = ("repl", "run", "demo")
_VALUE_OPTIONS = {"--hub", "-f", "--format", "-p", "--param", "--history", "--init", "-c", "--command"}


def normalize_argv(argv: list[str]) -> list[str]:
    """Conventions argparse alone does not give: ``-c TEXT`` takes TEXT verbatim even when
    it starts with '-' (``-c "-- note\nSHOW MODELS"``); ``-init FILE`` (duckdb's spelling)
    is ``--init FILE``; a first positional argument that is not a command is the hub PATH."""
    out: list[str] = []
    i, seen_cmd, seen_path = 0, False, False
    while i < len(argv):
        a = argv[i]
        if seen_cmd or a == "--":
            out += argv[i:]
            break
        if a == "-init":
            a = "--init"
        if a in ("-c", "--command") and i + 1 < len(argv):
            out.append(f"--command={argv[i + 1]}")
            i += 2
            continue
        if a in _VALUE_OPTIONS and i + 1 < len(argv):
            out += [a, argv[i + 1]]
            i += 2
            continue
        if not a.startswith("-") or a == "-":
            if a in SUBCOMMANDS:
                seen_cmd = True
                out.append(a)
            elif not seen_path:
                seen_path = True
                out.append(f"--hub={a}")
            else:
                out.append(a)  # argparse reports it
            i += 1
            continue
        out.append(a)
        i += 1
    return out


def _add_common(p: argparse.ArgumentParser, *, top: bool) -> None:
    """Options accepted both before and after the sub-command. On sub-parsers their
    defaults are SUPPRESS so that they do not overwrite values given before it."""
    d = (lambda v: v) if top else (lambda v: argparse.SUPPRESS)
    p.add_argument("--hub", metavar="PATH", default=d(None),
                   help="hub folder (same as the PATH argument; default: the embedded default hub)")
    p.add_argument("--create", action="store_true", default=d(False),
                   help="create the hub at PATH now if it does not exist (otherwise only a "
                        "statement that writes creates it)")
    p.add_argument("--trust", action="store_true", default=d(False),
                   help="run user Python code: 'python:<module>:<factory>' model sources and "
                        "'python:...' task evaluators (same as SET trust_code = true); checkpoints always "
                        "load without code (weights_only / safetensors)")
    p.add_argument("--executor", choices=("local", "ray"), default=d(None),
                   help="where models run: 'local' (this process, the default) or 'ray' (Ray actors; "
                        "same as SET executor = 'ray'; needs pip install 'zooql[ray]')")
    p.add_argument("--ray-address", dest="ray_address", metavar="ADDR", default=d(None),
                   help="Ray cluster to join: 'auto', 'host:port' or 'ray://...' (default: start a local Ray)")
    p.add_argument("--ray-workers", dest="ray_workers", metavar="N", type=int, default=d(None),
                   help="number of Ray actors (default: one per CPU of the cluster)")
    p.add_argument("-f", "--format", choices=MODES, default=d(None),
                   help="output format (default: table; json prints one document per statement)")
    p.add_argument("--timer", action="store_true", default=d(False),
                   help="print the time each statement takes (on stderr)")
    p.add_argument("--no-progress", dest="no_progress", action="store_true", default=d(False),
                   help="never draw progress bars")
    p.add_argument("--verbose", action="store_true", default=d(False),
                   help="progress: a line per finished model or step besides the bar")
    p.add_argument("-p", "--param", dest="params", metavar="NAME=VALUE", action="append",
                   type=_param, default=d(None), help="bind :NAME in the statements (repeatable)")
    p.add_argument("--init", metavar="FILE", default=d(None),
                   help="run FILE at start instead of ~/.zooqlrc (also spelled -init)")
    p.add_argument("--no-init", dest="no_init", action="store_true", default=d(False),
                   help="do not run ~/.zooqlrc")
    p.add_argument("--debug", action="store_true", default=d(False),
                   help="show a traceback for internal errors")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zooql", usage="zooql [PATH] [options] [-c STATEMENTS ...] [COMMAND ...]",
        description="ZooQL: an SQL-like query language over ML models. PATH is the hub folder.",
        epilog="With no command: an interactive prompt when stdin is a terminal, "
               "otherwise the statements read from stdin are run.",
    )
    parser.add_argument("-V", "--version", action="version", version=f"zooql {_version()}")
    parser.add_argument("-c", "--command", dest="command_text", metavar="STATEMENTS", action="append",
                        help="run these statements (and dot-commands) and exit; repeatable, run in order")
    _add_common(parser, top=True)
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND")
    p_repl = sub.add_parser("repl", help="interactive prompt (the default)")
    _add_common(p_repl, top=False)
    p_repl.add_argument("--history", metavar="FILE", default=None,
                        help="history file (default: $ZOOQL_HISTORY or ~/.local/state/zooql/history)")
    p_run = sub.add_parser("run", help="run .zql files ('-' for stdin)")
    _add_common(p_run, top=False)
    p_run.add_argument("files", nargs="+", metavar="FILE")
    p_demo = sub.add_parser("demo", help="build a small demo hub and run example queries")
    _add_common(p_demo, top=False)
    return parser


# ---------------------------------------------------------------------------
# Running statements
# ---------------------------------------------------------------------------

class ScriptError(Exception):
    """A statement of a script failed; the message names the file and line."""


def rc_path() -> str:
    return os.path.join(os.path.expanduser("~"), ".zooqlrc")


def execute_script(hub: Any, text: str, *, base_dir: str | None = None, mode: str = "table",
                   timer: bool = False, params: dict | None = None, progress: bool | None = None,
                   out: TextIO | None = None, err: TextIO | None = None, session: Any = None,
                   source: str | None = None, verbose: bool = False,
                   status: dict | None = None) -> int:
    """Run each statement (and dot-command line, with a `session`: a Repl) of `text` and print
    its result; ZooQL errors propagate (the statements before the failing one have run),
    as :class:`ScriptError` naming ``source:line`` when `source` is given. In json mode each
    statement prints one JSON document on one line. Returns the number of statements;
    ``status["problems"]`` counts the rows of CHECK HUB statements."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    if base_dir is None:
        base_dir = os.getcwd()
    n = 0
    for kind, stmt in split_script(text):
        if kind == "dot":
            _run_dot(session, stmt, text, source)
            hub = session.hub if session is not None else hub
            mode = session.mode if session is not None else mode
            continue
        stmt_params = None
        if params and any(t.kind == PARAM for t in tokenize(stmt.text)):
            stmt_params = params
        t0 = time.perf_counter()
        try:
            with ProgressBar(err, enabled=progress, verbose=verbose) as bar, no_echo():
                res = hub.execute(stmt.padded(text), stmt_params, progress=bar, base_dir=base_dir)
        except ZooQLError as e:
            if source is None or isinstance(e, Cancelled):
                raise
            line = getattr(e, "line", None) or text.count("\n", 0, stmt.start) + 1
            raise ScriptError(f"{source}:{line}: {e}") from None
        if status is not None and getattr(res, "kind", "") == "check_hub":
            status["problems"] = status.get("problems", 0) + len(res)
        data, note = render_split(res, mode, width=_stdout_width(out), json_lines=True)
        if data:
            print(data, file=out, flush=True)
        if note:
            print(note, file=out if mode == "table" else err, flush=True)
        if timer:
            elapsed = getattr(res, "elapsed", None)
            print(format_elapsed(elapsed if elapsed is not None else time.perf_counter() - t0),
                  file=err, flush=True)
        n += 1
    return n


def _run_dot(session: Any, stmt: Any, text: str, source: str | None) -> None:
    from zooql.repl import dotcommands

    where = f"{source}:{text.count(chr(10), 0, stmt.start) + 1}: " if source else ""
    if session is None:
        raise ScriptError(f"{where}dot-commands are not available here: {stmt.text}")
    try:
        dotcommands.run(session, stmt.text)
    except dotcommands.DotCommandError as e:
        raise ScriptError(f"{where}{e}") from None


def _stdout_width(out: TextIO) -> int | None:
    """Tables fit the terminal; piped output is never cut."""
    try:
        if out.isatty():
            return shutil.get_terminal_size().columns
    except Exception:
        pass
    return None


def _read_file(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    with open(path, encoding="utf-8") as f:
        return f.read()


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except Exception:
        return False


def _session(args: argparse.Namespace, mode: str, progress: bool | None, **kw):
    """The Repl that holds the hub, output mode and settings (also for -c and run)."""
    from zooql.repl.repl import Repl

    return Repl(hub_path=args.hub, trust_code=bool(args.trust), mode=mode, timer=bool(args.timer),
                progress=progress, debug=bool(args.debug), verbose=bool(args.verbose),
                create=bool(args.create),
                executor={"executor": getattr(args, "executor", None), "ray_address": getattr(args, "ray_address", None),
                          "ray_workers": getattr(args, "ray_workers", None)}, **kw)


def _run_init(args: argparse.Namespace, session: Any) -> None:
    """Run the rc file (``-init FILE`` or ``~/.zooqlrc``): errors are reported, not fatal."""
    if args.no_init:
        return
    path = args.init or rc_path()
    if args.init is None and not os.path.isfile(path):
        return
    session.run_file(path, quiet=True)


def _scripts(args: argparse.Namespace) -> list[tuple[str, str, str | None]] | int:
    if args.cmd == "run":
        scripts = []
        for path in args.files:
            try:
                text = _read_file(path)
            except OSError as e:
                print(f"Error: cannot read {path}: {e.strerror or e}", file=sys.stderr)
                return EXIT_ERROR
            base = os.getcwd() if path == "-" else os.path.dirname(os.path.abspath(path))
            scripts.append((text, base, None if path == "-" else path))
        return scripts
    if args.command_text is not None:
        return [(t, os.getcwd(), None) for t in args.command_text]
    return [(sys.stdin.read(), os.getcwd(), None)]


def _dispatch(args: argparse.Namespace) -> int:
    mode = args.format or "table"
    progress = False if args.no_progress else None
    params = dict(args.params) if args.params else None

    if args.cmd == "demo":
        from zooql.demo.main import main as demo_main
        from zooql.repl.formatting import render

        rc = demo_main(args.hub, render=render)
        return int(rc) if isinstance(rc, int) else EXIT_OK

    if args.cmd is None and args.command_text is None and _stdin_is_tty():
        args.cmd = "repl"

    if args.cmd == "repl":
        repl = _session(args, mode, progress, history_path=getattr(args, "history", None))
        _run_init(args, repl)
        if args.format:
            repl.mode = args.format
        return repl.run()

    # Non-interactive: -c (each in order), run FILE..., or statements on stdin.
    scripts = _scripts(args)
    if isinstance(scripts, int):
        return scripts
    session = _session(args, mode, progress, banner=False)
    session.quiet = True
    status: dict = {}
    try:
        _run_init(args, session)
        if args.format:
            session.mode = args.format
        for text, base, source in scripts:
            execute_script(session.hub, text, base_dir=base, mode=session.mode, timer=session.timer,
                           params=params, progress=session.progress, session=session, source=source,
                           verbose=session.verbose, status=status)
    finally:
        session.close()
    return EXIT_PROBLEMS if status.get("problems") else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(normalize_argv(list(argv) if argv is not None else sys.argv[1:]))
    if args.command_text is not None and args.cmd is not None:
        parser.error("-c cannot be combined with a command")
    try:
        return _dispatch(args)
    except Cancelled as e:
        msg = str(e) or "cancelled"
        print(msg if "cancel" in msg.lower() else f"cancelled: {msg}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ZooQLError, ScriptError) as e:
        print(f"Error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`zooql ... | head`): not an error.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except Exception:
            pass
        return EXIT_OK
    except Exception as e:  # noqa: BLE001
        print(f"Error: internal error: {type(e).__name__}: {e} (this is a bug"
              + ("" if args.debug else "; rerun with --debug for a traceback") + ")", file=sys.stderr)
        if args.debug:
            traceback.print_exc()
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
