"""The progress bar of a running statement (drawn with ``rich``).

``hub.execute(text, progress=cb)`` calls ``cb(label, done, total)`` as work advances
(``total <= 0`` when unknown). Operators report nested work with different labels: PROBE
reports ``probing m3`` per batch inside ``probing`` per model. :class:`ProgressBar` turns
that into one bar per statement::

    probing  ━━━━━━━━━━━━╺━━━━━━━━━━━━━━━━  2/5  40%  0:12 < 0:18  0.17/s  · probing m3 40/100

* the bar is the outermost unfinished label; a label that appears while another is
  unfinished is nested in it and shows as the suffix (its batches move the bar and ETA);
* the rate and ETA are the outer label's real average since it started (``done / elapsed``,
  nested progress counted as a fraction), redrawn four times a second by rich's refresh
  thread, so elapsed time and ETA move even inside one long batch;
* nothing is drawn for work that ends within ``delay`` (0.5 s);
* with ``verbose``, a line per finished nested unit (``probing m3: 100/100 in 4.1 s``) is
  printed above the bar;
* it never writes when the stream is not a terminal (unless forced with ``enabled=True``).

:func:`no_echo` stops the terminal from echoing keys typed while a statement runs, so
typed-ahead text does not land inside the bar; it is read by the next prompt.
"""
from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Callable, Iterator, TextIO

ProgressCallback = Callable[[str, int, int], None]


def _fmt_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _fmt_rate(rate: float | None) -> str:
    if not rate or rate <= 0:
        return "?/s"
    if rate >= 100:
        return f"{rate:.0f}/s"
    if rate >= 1:
        return f"{rate:.1f}/s"
    if rate >= 0.01:
        return f"{rate:.2f}/s"
    return f"{1 / rate:.0f}s/it"


class _Level:
    __slots__ = ("label", "done", "total", "t0", "printed")

    def __init__(self, label: str, done: int, total: int, t0: float):
        self.label, self.done, self.total, self.t0 = label, done, total, t0
        self.printed = False

    @property
    def finished(self) -> bool:
        return self.total > 0 and self.done >= self.total


class ProgressBar:
    """Callable ``(label, done, total)``; use as a context manager (or call :meth:`close`)
    so the bar is finished before other output is printed."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None,
                 delay: float = 0.5, width: int | None = None, verbose: bool = False,
                 clock: Callable[[], float] = time.monotonic, refresh_per_second: float = 4.0):
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            try:
                enabled = bool(self.stream.isatty())
            except Exception:
                enabled = False
        self.enabled = enabled
        self.delay = delay
        self.verbose = verbose
        self._width = width
        self._clock = clock
        self._refresh = refresh_per_second
        self._lock = threading.RLock()
        self._t0 = clock()
        self._last = self._t0      # time of the previous report
        self._levels: list[_Level] = []
        self._snap: tuple = ()     # copy of the levels, read by the drawing thread without a lock
        self._progress = None
        self._task = None
        self._closed = False
        self._timer: threading.Timer | None = None
        if self.enabled and delay > 0:
            self._timer = threading.Timer(delay, self._start)
            self._timer.daemon = True
            self._timer.start()

    # -- callback -------------------------------------------------------------------
    def __call__(self, label: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        with self._lock:
            if self._closed:
                return
            now = self._clock()
            self._update(str(label), int(done), int(total or 0), now)
            self._last = now
            self._snap = tuple(_Level(x.label, x.done, x.total, x.t0) for x in self._levels)
            if self._progress is None and (self._clock() - self._t0 >= self.delay):
                self._start()
            self._push()

    def _update(self, label: str, done: int, total: int, now: float) -> None:
        levels = self._levels
        for i, lv in enumerate(levels):
            if lv.label == label:
                for child in levels[i + 1:]:
                    self._finished_line(child, now)
                del levels[i + 1:]
                lv.done, lv.total = done, total
                if lv.finished and i > 0:
                    self._finished_line(lv, now)  # kept (as done) until its parent reports
                return
        if levels and levels[-1].finished:
            old = levels.pop()
            # first seen part-way: its work began with the unit it replaces (nested in it)
            if levels or done > 0:
                self._finished_line(old, now)
            t0 = old.t0 if done > 0 and not levels else (self._last if done > 0 else now)
        else:
            t0 = now if done == 0 else (self._last if levels else self._t0)
        levels.append(_Level(label, done, total, t0))

    def _finished_line(self, lv: _Level, now: float) -> None:
        if not self.verbose or lv.printed:
            return
        lv.printed = True
        counts = f"{lv.done}/{lv.total}" if lv.total > 0 else str(lv.done)
        self._print(f"{lv.label}: {counts} in {max(0.0, now - lv.t0):.1f} s")

    def _print(self, line: str) -> None:
        if self._progress is not None:
            self._progress.console.print(line, markup=False, highlight=False)
            return
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except Exception:
            pass

    # -- what is shown --------------------------------------------------------------
    def stats(self, now: float | None = None) -> dict | None:
        """The bar's state: label, done (nested progress as a fraction), total, elapsed,
        rate (per second, None while unknown), eta (seconds, None while unknown), child.
        Takes no lock (rich's refresh thread calls it while the statement reports)."""
        levels = self._snap
        if not levels:
            return None
        now = self._clock() if now is None else now
        root = levels[0]
        done = float(root.done)
        child = None
        if len(levels) > 1:
            c = levels[-1]
            if root.total > 0 and levels[1].total > 0:
                done += min(1.0, levels[1].done / levels[1].total)
            child = f"{c.label} {c.done}/{c.total}" if c.total > 0 else f"{c.label} {c.done}"
        if root.total > 0:
            done = min(done, float(root.total))
        elapsed = max(0.0, now - root.t0)
        rate = done / elapsed if done > 0 and elapsed > 0 else None
        eta = (root.total - done) / rate if rate and root.total > 0 else None
        return {"label": root.label, "done": done, "total": root.total, "elapsed": elapsed,
                "rate": rate, "eta": eta, "child": child, "count": root.done}

    def status_line(self, now: float | None = None) -> str:
        """The bar's text without the bar itself (what the columns show)."""
        st = self.stats(now)
        if st is None:
            return ""
        if st["total"] > 0:
            pct = 100.0 * st["done"] / st["total"]
            eta = f" < {_fmt_duration(st['eta'])}" if st["eta"] is not None else " < ?"
            text = f"{st['label']}  {st['count']}/{st['total']}  {pct:3.0f}%  {_fmt_duration(st['elapsed'])}{eta}"
        else:
            text = f"{st['label']}  {st['count']}  {_fmt_duration(st['elapsed'])}"
        text += f"  {_fmt_rate(st['rate'])}"
        return text + (f"  · {st['child']}" if st["child"] else "")

    # -- drawing (rich) -------------------------------------------------------------
    def _start(self) -> None:
        with self._lock:
            if self._closed or self._progress is not None or not self._levels:
                return
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn

            bar = self
            console = Console(file=self.stream, force_terminal=True, width=self._width,
                              highlight=False, soft_wrap=False)
            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(bar_width=None),
                _StatsColumn(bar), console=console, transient=False, auto_refresh=True,
                refresh_per_second=self._refresh, redirect_stdout=False, redirect_stderr=False,
                expand=True)
            self._task = self._progress.add_task("", total=None)
            self._push()
            self._progress.start()

    def _push(self) -> None:
        if self._progress is None:
            return
        st = self.stats()
        if st is None:
            return
        self._progress.update(self._task, description=st["label"], completed=st["done"],
                              total=st["total"] if st["total"] > 0 else None)

    def close(self) -> None:
        """Stop the bar (drawing its last state) so other output starts on a fresh line."""
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
            if self._progress is not None:
                self._push()
                self._progress.stop()
                self._progress = None

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _stats_column_class():
    from rich.progress import ProgressColumn
    from rich.text import Text

    class StatsColumn(ProgressColumn):
        """counts, percent, elapsed < ETA, rate and the nested unit, from the bar's own
        clock (so they move between callbacks)."""

        def __init__(self, bar: ProgressBar):
            super().__init__()
            self.bar = bar

        def render(self, task) -> Text:
            line = self.bar.status_line()
            label = self.bar.stats()
            head = (label or {}).get("label", "")
            return Text(line[len(head):].lstrip() if line.startswith(head) else line)

    return StatsColumn


def _StatsColumn(bar: ProgressBar):
    return _stats_column_class()(bar)


@contextlib.contextmanager
def no_echo(stream=None) -> Iterator[None]:
    """Turn off the terminal's echo while a statement runs (a no-op when `stream`, stdin by
    default, is not a terminal). Keys typed meanwhile stay queued for the next prompt."""
    stream = stream if stream is not None else sys.stdin
    try:
        import termios

        fd = stream.fileno()
        if not stream.isatty():
            raise OSError
        old = termios.tcgetattr(fd)
    except (ImportError, OSError, ValueError, AttributeError):
        yield
        return
    new = list(old)
    new[3] &= ~termios.ECHO
    try:
        termios.tcsetattr(fd, termios.TCSANOW, new)
    except Exception:
        yield
        return
    try:
        yield
    finally:
        try:
            termios.tcsetattr(fd, termios.TCSANOW, old)
        except Exception:
            pass


def null_progress(label: str, done: int, total: int) -> None:
    """A callback that ignores progress."""
