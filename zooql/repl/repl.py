"""The interactive prompt loop (prompt_toolkit), modelled on litecli.

* input runs until a ';' outside strings and comments; Enter inside an unfinished
  statement starts a new line, Alt+Enter (Esc Enter) runs the buffer as it is;
* lines starting with '.' are dot-commands (see :mod:`zooql.repl.dotcommands`);
* Ctrl-C clears the input, or cancels the running statement; Ctrl-D quits;
* history is kept in a file (``$ZOOQL_HISTORY``, else
  ``$XDG_STATE_HOME/zooql/history``, else ``~/.local/state/zooql/history``);
* Tab completes what the grammar accepts at the cursor (:mod:`zooql.repl.completer`);
  names are reloaded after every statement;
* results fit the terminal's width and go through a pager when longer than the screen
  (``.pager on|off``; never when stdout is not a terminal);
* a running statement draws one progress bar (:mod:`zooql.repl.progress`) and the
  terminal does not echo keys typed meanwhile (they wait for the next prompt).

For tests, :func:`run_repl` takes prompt_toolkit ``input``/``output`` objects
(``create_pipe_input()``, ``DummyOutput()`` or one with a fixed ``get_size()``) and text
streams for results and errors.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from typing import Any, Callable, TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.filters import Condition
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings

from zooql.repl import dotcommands
from zooql.repl.completer import ZooQLCompleter
from zooql.repl.formatting import MODES, format_elapsed, render_split
from zooql.repl.lexer import ZooQLLexer, input_complete, make_style, split_script, split_statements
from zooql.repl.progress import ProgressBar, no_echo

PROMPT = "zooql> "
CONTINUATION = "    -> "


def default_history_path() -> str:
    env = os.environ.get("ZOOQL_HISTORY")
    if env:
        return os.path.expanduser(env)
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "zooql", "history")


def _make_history(path: str | None, err: TextIO) -> History:
    if path is None:
        path = default_history_path()
    if path == "":
        return InMemoryHistory()
    try:
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        # Fail now rather than on the first statement when the file is not writable.
        with open(path, "a", encoding="utf-8"):
            pass
        return FileHistory(path)
    except OSError as e:
        print(f"Warning: history not saved ({path}: {e.strerror or e})", file=err)
        return InMemoryHistory()


def _zooql_errors():
    try:
        from zooql.errors import Cancelled, ZooQLError
    except Exception:  # pragma: no cover - errors.py is part of the package
        class ZooQLError(Exception):  # type: ignore[no-redef]
            pass

        class Cancelled(ZooQLError):  # type: ignore[no-redef]
            pass
    return ZooQLError, Cancelled


class _Quit(Exception):
    pass


def pager_command() -> str:
    """``$ZOOQL_PAGER``, else ``$PAGER``, else ``less -FRX`` (quits at once when the text
    fits on one screen)."""
    return os.environ.get("ZOOQL_PAGER") or os.environ.get("PAGER") or "less -FRX"


def page(text: str, err: TextIO) -> bool:
    """Show `text` through the pager; False when no pager could be run (then the caller
    prints it)."""
    cmd = pager_command()
    try:
        if shlex.split(cmd)[0] in ("less", "more") and not shutil.which(shlex.split(cmd)[0]):
            return False
        subprocess.run(cmd, shell=True, input=(text + "\n").encode("utf-8"), check=False)
        return True
    except (OSError, ValueError, IndexError) as e:
        print(f"Warning: pager {cmd!r} failed ({e}); printing instead", file=err)
        return False


class Repl:
    """One interactive session over a hub."""

    def __init__(self, hub: Any = None, *, hub_path: str | None = None, trust_code: bool = False,
                 connect: Callable[..., Any] | None = None, mode: str = "table", timer: bool = False,
                 input: Any = None, output: Any = None, stdout: TextIO | None = None,
                 stderr: TextIO | None = None, history_path: str | None = None,
                 progress: bool | None = None, debug: bool = False, banner: bool = True,
                 width: int | None = None, pager: bool | None = None, verbose: bool = False,
                 create: bool | None = None, executor: dict | None = None):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self.out = stdout if stdout is not None else sys.stdout
        self.err = stderr if stderr is not None else sys.stderr
        self.mode = mode
        self.timer = timer
        self.debug = debug
        self.trust_code = trust_code
        self.executor = {k: v for k, v in (executor or {}).items() if v is not None}  # --executor, --ray-*
        self.progress = progress  # None: draw when stderr is a terminal
        self.verbose = verbose    # progress: one line per finished model / step as well
        self.pager = pager        # None: page long results when stdout is a terminal
        self._width = width       # None: the terminal's width (no limit when not a terminal)
        self._create = create     # None: create a hub only on the first statement that writes
        self.quiet = False        # True: dot-commands that change a setting do not confirm it
        self.banner = banner
        self._connect = connect
        self._owns_hub = hub is None
        self.hub = hub if hub is not None else self._open(hub_path)
        self.completer = ZooQLCompleter(self.hub, dot_commands=dotcommands.names())
        self._running = False
        self._pt_input = input
        self._pt_output = output
        self._history_path = history_path
        self.session: PromptSession | None = None
        self.ZooQLError, self.Cancelled = _zooql_errors()

    # -- hub ------------------------------------------------------------------
    def _open(self, path: str | None):
        connect = self._connect
        if connect is None:
            import zooql

            connect = zooql.connect
        if self._connect is None and path is not None:
            return connect(path, trust_code=self.trust_code,
                           create=True if self._create else "on_write", **self.executor)
        return connect(path, trust_code=self.trust_code, **self.executor)

    def open_hub(self, path: str) -> None:
        new = self._open(path)  # errors leave the current hub open
        old, owned = self.hub, self._owns_hub
        self.hub, self._owns_hub = new, True
        if owned and old is not None:
            try:
                old.close()
            except Exception:
                pass
        self.completer.refresh(self.hub)

    def hub_path(self) -> str:
        return str(getattr(self.hub, "path", "") or "")

    def close(self) -> None:
        if self._owns_hub and self.hub is not None:
            try:
                self.hub.close()
            except Exception:
                pass

    # -- output ---------------------------------------------------------------
    def print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def say(self, text: str) -> None:
        """A dot-command's confirmation (``mode: csv``); silent while a script or the rc file
        runs (``quiet``)."""
        if not self.quiet:
            self.print(text)

    def _stdout_is_tty(self) -> bool:
        try:
            return bool(self.out.isatty())
        except Exception:
            return False

    def terminal_size(self) -> tuple[int | None, int | None]:
        """(columns, rows) of the terminal results are printed on; (None, None) when the
        output is not a terminal (then tables are not cut and nothing is paged)."""
        if self._pt_output is not None:
            try:
                size = self._pt_output.get_size()
                cols, rows = size.columns, size.rows
            except Exception:
                cols, rows = None, None
        elif self._stdout_is_tty():
            size = shutil.get_terminal_size()
            cols, rows = size.columns, size.lines
        else:
            cols, rows = None, None
        if self._width is not None:
            cols = self._width
        return cols, rows

    def emit(self, data: str) -> None:
        """Print a result, through the pager when it is longer than the terminal."""
        cols, rows = self.terminal_size()
        paging = self.pager if self.pager is not None else True
        # (a terminal reporting a tiny or zero size is not paged: its size is unknown)
        if paging and rows and rows >= 8 and self._stdout_is_tty() and data.count("\n") + 1 >= rows - 1:
            if page(data, self.err):
                return
        self.print(data)

    def show_rows(self, columns: list[str], rows: list[tuple]) -> None:
        """Print rows in the current output mode."""
        from types import SimpleNamespace

        data, _ = render_split(SimpleNamespace(columns=columns, rows=rows, message=None), self.mode,
                               width=self.terminal_size()[0])
        self.emit(data)

    def error(self, text: str) -> None:
        print(f"Error: {text}", file=self.err, flush=True)

    def quit(self) -> None:
        raise _Quit()

    # -- running text ---------------------------------------------------------
    def run_text(self, text: str, *, base_dir: str | None = None) -> bool:
        """Run every statement in `text`, printing each result. Stops at the first
        error. Returns True when all statements succeeded."""
        if base_dir is None:
            base_dir = os.getcwd()
        ok = True
        try:
            for stmt in split_statements(text):
                if not self._run_one(stmt.padded(text), base_dir):
                    ok = False
                    break
        finally:
            self.completer.refresh(self.hub)
        return ok

    def run_file(self, path: str, *, quiet: bool = False) -> bool:
        """Run a file of statements and dot-commands (``.read``, the rc file: `quiet`, setting
        commands do not confirm); paths in it resolve against its folder. Stops at the first
        error; True when all succeeded."""
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            self.error(f"cannot read {path}: {e.strerror or e}")
            return False
        base_dir = os.path.dirname(os.path.abspath(path))
        was, self.quiet = self.quiet, self.quiet or quiet
        try:
            for kind, stmt in split_script(text):
                if kind == "dot":
                    if not self.handle_input(stmt.text):
                        return False
                elif not self._run_one(stmt.padded(text), base_dir):
                    return False
        finally:
            self.quiet = was
            self.completer.refresh(self.hub)
        return True

    def _run_one(self, text: str, base_dir: str) -> bool:
        t0 = time.perf_counter()
        bar = ProgressBar(self.err, enabled=self.progress, verbose=self.verbose)
        try:
            try:
                with no_echo():  # keys typed meanwhile wait for the next prompt, off the bar
                    res = self.hub.execute(text, progress=bar, base_dir=base_dir)
            finally:
                bar.close()
            data, note = render_split(res, self.mode, width=self.terminal_size()[0])
        except KeyboardInterrupt:
            print("cancelled", file=self.err, flush=True)
            return False
        except self.Cancelled as e:
            msg = str(e) or "cancelled"
            print(msg if "cancel" in msg.lower() else f"cancelled: {msg}", file=self.err, flush=True)
            return False
        except self.ZooQLError as e:
            self.error(str(e))
            return False
        except Exception as e:  # noqa: BLE001 - an engine bug must not end the session
            self.error(f"internal error: {type(e).__name__}: {e} (this is a bug"
                       + ("" if self.debug else "; start with --debug for a traceback") + ")")
            if self.debug:
                traceback.print_exc(file=self.err)
            return False
        if data:
            self.emit(data)
        if note:
            if self.mode == "table" or not data:
                self.print(note)
            else:
                print(note, file=self.err, flush=True)
        if self.timer:
            elapsed = getattr(res, "elapsed", None)
            if elapsed is None:
                elapsed = time.perf_counter() - t0
            self.print(format_elapsed(elapsed))
        return True

    def handle_input(self, text: str) -> bool:
        """Handle what the user entered at the prompt (raises _Quit to leave); False when
        it failed."""
        stripped = text.strip()
        if not stripped:
            return True
        low = stripped.lower()
        if low in ("exit", "quit", r"\q"):
            self.quit()
        if low == "help":
            stripped = ".help"
        if dotcommands.is_dot_command(stripped):
            try:
                dotcommands.run(self, stripped)
                return True
            except dotcommands.DotCommandError as e:
                self.error(str(e))
            except KeyboardInterrupt:
                print("cancelled", file=self.err, flush=True)
            except self.ZooQLError as e:
                self.error(str(e))
            except _Quit:
                raise
            except Exception as e:  # noqa: BLE001
                self.error(f"internal error: {type(e).__name__}: {e} (this is a bug)")
                if self.debug:
                    traceback.print_exc(file=self.err)
            return False
        return self.run_text(text)

    # -- the prompt -----------------------------------------------------------
    def _make_session(self) -> PromptSession:
        kb = KeyBindings()  # Ctrl-D / Ctrl-C / Alt+Enter: prompt_toolkit defaults

        def multiline() -> bool:
            try:
                from prompt_toolkit.application.current import get_app

                return not input_complete(get_app().current_buffer.text)
            except Exception:
                return True

        def continuation(width: int, line_number: int, wrap_count: int):
            return FormattedText([("class:continuation", CONTINUATION.rjust(width))])

        kwargs: dict[str, Any] = {}
        if self._pt_input is not None:
            kwargs["input"] = self._pt_input
        if self._pt_output is not None:
            kwargs["output"] = self._pt_output
        return PromptSession(
            message=FormattedText([("class:prompt", PROMPT)]),
            multiline=Condition(multiline),
            lexer=ZooQLLexer(),
            completer=self.completer,
            complete_while_typing=True,
            history=_make_history(self._history_path, self.err),
            auto_suggest=AutoSuggestFromHistory(),
            style=make_style(),
            include_default_pygments_style=False,
            prompt_continuation=continuation,
            key_bindings=kb,
            enable_history_search=False,
            **kwargs,
        )

    def run(self) -> int:
        """The loop. Returns the exit status (0)."""
        self.session = self._make_session()
        if self.banner:
            try:
                from zooql import __version__ as version  # type: ignore
            except Exception:
                version = ""
            new = "" if getattr(self.hub, "exists", True) else \
                " (new: created by the first statement that writes)"
            self.print(f"ZooQL {version}".rstrip() + f" - hub {self.hub_path()}{new}\n"
                       "Statements end with ';'. Type .help for help, Ctrl-D to quit.")
        try:
            while True:
                try:
                    text = self.session.prompt()
                except KeyboardInterrupt:
                    continue  # Ctrl-C on input: drop it, new prompt
                except EOFError:
                    break
                try:
                    self.handle_input(text)
                except _Quit:
                    break
                except KeyboardInterrupt:
                    print("cancelled", file=self.err, flush=True)
        finally:
            self.close()
        return 0


def run_repl(hub: Any = None, **kwargs: Any) -> int:
    """Run the REPL over `hub` (or over ``hub_path=...``); see :class:`Repl` for options."""
    return Repl(hub, **kwargs).run()
