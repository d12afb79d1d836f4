"""Collaborative probing (ProbeLog, Kahana et al., Eq. 6): low-rank completion of logit responses.

With ``PROBE ... SAMPLE p PERCENT`` every model runs on a random ``p`` % of the probes.
The matrix ``X`` [all logits of the hub x probes] then has missing entries; logit
responses are strongly correlated across models, so ``X`` is close to low rank and the
missing entries are filled in by a factorisation ``Z ~ U V^T`` fitted on the observed
entries only, where ``Z`` is ``X`` with every row (logit) standardised by the mean and
standard deviation of its observed entries.  Fully probed models are rows too: they
anchor the factors.

* :func:`fit_als` -- alternating ridge regressions (ALS): ``U`` given ``V`` row by row
  over each row's observed probes, then ``V`` given ``U`` probe by probe, with a
  constant ridge penalty ``reg`` on every factor vector (the MAP / softImpute-ALS form,
  Hastie et al. 2015).  Rows are unit-variance, so one value works for any sampling
  rate: on the benchmark hubs (240 and 960 models) the penalty chosen on held-out
  *observed* entries (:func:`select_params`) was 2.5 at every p from 5 to 50 %, while the
  former count-scaled penalty (ALS-WR, ``reg x n_observed``) needed a different value per
  rate (0.05 at 5 %, 0.02 at 10 %).
* :func:`select_params` -- rank / penalty chosen by the error on a random share of the
  observed entries held out from the fit (never on unobserved ground truth).
* :func:`fold_in` -- a model added later is completed against the stored probe factors
  ``V`` without refitting: each of its rows solves one ridge regression.
* :func:`complete_rows` -- observed entries are kept, missing ones predicted; the
  descriptors are then z-normalised as usual (:func:`zooql.methods.probelog.kernels.zscore_columns`).

Defaults (``DEFAULT_*``) come from ``benchmarks/collab_probing.py`` (see the dated
"Collaborative probing" sections of ``benchmarks/RESULTS.md``, 2026-12-01): penalty 2.5
(constant), 30 iterations (instead of 15: +0.01-0.02 top-1 at 5-10 % sampled), rank 16
(validation picked 16 at 5 %, 32-48 at >= 10 % on the 960-model hub; 16 is kept as the
safe default for small hubs -- pass ``OPTIONS (rank = 32)`` on large ones).

The probe factors live beside the catalog in ``<probe set dir>/completion/``
(``factors.npy`` + ``factors.json``, each written atomically).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from zooql.plan.nodes import Operator, Rows
from zooql.errors import ExecutionError

#: Defaults chosen by benchmarks/collab_probing.py (see benchmarks/RESULTS.md, 2026-12-01).
DEFAULT_RANK = 16
DEFAULT_ITERS = 30
DEFAULT_REG = 2.5
#: meaning of ``reg`` in stored factors written by this version (older ones: "per-observation")
PENALTY = "constant"
METHOD = "als"
OPTIONS = ("rank", "iters", "reg")


# ==== the numerics ============================================================================

def standardize_rows(X: np.ndarray, M: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row mean / std over the observed entries. Returns (Z zero-filled, mean, std)."""
    X = np.asarray(X, dtype=np.float64)
    M = np.asarray(M, dtype=bool)
    cnt = np.maximum(M.sum(1), 1)
    Xf = np.where(M, X, 0.0)
    mean = Xf.sum(1) / cnt
    var = (np.where(M, (X - mean[:, None]) ** 2, 0.0)).sum(1) / cnt
    std = np.sqrt(var)
    std = np.where(std > 1e-12, std, 1.0)
    Z = np.where(M, (X - mean[:, None]) / std[:, None], 0.0)
    return Z.astype(np.float32), mean, std


def _ridge_solve(Mask: np.ndarray, Z: np.ndarray, F: np.ndarray, reg: float) -> np.ndarray:
    """For every row i: argmin_u sum_{j observed} (Z_ij - u.F_j)^2 + reg * |u|^2.

    ``Mask`` [n, p] bool, ``Z`` [n, p] zero at missing, ``F`` [p, r]. Batched over rows.
    A row without observations gets u = 0."""
    n, _ = Mask.shape
    r = F.shape[1]
    out = np.empty((n, r), np.float64)
    FF = (F[:, :, None] * F[:, None, :]).reshape(F.shape[0], r * r).astype(np.float32)
    lam = max(float(reg), 1e-6) * np.eye(r)
    F32 = F.astype(np.float32)
    step = max(1, min(n, 20000))
    for s in range(0, n, step):
        m = Mask[s:s + step].astype(np.float32)
        G = (m @ FF).reshape(-1, r, r).astype(np.float64) + lam
        b = (Z[s:s + step].astype(np.float32) @ F32).astype(np.float64)
        out[s:s + step] = np.linalg.solve(G, b[:, :, None])[:, :, 0]
    return out


def fit_als(X: np.ndarray, M: np.ndarray, rank: int = DEFAULT_RANK, iters: int = DEFAULT_ITERS,
            reg: float = DEFAULT_REG, seed: int = 0, standardized: bool = False):
    """Fit ``Z ~ U V^T`` on the observed entries of ``X`` (rows = logits, columns = probes).

    ``reg`` is the constant ridge penalty on every row of ``U`` and ``V``.  Returns
    (U [n, r], V [p, r], mean [n], std [n]) with rows standardised first (unless
    ``standardized``: X is already standardised and zero-filled)."""
    M = np.asarray(M, dtype=bool)
    if standardized:
        Z = np.where(M, X, 0).astype(np.float32)
        mean, std = np.zeros(len(Z)), np.ones(len(Z))
    else:
        Z, mean, std = standardize_rows(X, M)
    n, p = Z.shape
    rank = int(max(1, min(rank, n, p)))
    rng = np.random.default_rng(seed)
    V = rng.normal(size=(p, rank)) / np.sqrt(rank)
    MT, ZT = np.ascontiguousarray(M.T), np.ascontiguousarray(Z.T)
    U = np.zeros((n, rank))
    for _ in range(int(iters)):
        U = _ridge_solve(M, Z, V, reg)
        V = _ridge_solve(MT, ZT, U, reg)
    U = _ridge_solve(M, Z, V, reg)
    return U, V, mean, std


def select_params(X: np.ndarray, M: np.ndarray, ranks=(8, 16, 32), regs=(1.0, 2.5, 5.0),
                  iters: int = 15, holdout: float = 0.1, seed: int = 0):
    """Choose (rank, reg) by validation on held-out *observed* entries.

    A random ``holdout`` share of the observed entries of every row with at least 4 of
    them is hidden, the factors are fitted on the rest (rows standardised over the rest)
    and each (rank, reg) of the grid is scored by the RMSE on the hidden entries.  Only
    observed responses are used: nothing here looks at unobserved ground truth.
    Returns ``({"rank", "reg", "rmse"}, [(rank, reg, rmse), ...])``."""
    M = np.asarray(M, dtype=bool)
    rng = np.random.default_rng([int(seed), 0x5E1])
    hold = M & (rng.random(M.shape) < holdout) & (M.sum(1, keepdims=True) >= 4)
    Mt = M & ~hold
    Z, mean, std = standardize_rows(X, Mt)
    Xh = np.where(hold, np.asarray(X, np.float64), 0.0)
    target = ((Xh - mean[:, None]) / std[:, None])[hold]
    table = []
    for rank in ranks:
        for reg in regs:
            U, V, _, _ = fit_als(Z, Mt, rank, iters, reg, seed, standardized=True)
            rows, cols = np.nonzero(hold)
            pred = np.einsum("ij,ij->i", U[rows], V[cols])
            table.append((int(rank), float(reg), float(np.sqrt(np.mean((pred - target) ** 2)))))
    best = min(table, key=lambda t: t[2])
    return {"rank": best[0], "reg": best[1], "rmse": best[2]}, table


def fold_in(X: np.ndarray, M: np.ndarray, V: np.ndarray, reg: float = DEFAULT_REG) -> np.ndarray:
    """Complete new rows against fixed probe factors ``V``; returns the completed
    standardised rows (observed entries kept)."""
    Z, _, _ = standardize_rows(X, M)
    U = _ridge_solve(np.asarray(M, bool), Z, V, reg)
    return complete_rows(Z, M, U, V)


def complete_rows(Z: np.ndarray, M: np.ndarray, U: np.ndarray, V: np.ndarray) -> np.ndarray:
    """Observed entries of ``Z`` kept, missing ones from ``U V^T`` (float32)."""
    pred = (U @ V.T).astype(np.float32)
    return np.where(np.asarray(M, bool), np.asarray(Z, np.float32), pred)


def complete(X, M, rank=DEFAULT_RANK, iters=DEFAULT_ITERS, reg=DEFAULT_REG, seed=0):
    """Fit and fill in one go; returns (completed rows in X's units, V)."""
    U, V, mean, std = fit_als(X, M, rank, iters, reg, seed)
    Z, _, _ = standardize_rows(X, M)
    C = complete_rows(Z, M, U, V)
    return C * std[:, None] + mean[:, None], V


def sample_mask(n_probes: int, pct: float, seed: int, model_id: int) -> np.ndarray:
    """The probes a model sees under SAMPLE pct PERCENT SEED seed: reproducible from the
    seed and the model (its catalog id), a different subset per model, at least 2."""
    k = int(round(n_probes * float(pct) / 100.0))
    k = max(2, min(n_probes, k))
    rng = np.random.default_rng([int(seed), int(model_id), 0x5A4D])
    mask = np.zeros(n_probes, bool)
    mask[rng.choice(n_probes, size=k, replace=False)] = True
    return mask


# ==== stored probe factors =======================================================================

def factors_dir(files) -> str:
    return os.path.join(files.root, "completion")


def load_factors(files) -> tuple[np.ndarray, dict] | None:
    d = factors_dir(files)
    try:
        with open(os.path.join(d, "factors.json")) as f:
            meta = json.load(f)
        V = np.load(os.path.join(d, meta["file"]), allow_pickle=False)
    except (OSError, ValueError, KeyError):
        return None
    if meta.get("penalty") != PENALTY:   # factors of an older version: reg meant reg x n_observed
        meta = dict(meta, reg=DEFAULT_REG, penalty=PENALTY, legacy_reg=meta.get("reg"))
    return V, meta


def save_factors(files, V: np.ndarray, meta: dict) -> None:
    """Atomically write the factors (new file name) and then the json that names them."""
    from pathlib import Path

    from zooql.methods.probelog.store import save_npy
    from zooql.storage.hub import atomic_write_bytes

    d = factors_dir(files)
    os.makedirs(d, exist_ok=True)
    old = load_factors(files)
    name = f"factors-{int(time.time() * 1000)}-{os.getpid()}.npy"
    save_npy(os.path.join(d, name), np.asarray(V, np.float32))
    meta = dict(meta, file=name)
    atomic_write_bytes(Path(os.path.join(d, "factors.json")), json.dumps(meta, indent=1).encode())
    if old is not None and old[1].get("file") != name:
        try:
            os.unlink(os.path.join(d, old[1]["file"]))
        except OSError:
            pass


# ==== catalog: masks =============================================================================

def masks_of(con, ps_id: int) -> dict[int, dict]:
    """model id -> {pct, seed, observed, mask_file} of the sampled runs of a probe set."""
    try:
        rows = con.execute("SELECT model_id, sample_pct, seed, n_observed, mask_file, completion FROM probe_masks "
                           "WHERE probe_set_id = ?", [ps_id]).fetchall()
    except Exception:  # noqa: BLE001 - table missing on an old hub
        return {}
    return {r[0]: {"pct": r[1], "seed": r[2], "observed": r[3], "mask_file": r[4], "completion": r[5]}
            for r in rows}


def factors_row(con, ps_id: int | None) -> dict | None:
    """The catalog's record of the stored probe factors (None: never fitted)."""
    if ps_id is None:
        return None
    cols = ("method", "rank", "reg", "iters", "n_rows", "penalty")
    try:
        r = con.execute(f"SELECT {', '.join(cols)} FROM probe_factors WHERE probe_set_id = ?", [ps_id]).fetchone()
    except Exception:  # noqa: BLE001 -- no table, or a hub not yet written by this version (no penalty column)
        try:
            r = con.execute(f"SELECT {', '.join(cols[:-1])}, NULL FROM probe_factors WHERE probe_set_id = ?",
                            [ps_id]).fetchone()
        except Exception:  # noqa: BLE001
            return None
    if r is None:
        return None
    out = dict(zip(("method", "rank", "reg", "iters", "rows", "penalty"), r))
    if out["penalty"] != PENALTY:  # fitted by an older version: its reg meant reg x n_observed
        out.update(reg=DEFAULT_REG, penalty=PENALTY)
    return out


def has_sampled(con, ps_id: int | None) -> bool:
    if ps_id is None:
        return False
    return bool(masks_of(con, ps_id))


def completion_params(opts: dict | None, meta: dict | None = None) -> dict:
    """rank / iters / reg from OPTIONS, else the stored factors' values, else the defaults."""
    out = {"rank": DEFAULT_RANK, "iters": DEFAULT_ITERS, "reg": DEFAULT_REG}
    if meta:
        out.update({k: meta[k] for k in out if k in meta})
    for k, v in (opts or {}).items():
        out[k] = v
    return out


# ==== refit: all descriptors of a probe set ========================================================

def _load_hub_matrix(ctx, ps: dict, files) -> tuple[list, np.ndarray, np.ndarray]:
    """(runs [(model_id, first, ncols, sampled)], X [logits, probes] with NaN, mask)."""
    from zooql.methods.probelog.store import load_raw

    masks = masks_of(ctx.con, ps["id"])
    rows = ctx.con.execute("SELECT model_id, first_col, n_cols, raw_file, raw_col FROM probe_runs WHERE probe_set_id = ? "
                           "ORDER BY first_col", [ps["id"]]).fetchall()
    runs, blocks = [], []
    for mid, first, ncols, raw, raw_col in rows:
        if not raw:
            continue
        try:
            x = load_raw(str(ctx.store.path), raw, raw_col, ncols)
        except OSError:
            continue
        runs.append((mid, first, ncols, mid in masks))
        blocks.append(np.asarray(x, np.float32).T)
    if not blocks:
        return [], np.zeros((0, ps["n_probes"]), np.float32), np.zeros((0, ps["n_probes"]), bool)
    X = np.concatenate(blocks)
    return runs, X, np.isfinite(X)


def refit(ctx, ps_name: str, params: dict, seed: int = 0) -> tuple[int, int, float]:
    """Fit the factors on every run of the probe set (sampled and full), store them and
    rewrite the descriptors of every sampled model. Returns (models rewritten, rows, seconds)."""
    from zooql.methods.probelog import store as P
    from zooql.methods.probelog.kernels import zscore_columns

    t0 = time.perf_counter()
    ps = P.probe_set_row(ctx.con, ps_name)
    if ps is None:
        raise ExecutionError(f"probe set {ps_name!r} does not exist")
    files = P.ProbeSetFiles(ctx.store, ps)
    runs, X, M = _load_hub_matrix(ctx, ps, files)
    if not runs:
        return 0, 0, 0.0
    U, V, mean, std = fit_als(X, M, params["rank"], params["iters"], params["reg"], seed)
    Z, _, _ = standardize_rows(X, M)
    C = complete_rows(Z, M, U, V)
    save_factors(files, V, {"method": METHOD, "rank": int(V.shape[1]), "iters": int(params["iters"]),
                            "reg": float(params["reg"]), "penalty": PENALTY, "rows": int(X.shape[0]),
                            "n_probes": int(ps["n_probes"]),
                            "observed": float(M.mean()), "fitted_at": time.strftime("%Y-%m-%d %H:%M:%S")})
    con = ctx.begin_write()  # the fit ran without the catalog open read-write
    con.execute("DELETE FROM probe_factors WHERE probe_set_id = ?", [ps["id"]])
    con.execute("INSERT INTO probe_factors (probe_set_id, method, rank, reg, iters, n_rows, penalty) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", [ps["id"], METHOD, int(V.shape[1]), float(params["reg"]),
                                                 int(params["iters"]), int(X.shape[0]), PENALTY])
    dm = P.open_matrix(files)
    P.delete_orphan_columns(con, ps, dm)  # columns of an interrupted earlier run
    index = P.load_index(files) if files.has_index() else None
    old_cols, done, r0 = [], 0, 0
    for mid, first, ncols, sampled in runs:
        r1 = r0 + ncols
        if sampled:
            desc = zscore_columns(C[r0:r1].T)
            start, end = dm.append_columns(desc)
            con.execute("UPDATE probe_runs SET first_col = ? WHERE probe_set_id = ? AND model_id = ?",
                        [start, ps["id"], mid])
            con.execute("DELETE FROM descriptor_columns WHERE probe_set_id = ? AND model_id = ?", [ps["id"], mid])
            con.execute("INSERT INTO descriptor_columns SELECT ?, ? + i, ?, i FROM range(?) t(i)",
                        [ps["id"], start, mid, end - start])
            con.execute("UPDATE probe_masks SET completion = 'refit' WHERE probe_set_id = ? AND model_id = ?",
                        [ps["id"], mid])
            old_cols.append(np.arange(first, first + ncols, dtype=np.int64))
            if index is not None:
                index.add(desc.T.astype(np.float32), np.arange(start, end, dtype=np.int64), num_threads=1)
            done += 1
        r0 = r1
    store = ctx.store

    def after():  # once the new column map has committed, drop the old columns
        if not old_cols:
            return
        cols = np.concatenate(old_cols)
        try:
            dm.delete_columns(cols)
            if index is not None:
                from zooql.methods.probelog import store as ops_find

                index.mark_deleted(cols)
                ops_find.save_index(None, files, index, store=store)
        except Exception:  # noqa: BLE001 - the catalog no longer names them; the next PROBE cleans up
            pass

    ctx.after_commit.append(after)
    return done, int(X.shape[0]), time.perf_counter() - t0


# ==== operators ====================================================================================

@dataclass(frozen=True)
class CompleteDescriptors(Operator):
    """Low-rank completion of sampled probe runs. ``mode``: ``fold-in`` (new sampled
    models were completed against the stored probe factors while probing), ``fit`` (no
    factors yet: fit them on the whole hub after probing) or ``refit`` (REFRESH
    DESCRIPTORS: refit all completed descriptors)."""

    probe_set: str = ""
    method: str = METHOD
    rank: int = DEFAULT_RANK
    iters: int = DEFAULT_ITERS
    reg: float = DEFAULT_REG
    mode: str = "fold-in"
    child: Operator | None = None
    writes: ClassVar[bool] = True
    short_writes: ClassVar[bool] = True

    def explain_params(self):
        return {"probe_set": self.probe_set, "method": self.method, "rank": self.rank, "reg": self.reg,
                "iters": self.iters if self.mode != "fold-in" else None, "mode": self.mode}

    def run(self, ctx, inputs):
        params = {"rank": self.rank, "iters": self.iters, "reg": self.reg}
        child = inputs[0] if inputs else None
        need_fit = self.mode in ("fit", "refit") or (
            child is not None and any(str(r[2]).endswith("(provisional)") for r in child.rows))
        if self.mode == "refit" or (need_fit and child is not None and any(
                str(r[2]).startswith("probed") for r in child.rows)):
            n, rows, sec = refit(ctx, self.probe_set, params)
            msg = (f"completed descriptors of {n} sampled model{'s' if n != 1 else ''} of {self.probe_set}: "
                   f"{METHOD} rank={self.rank} reg={self.reg:g} iters={self.iters} over {rows} logits "
                   f"({sec:.2f}s)")
            if child is not None:
                rows_out = [(r[0], r[1], "probed (completed)" if str(r[2]).startswith("probed") else r[2])
                            + tuple(r[3:]) for r in child.rows]
                return Rows(child.columns, rows_out, message=(child.message + "; " if child.message else "") + msg)
            return Rows(["probe_set", "models", "logits", "rank", "reg", "iters", "seconds"],
                        [(self.probe_set, n, rows, self.rank, self.reg, self.iters, round(sec, 3))], message=msg)
        return child if child is not None else Rows(["probe_set"], [])


@dataclass(frozen=True)
class MarkObserved(Operator):
    """Adds ``observed`` (fraction of the probe set each result's model really ran on;
    1.0 = fully probed, below 1 = the descriptor was completed) to FIND results."""

    probe_set: str = ""
    child: Operator | None = None

    def explain_params(self):
        return {"probe_set": self.probe_set, "column": "observed"}

    def run(self, ctx, inputs):
        from zooql.methods.probelog import store as P

        res = inputs[0]
        ps = P.probe_set_row(ctx.con, self.probe_set)
        masks = masks_of(ctx.con, ps["id"]) if ps else {}
        frac = {}
        for mid, info in masks.items():
            name = ctx.con.execute("SELECT name FROM models WHERE id = ?", [mid]).fetchone()
            if name:
                frac[name[0]] = round(info["observed"] / ps["n_probes"], 4)
        mi = list(res.columns).index("model")
        rows = [tuple(r) + (frac.get(r[mi], 1.0),) for r in res.rows]
        n_c = sum(1 for r in rows if r[-1] < 1.0)
        msg = res.message
        if n_c:
            msg = (msg + "; " if msg else "") + (f"{n_c} result{'s' if n_c != 1 else ''} from sampled models "
                                                 f"with completed descriptors (observed < 1)")
        types = res.types + ["DOUBLE"] if res.types is not None else None
        return Rows(list(res.columns) + ["observed"], rows, message=msg, types=types)
