"""RANK ... OPTIONS (draws = k): the target's LIMIT sample redrawn with seeds s, s+1, ...,
Eq. 11 averaged over the draws with its spread; the cosine / JSD ablations of Eq. 8."""
import math

import numpy as np
import pytest

import zooql
from zooql.methods.dcd import conductance as D
from zooql.errors import BindError


def _softmin2(d0, d1, gamma=5.0):
    e0, e1 = math.exp(-gamma * d0), math.exp(-gamma * d1)
    return e0 / (e0 + e1), e1 / (e0 + e1)


def test_rank_models_draws_hand_computed():
    # one model "m", sources A (rank 1 of 2) and B (rank 2 of 2)
    sources = {"A": {"m": [1.0, 1.0], "n": [1.0, 1.0]}, "B": {"m": [2.0, 1.0], "n": [2.0, 1.0]}}
    scores = {"A": {"m": 0.9, "n": 0.1}, "B": {"m": 0.1, "n": 0.9}}
    # draw 1: v = (1, 1): alpha = (.5, .5); D(A) = 0, D(B) = .5 |1 - 2| / 1 = .5
    wA, wB = _softmin2(0.0, 0.5)
    r1 = wA * 1 + wB * 2
    # draw 2: v = (2, 1): alpha = softmax(2 (2, 1) / sqrt 5); D(A) = alpha_0 |2 - 1| / 2, D(B) = 0
    a0 = 1 / (1 + math.exp(2 * (1 - 2) / math.sqrt(5)))
    wA2, wB2 = _softmin2(a0 / 2, 0.0)
    r2 = wA2 * 1 + wB2 * 2
    targets = [{"m": [1.0, 1.0], "n": [1.0, 1.0]}, {"m": [2.0, 1.0], "n": [2.0, 1.0]}]
    out = {r["model"]: r for r in D.rank_models_draws(targets, sources, scores)}
    assert out["m"]["draws"] == pytest.approx([r1, r2])
    assert out["m"]["predicted_rank"] == pytest.approx((r1 + r2) / 2)
    assert out["m"]["rank_std"] == pytest.approx(abs(r1 - r2) / 2)        # population std of two values
    assert out["m"]["weights"]["A"] == pytest.approx((wA + wA2) / 2)
    # n has the mirrored ranks: 3 - r per draw; m is better in draw 1, n in draw 2? (r1 < 1.5 < r2)
    assert out["n"]["draws"] == pytest.approx([3 - r1, 3 - r2])
    assert r1 < 1.5 < r2 and out["m"]["positions"] == (1, 2) == out["n"]["positions"]
    # one draw is rank_models itself
    one = D.rank_models_draws(targets[:1], sources, scores)
    assert [(r["model"], r["predicted_rank"], r["rank_std"]) for r in one] == \
        [(r["model"], pytest.approx(r["predicted_rank"]), 0.0) for r in D.rank_models(targets[0], sources, scores)]


def test_cosine_and_jsd_ablations_hand_computed():
    assert D.cosine_distance([1.0, 0.0], [1.0, 1.0]) == pytest.approx(1 - 1 / math.sqrt(2))
    # p = (1, 0), q = (1/2, 1/2): m = (3/4, 1/4); JSD = 1/2 KL(p||m) + 1/2 KL(q||m)
    want = 0.5 * math.log(1 / 0.75) + 0.5 * (0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25))
    assert D.js_divergence([2.0, 0.0], [3.0, 3.0]) == pytest.approx(want)
    assert D.js_divergence([1.0, 2.0], [2.0, 4.0]) == pytest.approx(0.0)     # scale-free, symmetric
    assert D.task_divergence("dcd", [1.0, 1.0], [2.0, 1.0]) == pytest.approx(0.5)
    # rank_models with an ablation uses it in place of Eq. 8
    t = {"m": [1.0, 0.0]}
    src = {"A": {"m": [1.0, 1.0]}, "B": {"m": [1.0, 0.1]}}
    r = D.rank_models(t, src, {"A": {"m": 1.0}, "B": {"m": 1.0}}, kind="cosine")[0]
    assert r["divergences"]["A"] == pytest.approx(1 - 1 / math.sqrt(2))
    with pytest.raises(ValueError, match="unknown divergence"):
        D.task_divergence("l2", [1.0], [1.0])


# ---- through the language, on tiny random-init open_clip models --------------------------------

pytest.importorskip("torch")
pytest.importorskip("open_clip")
pytest.importorskip("captum")
from test_dcd_lang import _setup, files  # noqa: E402,F401  (module fixture: tiny models and images)


def test_rank_draws_through_the_language(tmp_path, files):  # noqa: F811
    hub = zooql.connect(tmp_path / "hub")
    _setup(hub, files)                              # target: tgt FROM IMAGES (3 images) LIMIT 2 (seed 0)
    q = "RANK MODELS FOR TASK tgt USING CONDUCTANCE OPTIONS (steps = 4, draws = 3)"
    plan = hub.explain(q).splitlines()
    assert plan[0].endswith("draws=3")
    assert plan[1].startswith("  Conductance: task=tgt role=target images=2 steps=4 models=3 cached=0 new=3 passes=24 "
                              "est_time=~") and plan[1].endswith(" est_basis=prior draw=0 seed=0")
    assert plan[2].startswith("  Conductance: task=tgt#draw1 role=target images=2") and plan[2].endswith("draw=1 seed=1")
    assert plan[3].endswith("draw=2 seed=2") and "task=s1 role=source" in plan[4]
    res = hub.execute(q)
    assert res.columns[-2:] == ["rank_std", "positions"] and "mean over 3 draws" in res.message
    with hub.store.read() as con:
        vec = {(m, t): np.asarray(v) for m, t, v in con.execute("SELECT model, task, vector FROM dcd_vectors")
               .fetchall()}
        images = {t: sorted(q for (q,) in con.execute("SELECT query_id FROM task_queries WHERE task = ?", [t])
                            .fetchall()) for t in ("tgt",)}
    assert len(images["tgt"]) == 2
    ms = ["r1", "v1", "v2"]
    scores = {"s1": {"v1": 0.5, "v2": 0.7, "r1": 0.6}, "s2": {"v1": 0.9, "v2": 0.1, "r1": 0.3}}
    srcs = {s: {m: vec[(m, s)] for m in ms} for s in ("s1", "s2")}
    per = [{r["model"]: r["predicted_rank"] for r in D.rank_models({m: vec[(m, t)] for m in ms}, srcs, scores)}
           for t in ("tgt", "tgt#draw1", "tgt#draw2")]
    for row in res.rows:
        preds = [p[row[1]] for p in per]
        assert row[2] == pytest.approx(np.mean(preds), abs=1e-4)
        assert row[7] == pytest.approx(np.std(preds), abs=1e-4)
    # the draws differ from each other (3 images, 2 per draw), and a rerun computes nothing
    assert len({tuple(vec[("v1", t)].round(8)) for t in ("tgt", "tgt#draw1", "tgt#draw2")}) > 1
    again = hub.execute(q)
    assert again.rows == res.rows and "0 computed" in again.message
    # draws = 1 is the plain RANK
    assert hub.execute("RANK MODELS FOR TASK tgt USING CONDUCTANCE OPTIONS (steps = 4)").columns[-1] == "sources"
    with pytest.raises(BindError, match="redraws the target's random sample; create the target with"):
        hub.execute("RANK MODELS FOR TASK s1 USING CONDUCTANCE SOURCES (s2) OPTIONS (steps = 4, draws = 2)")
    hub.execute(f"CREATE TASK all3 FROM IMAGES '{files}/tgt' LIMIT 3")
    with pytest.raises(BindError, match="takes all 3 images of its folder"):
        hub.execute("RANK MODELS FOR TASK all3 USING CONDUCTANCE SOURCES (s1, s2) OPTIONS (draws = 2)")
    with pytest.raises(BindError, match="option draws must be an integer >= 1"):
        hub.execute("RANK MODELS FOR TASK tgt USING CONDUCTANCE OPTIONS (draws = 0)")
    hub.close()


# ---- the paper's metrics (App. F.2, Eq. 54-55, as read in zooql.runtime.ranking) ------------

def test_paper_metrics_hand_computed():
    from zooql.runtime.ranking import ndcg5_paper, tau5_paper
    from zooql.methods.modellens.metrics import kendall_tau_at_k, ndcg_at_k

    true = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])        # true order: m0 .. m6
    pred = np.array([0.5, 0.9, 0.1, 0.8, 0.2, 0.7, 0.0])        # predicted order: m1 m3 m5 m0 m4 | m2 m6
    # true relevance: m0 5, m1 4, m2 3, m3 2, m4 1; predicted top-5 = m1, m3, m5, m0, m4
    disc = [1 / math.log2(i + 2) for i in range(5)]
    dcg = (2 ** 4 - 1) * disc[0] + (2 ** 2 - 1) * disc[1] + 0 * disc[2] + (2 ** 5 - 1) * disc[3] + (2 - 1) * disc[4]
    idcg = sum((2 ** r - 1) * d for r, d in zip((5, 4, 3, 2, 1), disc))
    assert ndcg5_paper(true, pred) == pytest.approx(dcg / idcg)
    lin = (4 * disc[0] + 2 * disc[1] + 5 * disc[3] + 1 * disc[4]) / sum(r * d for r, d in zip((5, 4, 3, 2, 1), disc))
    assert ndcg_at_k(true, pred, 5) == pytest.approx(lin)          # the project's linear gains differ
    assert ndcg5_paper(true, true) == pytest.approx(1.0)
    # intersection = {m1, m3, m0, m4}; pairs (true vs pred order): (m0,m1) discordant,
    # (m0,m3) d, (m0,m4) concordant (.5 > .2), (m1,m3) c, (m1,m4) c, (m3,m4) c -> (4 - 2) / 6
    assert tau5_paper(true, pred) == pytest.approx(2 / 6)
    assert kendall_tau_at_k(true, pred, 5) == pytest.approx(2 / 6)
    # two models in the intersection: the paper's tau is +-1, the project's (LOVM) floor gives 0
    # (8 models: true top-5 m0..m4, predicted top-5 m5 m6 m7 m1 m0 -> intersection {m1, m0}, swapped)
    t2 = np.array([0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    p2 = np.array([0.5, 0.6, 0.0, 0.1, 0.2, 0.9, 0.8, 0.7])
    assert tau5_paper(t2, p2) == pytest.approx(-1.0) and kendall_tau_at_k(t2, p2, 5) == 0.0
