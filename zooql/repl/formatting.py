"""Rendering of statement results as an aligned table, CSV or JSON.

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

MODES = ("table", "csv", "json")

NULL = "NULL"
MAX_CELL_WIDTH = 60

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


def format_cell(v: Any, *, max_width: int | None = MAX_CELL_WIDTH) -> str:
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


def format_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *,
                 max_width: int | None = MAX_CELL_WIDTH, footer: bool = True) -> str:
    """Aligned columns under a header, numbers right-aligned, then ``(N rows)``."""
    rows = [tuple(r) for r in rows]
    ncols = len(columns)
    cells = [[format_cell(v, max_width=max_width) for v in r] for r in rows]
    header = [format_cell(c, max_width=max_width) for c in columns]
    numeric = []
    for j in range(ncols):
        vals = [r[j] for r in rows if j < len(r) and r[j] is not None]
        numeric.append(bool(vals) and all(_is_numeric(v) for v in vals))
    widths = [_width(h) for h in header]
    for r in cells:
        for j, c in enumerate(r[:ncols]):
            widths[j] = max(widths[j], _width(c))

    def pad(s: str, j: int, right: bool) -> str:
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
        n = len(rows)
        lines.append(f"({n} row{'s' if n != 1 else ''})")
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


def format_json(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A JSON array with one object per row; NaN/Infinity become null."""
    objs = [{c: _json_safe(v) for c, v in zip(columns, r)} for r in rows]
    return json.dumps(objs, default=_json_default, ensure_ascii=False, indent=2)


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


def render(result: Any, mode: str = "table") -> str:
    """The text to print for one result ('' when there is nothing to show).

    Results without columns (ADD MODEL, SET, ...) print their message. In table mode
    a result with columns prints the table and then its message, if any; in csv and
    json modes only the data is printed, so the output stays machine-readable.
    """
    columns, rows, message = result_parts(result)
    if mode not in MODES:
        raise ValueError(f"unknown output mode {mode!r} (expected one of {', '.join(MODES)})")
    if not columns:
        return message or ""
    if mode == "csv":
        return format_csv(columns, rows)
    if mode == "json":
        return format_json(columns, rows)
    if columns == ["plan"]:  # EXPLAIN output: one operator per line, never truncated
        return "\n".join(str(r[0]) for r in rows)
    text = format_table(columns, rows)
    if message:
        text += "\n" + message
    return text


def render_split(result: Any, mode: str = "table") -> tuple[str, str]:
    """(data, note): the result's rows rendered in `mode`, and its message. Callers
    print the note with the data in table mode and aside (stderr) in csv/json mode."""
    columns, rows, message = result_parts(result)
    if mode not in MODES:
        raise ValueError(f"unknown output mode {mode!r} (expected one of {', '.join(MODES)})")
    if not columns:
        return "", message or ""
    if mode == "csv":
        return format_csv(columns, rows), message or ""
    if mode == "json":
        return format_json(columns, rows), message or ""
    if columns == ["plan"]:  # EXPLAIN output: one operator per line, never truncated
        return "\n".join(str(r[0]) for r in rows), message or ""
    return format_table(columns, rows), message or ""


def format_elapsed(seconds: float | None) -> str:
    if seconds is None:
        return "Time: ?"
    if seconds < 1:
        return f"Time: {seconds * 1000:.1f} ms"
    if seconds < 120:
        return f"Time: {seconds:.3f} s"
    m, s = divmod(seconds, 60)
    return f"Time: {int(m)} min {s:.1f} s"
