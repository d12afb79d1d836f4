"""A progress-bar callback for long statements.

``hub.execute(text, progress=cb)`` calls ``cb(label, done, total)`` as work advances
(``total <= 0`` when unknown). :class:`ProgressBar` draws one self-overwriting line on
stderr, tqdm-style::

    embedding cifar10-test  |###########---------|  5400/10000  54%  [0:12 < 0:10, 450.0/s]

It stays silent for work that finishes within ``delay`` seconds, redraws at most every
``min_interval`` seconds, never writes when the stream is not a terminal (unless
forced), and is safe to call from worker threads.
"""
from __future__ import annotations

import shutil
import sys
import threading
import time
from typing import Callable, TextIO

ProgressCallback = Callable[[str, int, int], None]


def _fmt_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _fmt_rate(rate: float) -> str:
    if rate >= 100:
        return f"{rate:.0f}/s"
    if rate >= 1:
        return f"{rate:.1f}/s"
    if rate > 0:
        return f"{1 / rate:.1f}s/it"
    return "?/s"


class ProgressBar:
    """Callable ``(label, done, total)`` that draws a progress line on `stream`.

    Use as a context manager (or call :meth:`close`) so the line is finished before
    other output is printed.
    """

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None,
                 delay: float = 0.5, min_interval: float = 0.1, width: int | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            try:
                enabled = bool(self.stream.isatty())
            except Exception:
                enabled = False
        self.enabled = enabled
        self.delay = delay
        self.min_interval = min_interval
        self._width = width
        self._clock = clock
        self._lock = threading.Lock()
        self._t0 = clock()
        self._label: str | None = None
        self._label_t0 = self._t0
        self._last_draw = 0.0
        self._last_len = 0
        self._drawn = False  # a line is on screen (not yet ended with a newline)
        self._pending: tuple[str, int, int] | None = None

    # -- callback -----------------------------------------------------------
    def __call__(self, label: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        with self._lock:
            now = self._clock()
            if label != self._label:
                if self._drawn:
                    self._finish_line()
                self._label = label
                self._label_t0 = now
                self._last_draw = 0.0
            self._pending = (label, int(done), int(total or 0))
            finished = total and total > 0 and done >= total
            if now - self._t0 < self.delay and not self._drawn:
                return  # quick work: do not draw at all
            if not finished and now - self._last_draw < self.min_interval:
                return
            self._draw(now)
            if finished:
                self._finish_line()

    # -- drawing ------------------------------------------------------------
    def _columns(self) -> int:
        if self._width:
            return self._width
        return max(40, shutil.get_terminal_size((80, 24)).columns - 1)

    def render(self, label: str, done: int, total: int, elapsed: float) -> str:
        cols = self._columns()
        rate = done / elapsed if elapsed > 0 else 0.0
        if total > 0:
            frac = min(1.0, max(0.0, done / total))
            eta = (total - done) / rate if rate > 0 else None
            counts = f"{done}/{total}"
            stats = f"{counts} {frac * 100:3.0f}% [{_fmt_duration(elapsed)}"
            stats += f" < {_fmt_duration(eta)}" if eta is not None and done < total else ""
            stats += f", {_fmt_rate(rate)}]"
            label_w = min(len(label), max(10, cols // 3))
            bar_w = cols - label_w - len(stats) - 6
            if bar_w >= 5:
                fill = int(round(frac * bar_w))
                bar = "|" + "#" * fill + "-" * (bar_w - fill) + "|"
                line = f"{label[:label_w]}  {bar}  {stats}"
            else:
                line = f"{label[:label_w]}  {stats}"
        else:
            line = f"{label}  {done} [{_fmt_duration(elapsed)}, {_fmt_rate(rate)}]"
        return line[:cols]

    def _draw(self, now: float) -> None:
        if self._pending is None:
            return
        label, done, total = self._pending
        line = self.render(label, done, total, now - self._label_t0)
        pad = " " * max(0, self._last_len - len(line))
        try:
            self.stream.write("\r" + line + pad)
            self.stream.flush()
        except Exception:
            return
        self._last_len = len(line)
        self._last_draw = now
        self._drawn = True

    def _finish_line(self) -> None:
        if self._drawn:
            try:
                self.stream.write("\n")
                self.stream.flush()
            except Exception:
                pass
        self._drawn = False
        self._last_len = 0
        self._pending = None

    def close(self) -> None:
        """End the progress line (drawing its last state) so other output starts on a
        fresh line."""
        if not self.enabled:
            return
        with self._lock:
            if self._drawn:
                self._draw(self._clock())
                self._finish_line()

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def null_progress(label: str, done: int, total: int) -> None:
    """A callback that ignores progress."""
