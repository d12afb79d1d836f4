"""The ``zooql`` command.

::

    zooql [--hub PATH] [--trust]            interactive prompt (statements from stdin
                                            when stdin is not a terminal)
    zooql -c "SHOW MODELS; ..."             run statements and exit
    zooql run FILE.zql [FILE ...]           run files; relative paths in a file are
                                            resolved against the file's folder
    zooql demo                              build and query the demo hub

Options common to all: ``--format table|csv|json``, ``--timer``, ``--no-progress``,
``--debug``, ``-p NAME=VALUE`` (query parameters).

Exit status: 0 on success, 1 for a ZooQL error (message on stderr as ``Error: ...``,
never a traceback), 130 when interrupted (Ctrl-C), 2 for a usage error or an
internal error (a bug: one line, traceback only with ``--debug``).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from typing import Any, Sequence, TextIO

from zooql.repl.formatting import MODES, format_elapsed, render_split
from zooql.repl.lexer import PARAM, split_statements, tokenize
from zooql.repl.progress import ProgressBar

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INTERNAL = 2
EXIT_INTERRUPTED = 130


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


def _add_common(p: argparse.ArgumentParser, *, top: bool) -> None:
    """Options accepted both before and after the sub-command. On sub-parsers their
    defaults are SUPPRESS so that they do not overwrite values given before it."""
    d = (lambda v: v) if top else (lambda v: argparse.SUPPRESS)
    p.add_argument("--hub", metavar="PATH", default=d(None),
                   help="hub folder to open or create (default: the embedded default hub)")
    p.add_argument("--trust", action="store_true", default=d(False),
                   help="run user Python code: 'python:<module>:<factory>' model sources and "
                        "'python:...' task evaluators (same as SET trust_code = true); checkpoints always "
                        "load without code (weights_only / safetensors)")
    p.add_argument("-f", "--format", choices=MODES, default=d(None),
                   help="output format (default: table)")
    p.add_argument("--timer", action="store_true", default=d(False),
                   help="print the time each statement takes (on stderr)")
    p.add_argument("--no-progress", dest="no_progress", action="store_true", default=d(False),
                   help="never draw progress bars")
    p.add_argument("-p", "--param", dest="params", metavar="NAME=VALUE", action="append",
                   type=_param, default=d(None), help="bind :NAME in the statements (repeatable)")
    p.add_argument("--debug", action="store_true", default=d(False),
                   help="show a traceback for internal errors")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zooql",
        description="ZooQL: an SQL-like query language over ML models.",
        epilog="With no command: an interactive prompt when stdin is a terminal, "
               "otherwise the statements read from stdin are run.",
    )
    parser.add_argument("--version", action="version", version=f"zooql {_version()}")
    parser.add_argument("-c", "--command", dest="command_text", metavar="STATEMENTS",
                        help="run these statements and exit")
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

def execute_script(hub: Any, text: str, *, base_dir: str | None = None, mode: str = "table",
                   timer: bool = False, params: dict | None = None, progress: bool | None = None,
                   out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run each statement of `text` and print its result; ZooQL errors propagate (the
    statements before the failing one have run). Returns the number of statements."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    if base_dir is None:
        base_dir = os.getcwd()
    n = 0
    for stmt in split_statements(text):
        stmt_params = None
        if params and any(t.kind == PARAM for t in tokenize(stmt.text)):
            stmt_params = params
        t0 = time.perf_counter()
        with ProgressBar(err, enabled=progress) as bar:
            res = hub.execute(stmt.padded(text), stmt_params, progress=bar, base_dir=base_dir)
        data, note = render_split(res, mode)
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


def _read_file(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    with open(path, encoding="utf-8") as f:
        return f.read()


def _connect(args: argparse.Namespace):
    import zooql

    return zooql.connect(args.hub, trust_code=bool(args.trust))


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except Exception:
        return False


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
        from zooql.repl.repl import Repl

        repl = Repl(hub_path=args.hub, trust_code=bool(args.trust), mode=mode, timer=bool(args.timer),
                    history_path=getattr(args, "history", None), progress=progress,
                    debug=bool(args.debug))
        return repl.run()

    # Non-interactive: -c, run FILE..., or statements on stdin.
    if args.cmd == "run":
        scripts = []
        for path in args.files:
            try:
                text = _read_file(path)
            except OSError as e:
                print(f"Error: cannot read {path}: {e.strerror or e}", file=sys.stderr)
                return EXIT_ERROR
            base = os.getcwd() if path == "-" else os.path.dirname(os.path.abspath(path))
            scripts.append((text, base))
    elif args.command_text is not None:
        scripts = [(args.command_text, os.getcwd())]
    else:
        scripts = [(sys.stdin.read(), os.getcwd())]

    hub = _connect(args)
    try:
        for text, base in scripts:
            execute_script(hub, text, base_dir=base, mode=mode, timer=bool(args.timer),
                           params=params, progress=progress)
    finally:
        try:
            hub.close()
        except Exception:
            pass
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.command_text is not None and args.cmd is not None:
        parser.error("-c cannot be combined with a command")
    try:
        from zooql.errors import Cancelled, ZooQLError
    except Exception:  # pragma: no cover
        class ZooQLError(Exception):  # type: ignore[no-redef]
            pass

        class Cancelled(ZooQLError):  # type: ignore[no-redef]
            pass
    try:
        return _dispatch(args)
    except Cancelled as e:
        msg = str(e) or "cancelled"
        print(msg if "cancel" in msg.lower() else f"cancelled: {msg}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ZooQLError as e:
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
