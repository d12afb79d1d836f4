"""VACUUM [probe set]: compact a probe set's descriptor matrix and rebuild its indexes.

``DROP MODEL`` only tombstones the model's descriptor columns (nothing is rewritten, see
:mod:`zooql.methods.probelog.descriptors`); VACUUM reclaims the space:

1. columns no catalog row names (an interrupted PROBE) are tombstoned too;
2. the segments are rewritten into one without the tombstoned columns, streamed in slabs
   (bounded memory, :func:`zooql.methods.probelog.segio.write_compacted`) to a temporary
   file that is fsynced and renamed, then published by replacing the manifest;
3. an HNSW index holding deleted entries is rebuilt from the live columns with its own
   parameters and saved as a new generation (files written beside, ``CURRENT.json``
   replaced).

Column ids do not change, so the catalog is not touched. Readers keep working throughout:
they hold open descriptors of the segments they are reading; an interrupt (Ctrl-C, kill)
before a manifest or ``CURRENT.json`` is replaced leaves the previous state, and the
temporary files are removed by the next write.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

from zooql.methods.probelog import store as S
from zooql.plan.nodes import Operator, Rows

COLUMNS = ["probe_set", "segments_before", "segments_after", "dead_logits", "bytes_before", "bytes_after",
           "bytes_reclaimed", "indexes_rebuilt"]
TYPES = ["VARCHAR"] + ["BIGINT"] * 6 + ["VARCHAR"]


def vacuum_probe_set(ctx, ps: dict) -> tuple:
    """Compact one probe set's matrix and rebuild its indexes; returns its result row."""
    files = S.ProbeSetFiles(ctx.store, ps)
    dm = S.open_matrix(files)
    S.delete_orphan_columns(ctx.con, ps, dm)
    st = dm.compact()
    rebuilt = []
    for kind in S.INDEX_KINDS:
        if not files.has_index(kind):
            continue
        old = S.load_index(files, kind)
        if old._deleted.size:  # deleted entries still in the graph: rebuild without them
            S.build_index(ctx, files, dm, kind, like=old)
            rebuilt.append(kind)
    return (ps["name"], st["segments_before"], st["segments_after"], st["dead_columns"], st["bytes_before"],
            st["bytes_after"], st["bytes_before"] - st["bytes_after"], ", ".join(rebuilt) or None)


@dataclass(frozen=True)
class Vacuum(Operator):
    """Compacts the descriptor segments of the named probe sets and rebuilds their indexes."""

    probe_sets: tuple = ()
    writes: ClassVar[bool] = True
    short_writes: ClassVar[bool] = True   # no catalog write at all: files only, under the writer lock

    def explain_params(self):
        return {"probe_sets": list(self.probe_sets), "rewrite": "segments without deleted logits",
                "indexes": "rebuilt when they hold deleted logits"}

    def run(self, ctx, inputs):
        t0 = time.perf_counter()
        rows = []
        for name in self.probe_sets:
            ps = S.probe_set_row(ctx.con, name)
            if ps is not None:
                rows.append(vacuum_probe_set(ctx, ps))
        freed = sum(r[6] for r in rows)
        msg = (f"vacuumed {len(rows)} probe set{'s' if len(rows) != 1 else ''}: reclaimed "
               f"{_size(freed)} in {time.perf_counter() - t0:.2f} s")
        return Rows(COLUMNS, rows, message=msg, types=TYPES)


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover
