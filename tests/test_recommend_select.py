"""The validated default of RECOMMEND (zooql.methods.modellens.select) and the LOVM/DCD metrics."""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

import zooql  # noqa: E402
from zooql.methods.modellens import select as S  # noqa: E402
from zooql.methods.modellens.recommender import Records, Recommender, SideInfo  # noqa: E402
from zooql.methods.modellens.metrics import kendall_tau_at_k, ndcg_lovm_at_k  # noqa: E402
from zooql.errors import BindError  # noqa: E402

from test_recommend import fake_embedder  # noqa: E402


# ---- metrics, hand-computed ---------------------------------------------------------------

def test_ndcg_lovm_hand_computed():
    true = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1])
    pred = np.array([6.0, 4.0, 3.0, 2.0, 0.0, 5.0])      # predicted top-5: 0, 5, 1, 2, 3
    g = 2.0 ** true - 1
    # model 5 is not in the true top-5 (0..4): no gain at predicted position 2
    dcg = g[0] / 1 + 0 + g[1] / math.log2(4) + g[2] / math.log2(5) + g[3] / math.log2(6)
    idcg = g[0] / 1 + g[1] / math.log2(3) + g[2] / 2 + g[3] / math.log2(5) + g[4] / math.log2(6)
    assert ndcg_lovm_at_k(true, pred) == pytest.approx(dcg / idcg, abs=1e-12)
    assert ndcg_lovm_at_k(true, pred) == pytest.approx(0.8407, abs=1e-4)
    # a table in percent is read as fractions; the perfect ranking scores 1
    assert ndcg_lovm_at_k(true * 100, pred) == pytest.approx(dcg / idcg, abs=1e-12)
    assert ndcg_lovm_at_k(true, true) == pytest.approx(1.0)
    # nothing of the true top-2 in the predicted top-2
    assert ndcg_lovm_at_k([0.9, 0.8, 0.1, 0.0], [0.0, 0.1, 0.9, 0.8], k=2) == 0.0


def test_tau5_hand_computed():
    true = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1])
    # predicted top-5 = 0, 2, 1, 3, 5; intersection with the true top-5 = {0, 1, 2, 3};
    # pairs over 4 items: 6, one discordant (1, 2) -> (5 - 1) / 6
    pred = np.array([10.0, 8.0, 9.0, 7.0, 0.0, 6.0])
    assert kendall_tau_at_k(true, pred) == pytest.approx(4 / 6)


# ---- the chooser on planted validation lists ----------------------------------------------

def _lists(truths, scores_by_method):
    """[(fold, truth, S)] with S rows in VAL_METHODS order; one list per fold."""
    return [(i, t, np.stack([scores_by_method[m][i] for m in S.VAL_METHODS]))
            for i, t in enumerate(truths)]


def _planted(winner: str, n_lists=8, n=30, seed=0):
    rng = np.random.default_rng(seed)
    truths, by = [], {m: [] for m in S.VAL_METHODS}
    for _ in range(n_lists):
        a, b = rng.standard_normal(n), rng.standard_normal(n)
        t = a + b if winner == "blend" else a
        truths.append(t)
        for j, m in enumerate(S.VAL_METHODS):
            if winner == "blend":
                # modellens sees one half of the truth, avg_rank the other: neither alone is right
                s = a if m == "modellens" else b if m == "avg_rank" else rng.standard_normal(n)
            else:
                s = t + 0.05 * rng.standard_normal(n) if m == winner else rng.standard_normal(n)
            by[m].append(s)
    return _lists(truths, by)


TABLE_KEYS = {*S.VAL_METHODS, "blend", "blend_nested", "chosen"}


@pytest.mark.parametrize("chooser", sorted(S.CHOOSERS))
@pytest.mark.parametrize("winner", ["modellens", "avg_rank", "imagenet", "knn_dataset"])
def test_chooser_picks_the_pure_method_that_is_right(winner, chooser):
    method, weights, table = S.choose(_planted(winner), chooser=chooser)
    assert method == winner and weights == {winner: 1.0}
    assert table[winner]["ndcg5"] == max(v["ndcg5"] for v in table.values())
    assert table["chosen"] == table[winner] and set(table) == TABLE_KEYS


@pytest.mark.parametrize("chooser", sorted(S.CHOOSERS))
def test_chooser_picks_a_blend_when_it_is_right(chooser):
    method, weights, table = S.choose(_planted("blend"), chooser=chooser)
    assert method == "blend" and weights == {"modellens": 0.5, "avg_rank": 0.5}
    assert table["blend_nested"]["ndcg5"] > max(table[m]["ndcg5"] for m in S.VAL_METHODS) + 0.05
    sel = S.Selection(method, weights, table)
    assert sel.describe() == "method=blend weights={modellens: 0.5, avg_rank: 0.5}"


def _inconsistent(n=40, seed=0, noise=2.0):
    """5 validation datasets: ModelLens is perfect on the first and noisy on the others,
    AvgRank is decent everywhere: a blend with ModelLens has the better mean only through
    the first dataset."""
    rng = np.random.default_rng(seed)
    lists = []
    for f in range(5):
        t = rng.standard_normal(n)
        ml = t.copy() if f == 0 else t + noise * rng.standard_normal(n)
        ar = t + 1.0 * rng.standard_normal(n)
        lists.append((f, t, np.stack([ml, ar, rng.standard_normal(n), rng.standard_normal(n)])))
    return lists


def test_lcb_shrinks_to_the_baseline_when_the_validation_datasets_disagree():
    lists = _inconsistent()
    _, _, F = S.validation_matrix(lists, np.eye(4))
    assert F[0, 0] == 1.0 and F[0, 1:].mean() < F[1, 1:].mean()   # premise: one big win
    assert S.choose(lists, chooser="mean")[0] == "blend"          # the mean rule follows it
    assert S.choose(lists, chooser="lcb")[0] == "avg_rank"        # the bound does not
    assert S.choose(lists, chooser="nested")[0] == "avg_rank"
    # the same gain on every dataset is kept
    consistent = [(f, t, np.stack([t, t + np.random.default_rng(f).standard_normal(len(t)), -t, -t]))
                  for f, t, _ in lists]
    assert S.choose(consistent, chooser="lcb")[0] == "modellens"


def test_ties_and_robust_z_keeps_order():
    rng = np.random.default_rng(1)
    t = rng.standard_normal(20)
    lists = [(i, t, np.stack([t] * 4)) for i in range(3)]       # every method is perfect
    assert S.choose(lists, chooser="mean")[0] == "modellens"     # mean rule: ties go to ModelLens
    assert S.choose(lists, chooser="lcb")[0] == "avg_rank"       # no gain over the baseline: keep it
    s = np.array([3.0, -np.inf, 1e9, -101.5, 0.5, -2e6])
    z = S.robust_z(s)
    assert list(np.argsort(-z, kind="stable")[:4]) == [2, 0, 4, 3]
    assert z.max() <= 4 and z[1] == z[5] == -4.0 and z[3] > -4.0


# ---- end to end on a tiny leaderboard -------------------------------------------------------

def _general_table(seed=0, M=20, D=6):
    """score = general ability + small noise: the average rank is (nearly) right everywhere."""
    rng = np.random.default_rng(seed)
    g = rng.standard_normal(M)
    rows = [(f"m{i:02d}", f"d{j}", "acc", 50 + 10 * g[i] + 0.3 * rng.standard_normal())
            for j in range(D) for i in range(M)]
    return Records.from_rows(rows)


def test_validation_is_deterministic_for_a_seed():
    recs = _general_table()
    cfg = Recommender(dim=4, epochs=20, val_epochs=20, seed=3).config
    a = S.validate(recs, SideInfo(), cfg, embedder=fake_embedder)
    b = S.validate(recs, SideInfo(), cfg, embedder=fake_embedder)
    assert a.table == b.table and (a.method, a.weights, a.folds) == (b.method, b.weights, b.folds)
    assert len(a.folds) == 6 and a.lists == 6 and set(a.table) == TABLE_KEYS
    # the general ability is the whole truth here: the average rank is (nearly) right
    assert a.table["avg_rank"]["ndcg5"] > 0.9
    # a subset of folds is drawn from the seed
    cfg2 = Recommender(dim=4, epochs=20, val_epochs=20, seed=3, val_folds=3).config
    c = S.validate(recs, SideInfo(), cfg2, embedder=fake_embedder)
    assert len(c.folds) == 3 and c.folds == S.validate(recs, SideInfo(), cfg2, embedder=fake_embedder).folds
    assert [S.validate(recs, SideInfo(), Recommender(dim=4, epochs=1, seed=s, val_folds=3).config,
                       embedder=fake_embedder).folds for s in range(5)].count(c.folds) < 5


def test_seed_rows_are_modellens_with_another_seed():
    """``modellens@S`` rows (the seed ensemble compared by benchmarks/recommend_chooser.py) are
    ModelLens trained with seed S on the same split: another seed's row differs, the same
    seed's row is the shipped row."""
    recs = _general_table(M=12, D=4)
    cfg = Recommender(dim=4, epochs=15, val_epochs=15, seed=0).config
    lists, _ = S.validation_lists(recs, SideInfo(), cfg, fake_embedder,
                                  methods=S.VAL_METHODS + ("modellens@0", "modellens@1"))
    assert all(Sm.shape[0] == 6 for _, _, Sm in lists)
    assert all(np.allclose(Sm[4], Sm[0]) for _, _, Sm in lists)
    assert not all(np.allclose(Sm[5], Sm[0]) for _, _, Sm in lists)
    assert set(S.seed_models(cfg, fake_embedder, ("avg_rank", "modellens@7"))) == {"modellens@7"}
    assert S.seed_models(cfg, fake_embedder, ("modellens@7",))["modellens@7"].config["seed"] == 7
    assert "modellens@1" not in S.make_baselines(None, fake_embedder, ("avg_rank", "modellens@1"))


def test_a_trained_latent_model_wins_on_planted_latent_structure():
    """Datasets are mixtures of two skills; the description names the mixture. ModelLens
    (attention over the training datasets by description) is right; the average rank and
    the reference dataset are not."""
    rng = np.random.default_rng(0)
    M, D = 24, 8
    U = rng.standard_normal((M, 2))
    mix = np.linspace(0, 1, D)
    words = {}
    rows = []
    for j, w in enumerate(mix):
        v = np.array([1 - w, w])
        for i in range(M):
            rows.append((f"m{i:02d}", f"d{j}", "acc", 50 + 10 * float(U[i] @ v)))
        words[f"d{j}"] = f"mixture {j}"

    def embed(texts):
        out = []
        for t in texts:
            j = int(t.split()[-1])
            ang = mix[j] * math.pi / 2
            v = np.zeros(384, dtype=np.float32)
            v[0], v[1] = math.cos(ang), math.sin(ang)
            out.append(v)
        return np.stack(out)

    recs = Records.from_rows(rows)
    side = SideInfo(dataset_text=words)
    cfg = Recommender(dim=4, epochs=200, val_epochs=200, lr=0.05).config
    sel = S.validate(recs, side, cfg, embedder=embed)
    assert sel.table["modellens"]["ndcg5"] > sel.table["avg_rank"]["ndcg5"] + 0.1
    # the nearest training dataset by description is (nearly) as right as ModelLens on this
    # continuum of mixtures; the lcb rule keeps ModelLens only for a gain that holds across
    # the validation datasets, so either is a right choice -- the wrong baselines are not
    assert sel.method in ("modellens", "blend", "knn_dataset"), sel.table
    assert sel.table["chosen"]["ndcg5"] > sel.table["modellens"]["ndcg5"] - 0.03, sel.table
    assert sel.method != "knn_dataset" or sel.table["knn_dataset"]["ndcg5"] > sel.table["modellens"]["ndcg5"] - 0.03


# ---- through the language -------------------------------------------------------------------

def _hub(tmp_path, recs: Records):
    path = tmp_path / "evals.csv"
    with open(path, "w") as f:
        f.write("model,dataset,metric,score\n")
        for m, d, k, s in recs.rows():
            f.write(f"{m},{d},{k},{s:.4f}\n")
    h = zooql.connect(tmp_path / "hub")
    h.execute(f"IMPORT EVALUATIONS FROM '{path}'")
    return h


def test_train_shows_the_choice_and_using_modellens_forces_the_pure_method(tmp_path, monkeypatch):
    # the chooser itself is tested on planted lists above; here it is pinned to the
    # reference-dataset ranking to check that RECOMMEND applies what TRAIN chose
    real = S.choose
    monkeypatch.setattr(S, "choose", lambda lists: ("imagenet", {"imagenet": 1.0}, real(lists)[2]))
    recs = _general_table()
    h = _hub(tmp_path, recs)
    out = h.execute("TRAIN RECOMMENDER WITH (dim = 4, epochs = 5, val_epochs = 5)")
    assert "validation NDCG@5 (leave-one-dataset-out over 6 of 6 datasets" in out.message
    assert out.message.endswith("chose method=imagenet")
    plan = h.explain("TRAIN RECOMMENDER WITH (dim = 4, epochs = 5, val_epochs = 5)").splitlines()
    assert plan[0].startswith("TrainRecommender: reuse=true with={dim: 4, epochs: 5, val_epochs: 5} "
                              "chosen=imagenet validation={modellens: ")
    assert "blend_nested: " in plan[0]
    # an unseen dataset (no seeds): the default uses the choice, USING modellens does not
    q = "RECOMMEND MODELS FOR DATASET 'new' DESCRIBED AS 'a new benchmark' TOP 20"
    assert h.explain(q).splitlines()[0] == \
        "Recommend: dataset=new metric=acc method=auto top=20 case=text chosen=imagenet"
    assert h.explain(q + " USING modellens").splitlines()[0] == \
        "Recommend: dataset=new metric=acc method=modellens top=20 case=text"
    auto = h.execute(q)
    pure = h.execute(q + " USING modellens")
    assert auto.message.startswith("auto (method=imagenet):") and pure.message.startswith("modellens:")
    # the default's order is the reference dataset's (d0, the most covered, first seen)
    d0 = {m: s for m, d, _, s in recs.rows() if d == "d0"}
    assert [r[1] for r in auto] == sorted(d0, key=d0.get, reverse=True)
    # ... in ModelLens's units: the i-th best gets ModelLens's i-th highest prediction
    assert sorted(r[2] for r in auto) == pytest.approx(sorted(r[2] for r in pure))
    assert all(r[3] is not None and r[3] >= 0 for r in auto)
    # a known dataset and GIVEN seeds use ModelLens itself
    assert h.explain("RECOMMEND MODELS FOR DATASET d1").splitlines()[0].endswith("case=known chosen=modellens")
    assert h.execute("RECOMMEND MODELS FOR DATASET d1 TOP 3").message.startswith("auto (modellens):")
    g = "RECOMMEND MODELS FOR DATASET 'new' GIVEN (m00 = 50, m01 = 60, m02 = 55) TOP 5"
    assert h.execute(g).rows == h.execute(g + " USING modellens").rows
    # EXPLAIN ANALYZE of a RECOMMEND shows the cached choice too
    analyze = [r[0] for r in h.execute("EXPLAIN ANALYZE " + q)]
    assert "trained=false chosen=imagenet" in analyze[1]
    with pytest.raises(BindError, match="val_folds must be 0"):
        h.execute("TRAIN RECOMMENDER WITH (val_folds = 1)")
    h.close()


def test_validate_false_keeps_modellens(tmp_path):
    h = _hub(tmp_path, _general_table())
    out = h.execute("TRAIN RECOMMENDER WITH (dim = 4, epochs = 5, validate = false)")
    assert "chose" not in out.message
    q = "RECOMMEND MODELS FOR DATASET 'new' DESCRIBED AS 'a new benchmark' TOP 5"
    assert h.execute(q).message.startswith("auto (modellens):")
    assert h.execute(q).rows == h.execute(q + " USING modellens").rows
    h.close()


def test_bagged_spreads_a_choice_that_hinges_on_one_validation_dataset():
    lists = _inconsistent()
    w_mean = S.choose_mean(lists)
    w_bag = S.choose_bagged(lists)
    # the mean rule bets everything on the ModelLens blend that one dataset carries; the
    # resamples without that dataset choose otherwise, so the bagged weights keep ModelLens
    # at less than the mean rule gives it and put the rest where the other resamples went
    assert w_mean[0] > 0 and 0 < w_bag[0] < w_mean[0]
    assert w_bag.sum() == pytest.approx(1.0) and (w_bag >= 0).all()
    assert np.count_nonzero(w_bag) > np.count_nonzero(w_mean)
    # deterministic for a seed, and another seed draws other resamples
    assert np.array_equal(w_bag, S.choose_bagged(lists))
    assert any(not np.array_equal(w_bag, S.choose_bagged(lists, seed=s)) for s in range(1, 6))
    method, weights, _ = S.choose(lists, chooser="bagged")
    assert method == "blend" and weights == {m: round(float(x), 4) for m, x in zip(S.VAL_METHODS, w_bag) if x > 0}


def _chooser_module():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    try:
        import recommend_chooser
    finally:
        sys.path.pop(0)
    return recommend_chooser


def test_ens3_row_averages_the_seeds_and_wins_where_seed_noise_is_the_error():
    """benchmarks/recommend_chooser.py's seed-ensemble candidate: each seed's row is the
    truth plus its own noise, so their mean robust z is closer to the truth than any seed,
    and the mean rule on the ens3 rows picks it; prior2se keeps it (a large, steady gain)."""
    rc = _chooser_module()
    rng = np.random.default_rng(1)
    methods = rc.VAL_METHODS + ("modellens@1", "modellens@2")
    inner = []
    for f in range(8):
        t = rng.standard_normal(40)
        seeds = [t + 1.2 * rng.standard_normal(40) for _ in range(3)]
        inner.append((f, t, np.stack([seeds[0], rng.standard_normal(40), rng.standard_normal(40),
                                      rng.standard_normal(40), seeds[1], seeds[2]])))
    rec = {"methods": methods, "inner": inner, "outer": [(t, Sm) for _, t, Sm in inner]}
    rows, _ = rc._rows(rec, ["ens3", "modellens", "modellens@1", "modellens@2"])
    N = np.stack([S._ndcg_rows(t, Sm) for _, t, Sm in rows], axis=1).mean(1)
    assert N[0] > N[1:].max() + 0.03, N
    ens_lists, _ = rc._rows(rec, ["ens3", *rc.BASES])
    assert list(S.choose_mean(ens_lists)) == [1.0, 0.0, 0.0, 0.0]
    assert list(rc.choose_prior2se(ens_lists)) == [1.0, 0.0, 0.0, 0.0]


def test_prior2se_falls_back_to_avg_rank_on_a_gain_from_one_dataset():
    rc = _chooser_module()
    lists = _inconsistent()
    assert S.choose(lists, chooser="mean")[0] == "blend"
    assert list(rc.choose_prior2se(lists)) == [0.0, 1.0, 0.0, 0.0]
