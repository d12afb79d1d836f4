"""grouped_halving's option ``pool`` (issue 16): near-copy clusters found from the search's
own answers (zooql.methods.hidden_gems.pooled) and the pooled scores at the cuts."""
import numpy as np

from zooql.methods.hidden_gems.discover import discover
from zooql.methods.hidden_gems.grouped import additive_scores, rasch_fit
from zooql.methods.hidden_gems.pooled import collapse, copy_clusters, pair_stats, pooled_scores
from zooql.testing.discover_clusters import clustered_tree


def test_pair_stats_counts_shared_answers_and_disagreements():
    nan = np.nan
    Y = np.array([[1, 0, 1, nan],
                  [1, 1, nan, 0],
                  [nan, 0, 1, 0]])
    n, D = pair_stats(Y)
    assert n.tolist() == [[3, 2, 2], [2, 3, 2], [2, 2, 3]]
    assert D[0, 1] == 1 and D[0, 2] == 0 and D[1, 2] == 1 and D[0, 0] == 0


def _answers_on(X, rows, queries):
    Y = np.full((rows.size, X.shape[1]), np.nan)
    Y[:, queries] = X[np.ix_(rows, queries)]
    return Y


def test_copy_clusters_find_the_lineages_and_link_no_unrelated_pair():
    T = clustered_tree(n_models=300, n_queries=1500, n_lineages=12, seed=4)
    X = T.outcomes.astype(float)
    rng = np.random.default_rng(0)
    top = np.sort(np.argsort(-X.mean(axis=1))[:80])
    q = rng.choice(X.shape[1], 80, replace=False)
    Y = _answers_on(X, top, q)
    m, qq = np.nonzero(~np.isnan(Y))
    theta, b = rasch_fit(top[m], qq, Y[m, qq], X.shape[0], X.shape[1])
    labels = copy_clusters(Y, theta[top], b[q])
    heads = T.head[top]
    for c in np.unique(labels):                       # no cluster mixes two lineages
        assert np.unique(heads[labels == c]).size == 1
    same = heads[:, None] == heads[None, :]
    linked = labels[:, None] == labels[None, :]
    assert linked[same].mean() > 0.8                  # most copy pairs end in one cluster
    # unrelated models, answering the same queries as often, are never linked
    indep = np.flatnonzero(T.kind == "lineage")[:12]
    Yi = _answers_on(X, indep, q)
    assert np.unique(copy_clusters(Yi, theta[indep], b[q])).size == indep.size


def test_collapse_is_the_members_mean_answer():
    nan = np.nan
    Y = np.array([[1, 0, nan], [0, 0, nan], [nan, 1, 1]])
    Z = collapse(Y, np.array([0, 0, 1]))
    assert np.allclose(Z[0, :2], [0.5, 0.0]) and np.isnan(Z[0, 2]) and np.allclose(Z[1, 1:], [1, 1])


def test_pooled_level_ranks_a_many_copy_lineage_above_a_close_singleton():
    # planted, as in grouped_halving's rounds: 26 groups of 16 models, each group answering
    # its own block of 40 queries (difficulty d_q ~ N(0, 0.15)); in 25 of them one member is
    # an exact copy of a lineage at level 0.62, in the last one member is a singleton at 0.58,
    # the other members are unrelated models at 0.40-0.60. The pooled lineage level sees the
    # lineage on 25 blocks, a copy's own additive effect on one: the estimated gap to the
    # singleton (true 0.04) errs about half as much in mean square.
    rng = np.random.default_rng(1)
    n_copies, n_groups, size, t = 25, 26, 16, 40
    Q = n_groups * t
    err_pooled, err_own = [], []
    for rep in range(60):
        d = rng.normal(0, 0.15, Q)
        level = np.r_[np.full(n_copies, 0.62), 0.58, rng.uniform(0.40, 0.60, n_groups * (size - 1))]
        U = rng.random((level.size, Q))
        U[1:n_copies] = U[0]                                 # the copies answer alike
        X = (U < np.clip(level[:, None] + d[None, :], 0, 1)).astype(float)
        Y = np.full_like(X, np.nan)
        others = np.arange(n_copies + 1, level.size).reshape(n_groups, size - 1)
        for g in range(n_groups):
            rows = np.r_[g, others[g]]
            Y[np.ix_(rows, np.arange(g * t, (g + 1) * t))] = X[np.ix_(rows, np.arange(g * t, (g + 1) * t))]
        labels = np.r_[np.zeros(n_copies, dtype=int), np.arange(1, 1 + level.size - n_copies)]
        sc = pooled_scores(Y, labels, lambda Z: additive_scores(Z, 1.0))
        own = additive_scores(Y, 1.0)
        copy = rng.integers(n_copies)
        err_pooled.append((sc[copy] - sc[n_copies] - 0.04) ** 2)
        err_own.append((own[copy] - own[n_copies] - 0.04) ** 2)
        assert np.allclose(sc[:n_copies], sc[0])           # exact copies share the level
    assert np.mean(err_pooled) < 0.7 * np.mean(err_own), (np.mean(err_pooled), np.mean(err_own))


def test_pooled_search_budget_no_repeats_determinism_and_clusters_noted():
    T = clustered_tree(n_models=240, n_queries=1200, n_lineages=12, seed=5)
    X = T.outcomes
    M, Q, B = X.shape[0], X.shape[1], 60 * X.shape[0]
    asked = []

    def oracle(m, q):
        asked.append(m * Q + q)
        return X[m, q]
    res = discover(oracle, M, Q, B, seed=2, strict=True, pool=True)
    assert 0 < res.spent <= B and res.n_evaluated.sum() == res.spent
    pairs = np.concatenate(asked)
    assert np.unique(pairs).size == pairs.size
    again = discover(lambda m, q: X[m, q], M, Q, B, seed=2, pool=True)
    assert again.ranking == res.ranking and np.array_equal(again.n_evaluated, res.n_evaluated)
    note = [n for n in res.notes if n.startswith("pool:")]
    assert len(note) == 1 and not note[0].startswith("pool: 0 clusters")
    off = discover(lambda m, q: X[m, q], M, Q, B, seed=2)
    assert not any(n.startswith("pool:") for n in off.notes)
    # with an anchor every survivor answers one common block once pooling starts
    res_a = discover(lambda m, q: X[m, q], M, Q, B, seed=2, pool=True, anchor=32, strict=True)
    assert res_a.spent <= B

