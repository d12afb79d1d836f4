"""Rendering of statement results as an aligned table, one field per line, Markdown,
CSV or JSON.

Tables fit the terminal width they are given (``width``): when the natural width is too
wide the widest columns are shrunk first (their cells cut with an ellipsis) and short
columns stay whole; with no width (output not a terminal) nothing is cut. ``line``,
``markdown``, ``csv`` and ``json`` never cut a value.

Works on anything shaped like :class:`zooql.Result` (``columns``, ``rows``,
``message``); nothing here depends on prompt_toolkit.
"""
from __future__ import annotations

import base64
import csv
import datetime as _dt
import decimal
import io
import json
import math
from typing import Any, Iterable, Sequence

MODES = ("table", "line", "markdown", "csv", "json")

NULL = "NULL"
MIN_COLUMN_WIDTH = 8  # a shrunk column keeps at least this many characters

try:
    from prompt_toolkit.utils import get_cwidth as _cwidth

    def _width(s: str) -> int:
        return sum(_cwidth(ch) for ch in s)

except ImportError:  # pragma: no cover
    def _width(s: str) -> int:
        return len(s)


# ---------------------------------------------------------------------------
# Cell values
# ---------------------------------------------------------------------------

def format_float(v: float) -> str:
    """Floats with 4 decimals; very small or very large magnitudes in 4 significant
    digits of scientific notation (so 1e-7 does not show as 0.0000)."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    if v == 0:
        return "0.0000" if math.copysign(1.0, v) > 0 else "-0.0000"
    a = abs(v)
    if 1e-4 <= a < 1e15:
        return f"{v:.4f}"
    return f"{v:.4g}"


def _is_array_like(v: Any) -> bool:
    return hasattr(v, "tolist") and hasattr(v, "shape")


def format_cell(v: Any, *, max_width: int | None = None) -> str:
    """One value as table text: None as NULL, floats to 4 decimals, no newlines."""
    s = _cell_text(v)
    s = s.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\r").replace("\t", " ")
    if max_width and _width(s) > max_width:
        s = _truncate(s, max_width)
    return s


def _truncate(s: str, width: int) -> str:
    out = []
    w = 0
    for ch in s:
        cw = _width(ch)
        if w + cw > width - 1:
            break
        out.append(ch)
        w += cw
    return "".join(out) + "…"


def _cell_text(v: Any) -> str:
    if v is None:
        return NULL
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return format_float(v)
    if isinstance(v, (int, str)):
        return str(v)
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return f"<{len(bytes(v))} bytes>"
    if isinstance(v, (_dt.datetime, _dt.date, _dt.time)):
        return v.isoformat(sep=" ") if isinstance(v, _dt.datetime) else v.isoformat()
    if _is_array_like(v):
        try:
            if getattr(v, "ndim", 1) == 0:
                return _cell_text(v.item())
            return _seq_text(v.tolist(), size=getattr(v, "size", None))
        except Exception:
            return str(v)
    if hasattr(v, "item") and callable(v.item):  # numpy scalar
        try:
            return _cell_text(v.item())
        except Exception:
            return str(v)
    if isinstance(v, (list, tuple)):
        return _seq_text(list(v))
    if isinstance(v, dict):
        try:
            return json.dumps(v, default=_json_default, ensure_ascii=False)
        except Exception:
            return str(v)
    return str(v)


def _seq_text(items: list, size: int | None = None, limit: int = 8) -> str:
    shown = [_cell_text(x) for x in items[:limit]]
    if len(items) > limit:
        shown.append(f"… ({size if size is not None else len(items)} items)")
    return "[" + ", ".join(shown) + "]"


def _is_numeric(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float, decimal.Decimal)):
        return True
    if _is_array_like(v) and getattr(v, "ndim", 1) == 0:
        return True
    return type(v).__module__ == "numpy" and hasattr(v, "dtype") and v.dtype.kind in "iuf"


# ---------------------------------------------------------------------------
# Whole results
# ---------------------------------------------------------------------------

def result_parts(result: Any) -> tuple[list[str], list[tuple], str | None]:
    columns = list(getattr(result, "columns", None) or [])
    rows = getattr(result, "rows", None)
    if rows is None:
        try:
            rows = result.fetchall()
        except Exception:
            rows = []
    rows = [tuple(r) for r in (rows or [])]
    message = getattr(result, "message", None)
    return columns, rows, message


def fit_widths(natural: Sequence[int], width: int | None, sep: int = 3) -> list[int]:
    """Column widths that fit `width` characters (separators included): the widest
    columns are cut down to a common cap, columns narrower than the cap stay whole, no
    column goes below MIN_COLUMN_WIDTH (or its natural width). None: no limit."""
    natural = list(natural)
    if width is None or not natural:
        return natural
    budget = width - sep * (len(natural) - 1)
    if sum(natural) <= budget:
        return natural
    lo, hi = 0, max(natural)
    while lo < hi:  # the largest cap whose total fits
        cap = (lo + hi + 1) // 2
        if sum(min(w, max(cap, MIN_COLUMN_WIDTH)) for w in natural) <= budget:
            lo = cap
        else:
            hi = cap - 1
    cap = max(lo, MIN_COLUMN_WIDTH)
    return [min(w, cap) for w in natural]


def format_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *,
                 width: int | None = None, footer: bool = True) -> str:
    """Aligned columns under a header, numbers right-aligned, then ``(N rows)``; fitted
    to `width` characters (see :func:`fit_widths`), nothing cut when `width` is None."""
    rows = [tuple(r) for r in rows]
    ncols = len(columns)
    cells = [[format_cell(v) for v in r] for r in rows]
    header = [format_cell(c) for c in columns]
    numeric = []
    for j in range(ncols):
        vals = [r[j] for r in rows if j < len(r) and r[j] is not None]
        numeric.append(bool(vals) and all(_is_numeric(v) for v in vals))
    natural = [_width(h) for h in header]
    for r in cells:
        for j, c in enumerate(r[:ncols]):
            natural[j] = max(natural[j], _width(c))
    widths = fit_widths(natural, width)

    def pad(s: str, j: int, right: bool) -> str:
        if _width(s) > widths[j]:
            s = _truncate(s, widths[j])
        fill = " " * (widths[j] - _width(s))
        return fill + s if right else s + fill

    lines = []
    if ncols:
        lines.append(" | ".join(pad(h, j, False) for j, h in enumerate(header)).rstrip())
        lines.append("-+-".join("-" * w for w in widths))
        for r in cells:
            r = list(r) + [""] * (ncols - len(r))
            lines.append(" | ".join(pad(c, j, numeric[j]) for j, c in enumerate(r[:ncols])).rstrip())
    if footer:
        lines.append(_footer(len(rows)))
    return "\n".join(lines)


def _footer(n: int) -> str:
    return f"({n} row{'s' if n != 1 else ''})"


def format_lines(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """One field per line (``name = value``, names right-aligned), a blank line between
    rows, like sqlite's and duckdb's ``.mode line``; values are never cut."""
    names = [str(c) for c in columns]
    w = max((_width(n) for n in names), default=0)
    blocks = []
    for r in rows:
        blocks.append("\n".join(" " * (w - _width(n)) + n + " = " + format_cell(v)
                                for n, v in zip(names, r)))
    return "\n\n".join(blocks)


def format_markdown(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table (numbers right-aligned, ``|`` escaped)."""
    rows = [tuple(r) for r in rows]

    def cell(v: Any) -> str:
        return format_cell(v).replace("|", "\\|")

    aligns = []
    for j in range(len(columns)):
        vals = [r[j] for r in rows if j < len(r) and r[j] is not None]
        aligns.append("---:" if vals and all(_is_numeric(v) for v in vals) else "---")
    lines = ["| " + " | ".join(cell(c) for c in columns) + " |", "|" + "|".join(aligns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def format_csv(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, header: bool = True) -> str:
    """RFC 4180 CSV; NULL is an empty field, floats keep full precision."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if header:
        w.writerow(list(columns))
    for r in rows:
        w.writerow([_csv_value(v) for v in r])
    return buf.getvalue().rstrip("\n")


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (int, str)):
        return v
    plain = _to_plain(v)
    if isinstance(plain, (list, dict)):
        return json.dumps(plain, default=_json_default, ensure_ascii=False)
    return plain


def format_json(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, indent: int | None = 2) -> str:
    """A JSON array with one object per row; NaN/Infinity become null. ``indent=None``
    writes it on one line (JSON Lines: one document per statement)."""
    objs = [{c: _json_safe(v) for c, v in zip(columns, r)} for r in rows]
    return json.dumps(objs, default=_json_default, ensure_ascii=False, indent=indent)


def _to_plain(v: Any) -> Any:
    if _is_array_like(v):
        return v.tolist()
    if hasattr(v, "item") and callable(v.item) and type(v).__module__ == "numpy":
        return v.item()
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, (_dt.datetime, _dt.date, _dt.time)):
        return v.isoformat()
    if isinstance(v, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(v)).decode("ascii")
    if isinstance(v, tuple):
        return list(v)
    return v


def _json_safe(v: Any) -> Any:
    v = _to_plain(v)
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, list):
        return [_json_safe(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    return v


def _json_default(v: Any) -> Any:
    plain = _to_plain(v)
    if plain is not v:
        return plain
    return str(v)


def render(result: Any, mode: str = "table", *, width: int | None = None) -> str:
    """The text to print for one result ('' when there is nothing to show).

    Results without columns (ADD MODEL, SET, ...) print their message. In table mode
    a result with columns prints the table and then its message, if any; in the other
    modes only the data is printed, so the output stays machine-readable.
    """
    data, note = render_split(result, mode, width=width)
    if not data:
        return note
    if mode == "table" and note:
        return data + "\n" + note
    return data


def render_split(result: Any, mode: str = "table", *, width: int | None = None,
                 json_lines: bool = False) -> tuple[str, str]:
    """(data, note): the result's rows rendered in `mode`, and its message. Callers
    print the note with the data in table mode and aside (stderr) in the other modes.
    `width` fits tables to a terminal; `json_lines` prints a JSON document on one line."""
    columns, rows, message = result_parts(result)
    if mode not in MODES:
        raise ValueError(f"unknown output mode {mode!r} (expected one of {', '.join(MODES)})")
    if not columns:
        return "", message or ""
    if mode == "csv":
        return format_csv(columns, rows), message or ""
    if mode == "json":
        return format_json(columns, rows, indent=None if json_lines else 2), message or ""
    if mode == "line":
        return format_lines(columns, rows), message or ""
    if mode == "markdown":
        return format_markdown(columns, rows), message or ""
    if columns == ["plan"]:  # EXPLAIN output: one operator per line, never truncated
        return "\n".join(str(r[0]) for r in rows), message or ""
    return format_table(columns, rows, width=width), message or ""


def format_elapsed(seconds: float | None) -> str:
    if seconds is None:
        return "Time: ?"
    if seconds < 1:
        return f"Time: {seconds * 1000:.1f} ms"
    if seconds < 120:
        return f"Time: {seconds:.3f} s"
    m, s = divmod(seconds, 60)
    return f"Time: {int(m)} min {s:.1f} s"
