"""PROBE's store-and-commit path: finished models are stored and committed in groups, on a
writer thread, while the next models run.

A *commit group* is the models that finished within ``probe_commit_interval`` seconds
(default :data:`DEFAULT_INTERVAL`; 0: one group per model), or within :data:`COMMIT_SPAN`
times the last group's commit when that is longer (a slow, loaded disk or CPU). For each group the writer
thread, in this order:

1. writes the raw logits of the group's fully probed models as **one** file
   ``raw/g<first descriptor column>.npy`` (float32 ``[n_probes, sum of their logits]``,
   written beside and renamed, fsynced); sampled runs (``SAMPLE p PERCENT``) keep a file
   of their own (``raw/m<id>.npy`` and its mask), since REFRESH DESCRIPTORS rewrites them;
2. appends the group's descriptor columns to the matrix as one segment
   (:meth:`~zooql.methods.probelog.descriptors.DescriptorMatrix.append_columns`);
3. commits the catalog rows in one short read-write transaction: ``probe_runs`` (with
   ``raw_col``, where each model's logits start in the group file), ``descriptor_columns``,
   ``probe_raw_files`` (the group file's size and SHA-256, compared by CHECK HUB) and
   ``probe_masks``. Only this step holds the catalog's write connection;
4. adds the columns to the HNSW index in memory (saved at the end of the statement).

Each model is all there or not at all. A kill loses the groups not committed yet: the one
collecting (at most one interval of work, or COMMIT_SPAN commits' worth on a slow machine),
the one the writer is writing and at most one queued behind it (the queue holds one group: the driver waits rather than run further ahead
of the disk; when the disk keeps up, as measured, only the collecting group is at risk). What they left
on disk (a group file, matrix columns) no catalog row names; the next PROBE with the probe
set deletes it before it starts, and skips every committed model.

The forward passes and the writer overlap: fsync, DuckDB and most of numpy release the GIL.
The driver thread never touches the catalog while the writer runs (the statement's
connections are the writer's until :meth:`GroupWriter.close`).
"""
from __future__ import annotations

import hashlib
import io
import os
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

#: Default ``probe_commit_interval`` in seconds: a kill loses at most about this much work
#: (plus the group being written); each commit costs one fsynced file, one segment and one
#: DuckDB transaction (~0.1-0.2 s on a loaded disk), so shorter intervals cost throughput.
DEFAULT_INTERVAL = 1.0
#: A group also lasts at least this many times the writer's last commit (wall seconds): on a
#: loaded machine a commit can take a large part of a second, and 1 s groups would then spend
#: a large share of the CPU on commits; this keeps the writer under about 1/COMMIT_SPAN of it.
#: (``probe_commit_interval = 0`` still commits every model alone.)
COMMIT_SPAN = 10.0


@dataclass
class Finished:
    """One model's checked result, waiting for its group's commit."""

    model: dict
    raw: np.ndarray              # float32 [n_probes, L] (NaN at unobserved probes of a sampled run)
    desc: np.ndarray             # descriptors [n_probes, L]
    mask: np.ndarray | None      # observed probes of a sampled run
    completion: str | None
    seconds: float
    device: str | None


class GroupWriter:
    """Collects :class:`Finished` models into commit groups and stores/commits each group on
    a writer thread (see the module docstring). ``add`` on the driver as models finish,
    ``close`` once at the end (also after an interrupt: it commits what finished)."""

    def __init__(self, ctx, ps: dict, files, dm, *, interval: float, sample_pct=None, sample_seed=None,
                 index=None):
        self.ctx, self.ps, self.files, self.dm = ctx, ps, files, dm
        self.interval = float(interval)
        self.sample_pct, self.sample_seed = sample_pct, sample_seed
        self.index = index
        self.index_dirty = False
        self.committed = 0
        self.groups = 0
        self.writer_seconds = 0.0    # time the writer thread spent storing and committing
        self.last_commit_seconds = 0.0   # wall time of the writer's last group
        self._pending: list[Finished] = []
        self._last = time.perf_counter()
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None   # the writer's failure, not raised yet
        self._previous: list | None = None
        self._failed = False     # once a group failed nothing more is committed (its transaction
                                 # is left open, uncommitted, for the statement to roll back)

    # ---- driver side ---------------------------------------------------------------------
    def add(self, item: Finished) -> None:
        self._raise_error()
        self._pending.append(item)
        if self.interval <= 0 or time.perf_counter() - self._last >= self.due():
            self._submit()

    def due(self) -> float:
        """Seconds the collecting group lasts: the interval, or COMMIT_SPAN times the last
        commit's wall time when that is longer."""
        return max(self.interval, COMMIT_SPAN * self.last_commit_seconds)

    def close(self) -> None:
        """Commit what is collected, wait for the writer, raise its error if it failed."""
        try:
            self._submit()
        finally:
            if self._thread is not None:
                self._join()
        self._raise_error()

    def _join(self) -> None:
        """Stop the writer after its queued groups. A second Ctrl-C waits too (a commit takes
        a fraction of a second): the statement must not end while the writer holds its
        connection."""
        interrupted = sent = False
        while True:
            try:
                if not sent:
                    self._queue.put(None)
                    sent = True
                self._thread.join()
                break
            except KeyboardInterrupt:
                interrupted = True
        self._thread = None
        if interrupted:
            raise KeyboardInterrupt

    def _submit(self) -> None:
        if not self._pending:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="zooql-probe-writer", daemon=True)
            self._thread.start()
        group = self._pending
        # blocks while the writer still holds a queued group; a Ctrl-C meanwhile keeps the group
        # collected, and close() submits it (the writer skips a group it was handed twice)
        self._queue.put(group)
        self._pending = []
        self._last = time.perf_counter()

    def _raise_error(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    # ---- writer thread ---------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            group = self._queue.get()
            if group is None:
                return
            if self._failed or group is self._previous:
                continue
            self._previous = group
            t0 = time.perf_counter()
            try:
                self._commit(group)
            except BaseException as exc:   # handed to the driver (add / close raise it)
                self._failed, self._error = True, exc
            self.last_commit_seconds = time.perf_counter() - t0
            self.writer_seconds += self.last_commit_seconds

    def _commit(self, group: list[Finished]) -> None:
        from zooql.methods.probelog.store import save_npy

        ps, files, root = self.ps, self.files, str(self.files.store.path)
        start = self.dm.next_column_id
        full = [f for f in group if f.mask is None]
        group_rel, group_row = None, None
        if full:
            group_rel = f"{ps['dir']}/raw/g{start:012d}.npy"
            raw = full[0].raw if len(full) == 1 else np.concatenate([f.raw for f in full], axis=1)
            group_row = (group_rel, int(raw.shape[1])) + _write_npy(os.path.join(root, group_rel), raw)
        for f in group:
            if f.mask is not None:
                save_npy(files.sub("raw", f"m{f.model['id']}.npy"), f.raw)
                save_npy(files.sub("raw", f"m{f.model['id']}.mask.npy"), f.mask)
        block = group[0].desc if len(group) == 1 else np.concatenate([f.desc for f in group], axis=1)
        first, _ = self.dm.append_columns(block)
        if first != start:   # single writer (the hub's lock): the matrix cannot move under us
            from zooql.errors import StorageError

            raise StorageError(f"descriptor matrix {self.dm.path} was appended to by another writer")
        runs, masks, col, raw_col = [], [], first, 0
        for f in group:
            mid, n = f.model["id"], f.desc.shape[1]
            if f.mask is None:
                runs.append((mid, col, n, group_rel, raw_col, f.device, f.seconds))
                raw_col += n
            else:
                runs.append((mid, col, n, f"{ps['dir']}/raw/m{mid}.npy", None, f.device, f.seconds))
                masks.append([ps["id"], mid, float(self.sample_pct), int(self.sample_seed or 0), int(f.mask.sum()),
                              f"{ps['dir']}/raw/m{mid}.mask.npy", f.completion])
            col += n
        self._insert(runs, masks, group_row)
        self.committed += len(group)
        self.groups += 1
        if self.index is not None:   # columns enter the HNSW index once committed
            self.index.add(block.T.astype(np.float32), np.arange(first, col, dtype=np.int64), num_threads=1)
            self.index_dirty = True

    def _insert(self, runs: list[tuple], masks: list[list], group_row: tuple | None) -> None:
        """The group's catalog rows, in one short read-write transaction."""
        import pyarrow as pa

        ps, ctx = self.ps, self.ctx
        cols = list(zip(*runs))
        tbl = pa.table({"model_id": pa.array(cols[0], pa.int32()), "first_col": pa.array(cols[1], pa.int64()),
                        "n_cols": pa.array(cols[2], pa.int64()), "raw_file": pa.array(cols[3], pa.string()),
                        "raw_col": pa.array(cols[4], pa.int64()), "device": pa.array(cols[5], pa.string()),
                        "seconds": pa.array(cols[6], pa.float64())})
        con = ctx.begin_write()
        con.execute("SELECT 1").fetchall()  # finish any pending result (register refuses otherwise)
        con.register("_zooql_probe_runs", tbl)
        try:
            con.execute("INSERT INTO probe_runs (probe_set_id, model_id, first_col, n_cols, raw_file, raw_col, device, "
                        "seconds) SELECT ?, model_id, first_col, n_cols, raw_file, raw_col, device, seconds "
                        "FROM _zooql_probe_runs", [ps["id"]])
            con.execute("INSERT INTO descriptor_columns SELECT ?, r.first_col + i.i, r.model_id, i.i "
                        "FROM _zooql_probe_runs r, LATERAL (SELECT unnest(range(r.n_cols)) AS i) i", [ps["id"]])
        finally:
            con.unregister("_zooql_probe_runs")
        if group_row is not None:
            con.execute("INSERT INTO probe_raw_files (probe_set_id, file, n_cols, bytes, sha256) VALUES (?, ?, ?, ?, ?)",
                        [ps["id"], *group_row])
        if masks:
            con.executemany("INSERT INTO probe_masks (probe_set_id, model_id, sample_pct, seed, n_observed, "
                            "mask_file, completion) VALUES (?, ?, ?, ?, ?, ?, ?)", masks)
        ctx.commit()


def _write_npy(path: str, arr: np.ndarray) -> tuple[int, str]:
    """Write ``arr`` as .npy beside ``path``, fsync, rename; (bytes, SHA-256) of the file."""
    from pathlib import Path

    from zooql.storage.hub import atomic_write_bytes

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr, dtype=np.float32), allow_pickle=False)
    data = buf.getvalue()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_bytes(Path(path), data)
    return len(data), hashlib.sha256(data).hexdigest()
