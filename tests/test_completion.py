"""Collaborative probing: PROBE ... SAMPLE p PERCENT, low-rank completion, fold-in, REFRESH DESCRIPTORS."""
import os

import numpy as np
import pytest

from zooql.methods.probelog import completion as CP
from zooql.errors import BindError
from zooql.testing.zoo import save_linear as _save_linear

torch = pytest.importorskip("torch")

GREY = "WITH (input_size = 8, channels = 1, mean = (0.5), std = (0.5))"


# ---- numerics --------------------------------------------------------------------------------------------

def _lowrank(n, p, r, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, r)) @ rng.normal(size=(r, p))


def test_completion_recovers_low_rank_matrix_from_30_percent():
    X = _lowrank(1500, 200, 6)
    M = np.random.default_rng(1).random(X.shape) < 0.3
    C, V = CP.complete(np.where(M, X, np.nan), M, rank=12, iters=20, reg=0.01)
    err = np.linalg.norm((C - X)[~M]) / np.linalg.norm(X[~M])
    assert err < 0.05, err                        # stated tolerance: 5% relative error on the missing entries
    np.testing.assert_allclose(C[M], X[M], rtol=1e-4, atol=1e-4)   # observed entries are kept
    assert V.shape == (200, 12)


def test_fold_in_matches_full_refit():
    X = _lowrank(1200, 150, 5, seed=2)
    M = np.random.default_rng(3).random(X.shape) < 0.3
    _, V, _, _ = CP.fit_als(X[:1000], M[:1000], rank=10, iters=20, reg=0.01)
    folded = CP.fold_in(X[1000:], M[1000:], V, reg=0.01)
    C, _ = CP.complete(np.where(M, X, np.nan), M, rank=10, iters=20, reg=0.01)
    _, mu, sd = CP.standardize_rows(X[1000:], M[1000:])
    refit = (C[1000:] - mu[:, None]) / sd[:, None]
    assert np.linalg.norm(folded - refit) / np.linalg.norm(refit) < 0.05
    truth = (X[1000:] - mu[:, None]) / sd[:, None]
    assert np.linalg.norm((folded - truth)[~M[1000:]]) / np.linalg.norm(truth[~M[1000:]]) < 0.08


def test_ridge_penalty_is_constant_per_factor():
    # one factor, two probes observed: u = (z . f) / (f . f + reg), whatever the number observed
    F = np.array([[1.0], [0.0], [2.0]])
    Z = np.array([[1.0, 0.0, 0.0], [1.0, 5.0, 0.0]])
    Mask = np.array([[True, True, False], [True, False, False]])
    u = CP._ridge_solve(Mask, Z, F, 1.0)
    np.testing.assert_allclose(u[:, 0], [0.5, 0.5], rtol=1e-6)       # 1 / (1 + 1) for both rows
    assert CP._ridge_solve(np.zeros((1, 3), bool), np.zeros((1, 3)), F, 1.0)[0, 0] == 0.0


def test_select_params_uses_only_observed_entries():
    rng = np.random.default_rng(4)
    X = _lowrank(400, 120, 4, seed=4) + 0.05 * rng.normal(size=(400, 120))
    M = rng.random(X.shape) < 0.4
    kw = dict(ranks=(2, 4, 8), regs=(0.1, 1.0), iters=10)
    best, table = CP.select_params(np.where(M, X, np.nan), M, **kw)
    best2, table2 = CP.select_params(np.where(M, X, 1e6), M, **kw)   # unobserved entries changed
    assert table == table2 and best == best2
    assert len(table) == 6 and best["rmse"] == min(t[2] for t in table)
    rmse = {(r, g): e for r, g, e in table}
    assert best["rank"] >= 4                      # rank 2 cannot fit a rank-4 matrix
    assert rmse[(2, 1.0)] > 2 * rmse[(4, 1.0)]


def test_sample_mask_reproducible_and_per_model():
    a = CP.sample_mask(200, 25, 7, 1)
    assert a.sum() == 50
    np.testing.assert_array_equal(a, CP.sample_mask(200, 25, 7, 1))
    assert not np.array_equal(a, CP.sample_mask(200, 25, 7, 2))
    assert not np.array_equal(a, CP.sample_mask(200, 25, 8, 1))


# ---- through the language -------------------------------------------------------------------------------

N_BASE, N_COPIES = 3, 4


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    """N_BASE base models (4 logits each) and N_COPIES logit-permuted copies of each (+ one spare
    copy of base 0 for fold-in); perm[name][i] = base logit of the model's logit i."""
    d = tmp_path_factory.mktemp("copies")
    rng = np.random.default_rng(0)
    files, perm = {}, {}
    bases = [(rng.normal(size=(4, 64)) / 8, rng.normal(size=4) / 10) for _ in range(N_BASE)]
    for b, (w, bias) in enumerate(bases):
        for c in range(N_COPIES + (1 if b == 0 else 0)):
            name = f"m{b}_{c}" if c < N_COPIES else "late"
            p = rng.permutation(4)
            files[name] = _save_linear(w[p], bias[p], d / f"{name}.pt")
            perm[name] = (b, p)
    np.save(d / "probes.npy", rng.integers(0, 256, (80, 8, 8), dtype=np.uint8))
    return d, files, perm


def _add(hub, files, names):
    for n in names:
        hub.execute(f"ADD MODEL 'torchscript:{files[n]}' AS {n} {GREY}")


def _mask(hub, model):
    with hub.store.read() as con:
        r = con.execute("SELECT k.mask_file, k.n_observed FROM probe_masks k JOIN models m ON m.id = k.model_id "
                        "WHERE m.name = ?", [model]).fetchone()
    return np.load(os.path.join(hub.path, r[0])), r[1]


def _top1_correct(hub, perm, model, top=1):
    b, p = perm[model]
    ok = 0
    for i in range(4):
        res = hub.execute(f"FIND LOGITS LIKE {model}.logit[{i}] TOP {top}")
        mi, li = res.columns.index("model"), res.columns.index("logit")
        hit = res.rows[0]
        bb, pp = perm[hit[mi]]
        ok += int(bb == b and pp[hit[li]] == p[i])
    return ok


def test_probe_sample_mask_completion_find_refresh(hub, copies):
    d, files, perm = copies
    names = [n for n in files if n != "late"]
    _add(hub, files, names)
    hub.execute(f"CREATE PROBE SET ps FROM '{d}/probes.npy'")
    # a few fully probed anchors, the rest sampled
    hub.execute("PROBE MODELS WHERE name IN ('m0_0', 'm1_0', 'm2_0') WITH ps")
    plan = hub.explain("PROBE WITH ps SAMPLE 30 PERCENT SEED 5")
    assert "CompleteDescriptors:" in plan and "method=als" in plan and "mode=fit" in plan
    assert "sample_pct=30" in plan and "forward_passes=216" in plan     # 9 models x 24 probes
    res = hub.execute("PROBE WITH ps SAMPLE 30 PERCENT SEED 5")
    assert "completed descriptors of 9 sampled models" in res.message
    m, k = _mask(hub, "m1_2")
    assert m.shape == (80,) and k == m.sum() == 24
    # reproducible: same seed and model id -> same mask
    with hub.store.read() as con:
        mid = con.execute("SELECT id FROM models WHERE name = 'm1_2'").fetchone()[0]
    np.testing.assert_array_equal(m, CP.sample_mask(80, 30, 5, mid))
    with hub.store.read() as con:
        raw = con.execute("SELECT raw_file FROM probe_runs WHERE model_id = ?", [mid]).fetchone()[0]
    x = np.load(os.path.join(hub.path, raw))
    assert np.isfinite(x[m]).all() and np.isnan(x[~m]).all()

    # FIND still matches the permuted copies, and says which results were completed
    sampled = [n for n in names if not n.endswith("_0")]
    correct = sum(_top1_correct(hub, perm, n) for n in sampled)
    assert correct >= 0.9 * 4 * len(sampled), correct
    res = hub.execute("FIND LOGITS LIKE m0_1.logit[0] TOP 12")
    assert res.columns[-1] == "observed"
    obs = {r[1]: r[-1] for r in res.rows}
    assert all(v == 1.0 for n, v in obs.items() if n.endswith("_0"))
    assert all(v == 0.3 for n, v in obs.items() if not n.endswith("_0"))
    assert "MarkObserved" in hub.explain("FIND LOGITS LIKE m0_1.logit[0]")

    # DESCRIBE shows the observed fraction
    desc = dict((r[0], r[1]) for r in hub.execute("DESCRIBE MODEL m1_2").rows)
    assert "0.30 (24/80 probes observed" in desc["observed_fraction"]
    assert "observed_fraction" not in dict((r[0], r[1]) for r in hub.execute("DESCRIBE MODEL m1_0").rows)

    # incremental: a later model is folded in against the stored factors
    _add(hub, files, ["late"])
    plan = hub.explain("PROBE MODELS WHERE name = 'late' WITH ps SAMPLE 30 PERCENT SEED 5")
    assert "mode=fold-in" in plan
    res = hub.execute("PROBE MODELS WHERE name = 'late' WITH ps SAMPLE 30 PERCENT SEED 5")
    assert res.rows[0][2] == "probed"
    assert _top1_correct(hub, perm, "late") >= 3

    # REFRESH DESCRIPTORS refits everything
    plan = hub.explain("REFRESH DESCRIPTORS WITH PROBES ps OPTIONS (rank = 8, iters = 10, reg = 0.02)")
    assert "CompleteDescriptors:" in plan and "rank=8" in plan and "mode=refit" in plan and "reg=0.02" in plan
    res = hub.execute("REFRESH DESCRIPTORS WITH PROBES ps OPTIONS (rank = 8, iters = 10, reg = 0.02)")
    assert res.rows[0][1] == 10 and "rank=8" in res.message
    with hub.store.read() as con:
        assert con.execute("SELECT rank, iters FROM probe_factors").fetchone() == (8, 10)
        n_cols = con.execute("SELECT count(*) FROM descriptor_columns").fetchone()[0]
    assert n_cols == 4 * 13
    correct = sum(_top1_correct(hub, perm, n) for n in sampled + ["late"])
    assert correct >= 0.9 * 4 * (len(sampled) + 1), correct
    # a later REFRESH reuses the stored parameters ...
    assert "rank=8" in hub.explain("REFRESH DESCRIPTORS WITH PROBES ps") and \
        "reg=0.02" in hub.explain("REFRESH DESCRIPTORS WITH PROBES ps")
    # ... except the penalty of factors fitted before it was constant (reg then meant reg x n_observed)
    with hub.store.write() as con:
        con.execute("UPDATE probe_factors SET penalty = NULL")
    plan = hub.explain("REFRESH DESCRIPTORS WITH PROBES ps")
    assert "rank=8" in plan and f"reg={CP.DEFAULT_REG:g}" in plan
    # dropping a sampled model removes its mask
    hub.execute("DROP MODEL late")
    with hub.store.read() as con:
        assert con.execute("SELECT count(*) FROM probe_masks").fetchone()[0] == 9


def test_sample_and_refresh_errors(hub, copies):
    d, files, _ = copies
    _add(hub, files, ["m0_0"])
    hub.execute(f"CREATE PROBE SET ps FROM '{d}/probes.npy'")
    with pytest.raises(BindError, match="0 < p <= 100"):
        hub.execute("PROBE WITH ps SAMPLE 0 PERCENT")
    with pytest.raises(BindError, match="only applies to SAMPLE"):
        hub.execute("PROBE WITH ps SEED 3")
    hub.execute("PROBE WITH ps")
    with pytest.raises(BindError, match="no sampled runs"):
        hub.execute("REFRESH DESCRIPTORS WITH PROBES ps")
    with pytest.raises(BindError, match="unknown REFRESH DESCRIPTORS option"):
        hub.execute("REFRESH DESCRIPTORS WITH PROBES ps OPTIONS (rnak = 3)")
