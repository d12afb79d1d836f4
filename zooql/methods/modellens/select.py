"""The validated default of RECOMMEND: ModelLens, a baseline, or a blend of them.

TRAIN RECOMMENDER (and the training a RECOMMEND does on its own) trains ModelLens on all
records and then *validates* it against the baselines by leave-one-dataset-out inside
those records: each validation dataset is hidden in turn, ModelLens (with
``val_epochs`` steps) and the baselines ``avg_rank``, ``imagenet`` (reference-dataset
ranking) and ``knn_dataset`` are fitted on the rest and rank the hidden dataset's models
from its description alone (what an unseen dataset gives), and every (dataset, metric)
list is scored by NDCG@5 (:func:`~zooql.methods.modellens.metrics.ndcg_at_k`).

The candidates are the four pure methods and a **blend**: a convex combination
``sum_j w_j z_j`` of their per-model scores, each first turned into a robust z-score
over the candidate models (median / MAD, squashed into (-4, 4) by a tanh, so that scales
and the "no reference score" sentinels of a baseline do not matter). The weights are
equal on a subset of at least two methods, and the subset (11 of them) is the one with
the best mean validation NDCG@5: a discrete fit, because a fine weight grid overfits the
few validation lists a leaderboard has. The candidate with the best mean validation
NDCG@5 over all validation lists is kept (ties go to ModelLens, then the blend, then the
simpler baselines). The best blend's figure is fitted on those lists (a choice among 11
subsets); the table also shows ``blend_nested``, the blend with its subset chosen on the
other validation datasets only, as an honest reference. Choosing by the nested figure
instead was measured to be worse (it flips between candidates from fold to fold).

Other rules for the same choice are kept for comparison (``CHOOSERS``; all see only the
validation lists): ``lcb`` shrinks to the best baseline unless a candidate's gain over it
has a positive one-standard-error lower bound across the validation datasets, ``wins``
counts per-dataset wins against the best baseline, ``nested`` keeps the mean rule's
choice only if its nested (leave-one-validation-dataset-out) figure beats the baseline,
``bagged`` averages the mean rule's choices over bootstrap resamples of the validation
datasets (a choice that hinges on one or two datasets is spread over the candidates that
win the other resamples). ``benchmarks/recommend_chooser.py`` compares them by a nested
leave-one-dataset-out on the real tables; none beat the mean rule on every table there
(``bagged`` was pre-registered as the new default and then lost 0.022 to it on open_clip;
benchmarks/RESULTS.md), so it stays the default.

The choice applies where it was validated: an unseen dataset ranked without seed scores
(from a description, or from nothing but the prior). A known dataset (matrix completion)
and ``GIVEN`` seeds use ModelLens itself. Everything is deterministic for a seed: the
validation datasets (a random subset of ``val_folds`` when there are more) are drawn
from ``seed``, and ModelLens is trained with it.
"""
from __future__ import annotations

import itertools
import time

import numpy as np

from zooql.methods.modellens.data import Records, SideInfo
from zooql.methods.modellens.selection import Selection  # noqa: F401  (part of this module's API)
from zooql.methods.modellens.metrics import kendall_tau_at_k, ndcg_at_k, ndcg_lovm_at_k

VAL_METHODS = ("modellens", "avg_rank", "imagenet", "knn_dataset")
TIE_ORDER = ("modellens", "blend", "avg_rank", "imagenet", "knn_dataset")
MIN_LIST = 3          # a validation list needs at least this many models


def memo_embedder(embedder):
    """Wrap a text embedder so that every distinct text is embedded once."""
    cache: dict[str, np.ndarray] = {}

    def embed(texts):
        texts = list(texts)
        missing = [t for t in dict.fromkeys(texts) if t not in cache]
        if missing:
            for t, e in zip(missing, embedder(missing)):
                cache[t] = np.asarray(e, dtype=np.float32)
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return np.stack([cache[t] for t in texts])
    return embed


def robust_z(scores) -> np.ndarray:
    """Per-model scores -> robust z-scores: (s - median) / (1.4826 MAD), squashed into
    (-4, 4) by ``4 tanh(z / 4)`` (monotone, so a method's own order is kept; outliers and
    scales do not dominate a blend). Missing scores (non-finite, or a baseline's ``<= -1e5``
    sentinel) get the floor -4."""
    s = np.asarray(scores, dtype=np.float64)
    ok = np.isfinite(s) & (s > -1e5)
    out = np.full(len(s), -4.0)
    if not ok.any():
        return np.zeros(len(s))
    v = s[ok]
    med = float(np.median(v))
    scale = 1.4826 * float(np.median(np.abs(v - med)))
    if scale <= 1e-12:
        scale = float(v.std()) if v.std() > 1e-12 else 1.0
    out[ok] = 4.0 * np.tanh((v - med) / scale / 4.0)
    return out


def blend_candidates(n: int) -> np.ndarray:
    """The blends searched: equal weights on every subset of at least two of ``n`` methods
    (11 for the four methods). A finer weight grid overfits the validation lists (see
    docs/recommend.md)."""
    rows = []
    for r in range(2, n + 1):
        for c in itertools.combinations(range(n), r):
            w = np.zeros(n)
            w[list(c)] = 1.0 / r
            rows.append(w)
    return np.array(rows)


def _ndcg_rows(truth: np.ndarray, P: np.ndarray, k: int = 5) -> np.ndarray:
    """NDCG@k (project definition, as ndcg_at_k) of every row of predictions ``P``."""
    n = len(truth)
    k = min(k, n)
    rel = np.zeros(n)
    rel[np.argsort(-truth, kind="stable")[:k]] = np.arange(k, 0, -1, dtype=np.float64)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    idcg = float(np.sum(np.sort(rel)[::-1][:k] * disc))
    top = np.argsort(-P, axis=1, kind="stable")[:, :k]
    return (rel[top] * disc).sum(1) / idcg if idcg > 0 else np.zeros(len(P))


def make_baselines(reference: str | None = None, embedder=None, names=None) -> dict:
    """The baselines of ``names`` (default: those of VAL_METHODS), unfitted."""
    from zooql.methods.modellens.baselines import BASELINES

    make = {"avg_rank": lambda: BASELINES["avg_rank"](),
            "imagenet": lambda: BASELINES["imagenet"](reference=reference),
            "knn_dataset": lambda: BASELINES["knn_dataset"](text_embedder=embedder),
            "knn_soft": lambda: BASELINES["knn_soft"](text_embedder=embedder)}
    names = [n for n in (VAL_METHODS if names is None else names) if not n.startswith("modellens")]
    return {n: make[n]() for n in names}


def seed_models(config: dict, embedder, names) -> dict:
    """``modellens@S`` entries of ``names``: ModelLens with seed ``S`` (unfitted), so that a
    seed ensemble is compared on the same folds as the shipped candidates."""
    from zooql.methods.modellens.recommender import Recommender

    return {n: Recommender(**{**config, "seed": int(n.split("@", 1)[1])}, text_embedder=embedder)
            for n in names if n.startswith("modellens@")}


def _score_vec(method, dataset, metric, models, description):
    out = {m: s for m, s, _ in method.predict(dataset, metric, models=models, description=description)}
    return np.array([out.get(m, -np.inf) for m in models], dtype=np.float64)


def _pick_folds(recs: Records, max_folds: int, seed: int) -> list[int]:
    ds = sorted(set(recs.d_idx.tolist()))
    if max_folds and len(ds) > max_folds:
        rng = np.random.default_rng(seed)
        ds = sorted(rng.choice(ds, max_folds, replace=False).tolist())
    return ds


def validation_lists(recs: Records, side: SideInfo, config: dict, embedder, reference=None,
                     progress=None, methods=VAL_METHODS):
    """Leave-one-dataset-out predictions of every method.

    -> (lists, folds): ``lists`` = ``[(fold, truth, S [methods x models])]``, one per
    (held-out dataset, metric) list with >= MIN_LIST models; the rows of S are the raw
    scores of ``methods`` (default VAL_METHODS)."""
    from zooql.methods.modellens.recommender import Recommender

    cfg = dict(config)
    cfg["epochs"] = int(cfg.get("val_epochs") or cfg.get("epochs", 300))
    folds = _pick_folds(recs, int(cfg.get("val_folds") or 0), int(cfg.get("seed", 0)))
    lists = []
    for i, di in enumerate(folds):
        d = recs.datasets[di]
        train = recs.subset(recs.d_idx != di)
        side_tr = SideInfo({k: v for k, v in side.dataset_text.items() if k != d}, side.model_features)
        fitted = {"modellens": Recommender(**cfg, text_embedder=embedder),
                  **seed_models(cfg, embedder, methods), **make_baselines(reference, embedder, methods)}
        for m in fitted.values():
            m.fit(train, side_tr)
        desc = side.dataset_text.get(d)
        sel = recs.d_idx == di
        for k in np.unique(recs.k_idx[sel]):
            s2 = sel & (recs.k_idx == k)
            if s2.sum() < MIN_LIST:
                continue
            models = [recs.models[j] for j in recs.m_idx[s2]]
            S = np.stack([_score_vec(fitted[name], d, recs.metrics[k], models, desc)
                          for name in methods])
            lists.append((i, recs.score[s2].astype(np.float64), S))
        if progress is not None:
            progress(i + 1, len(folds))
    return lists, [recs.datasets[di] for di in folds]


def _metrics(truth, pred) -> dict:
    return {"ndcg5": ndcg_at_k(truth, pred), "ndcg5_lovm": ndcg_lovm_at_k(truth, pred),
            "tau5": kendall_tau_at_k(truth, pred)}


def _mean(rows: list[dict]) -> dict:
    return {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0]}


BASELINE_METHODS = ("avg_rank", "imagenet", "knn_dataset")
LCB_Z = 1.0          # the gain over the best baseline must exceed one standard error


def candidate_grid(n: int = len(VAL_METHODS)) -> np.ndarray:
    """Every candidate as a weight row over VAL_METHODS: the pure methods, then the blends."""
    return np.vstack([np.eye(n), blend_candidates(n)])


def blend_scores(w, S: np.ndarray) -> np.ndarray:
    """The scores a weight row ``w`` gives from the raw method scores ``S`` [methods x models]:
    a pure method's own scores, else the blend of robust z-scores."""
    w = np.asarray(w, dtype=np.float64)
    if np.count_nonzero(w) == 1:
        return np.asarray(S[int(np.argmax(w))], dtype=np.float64)
    return w @ np.stack([robust_z(r) for r in S])


def validation_matrix(lists, grid: np.ndarray):
    """-> (N [candidates x lists] NDCG@5, fold id per list, F [candidates x folds]: the mean
    NDCG@5 over each validation dataset's lists)."""
    N = np.stack([_ndcg_rows(t, np.stack([blend_scores(w, S) for w in grid])) for _, t, S in lists], axis=1)
    fold_of = np.array([f for f, _, _ in lists])
    folds = sorted(set(fold_of.tolist()))
    F = np.stack([N[:, fold_of == f].mean(1) for f in folds], axis=1)
    return N, fold_of, F


def _argbest(scores: np.ndarray, grid: np.ndarray) -> int:
    """Best candidate; ties go to the simpler one (pure before blend, TIE_ORDER)."""
    def tie(c):
        nz = np.nonzero(grid[c])[0]
        if len(nz) != 1:
            return (len(nz), 1, c)
        name = VAL_METHODS[nz[0]] if nz[0] < len(VAL_METHODS) else None   # a wider grid: extras last
        return (1, TIE_ORDER.index(name) if name else len(TIE_ORDER), c)
    top = np.round(scores, 9).max()
    return min((c for c in range(len(scores)) if round(float(scores[c]), 9) == top), key=tie)


def choose_mean(lists, grid=None) -> np.ndarray:
    """The candidate with the best mean validation NDCG@5 over all lists."""
    grid = candidate_grid() if grid is None else grid
    N, _, _ = validation_matrix(lists, grid)
    return grid[_argbest(N.mean(1), grid)]


def _best_baseline(F: np.ndarray, grid: np.ndarray) -> int:
    base = [VAL_METHODS.index(b) for b in BASELINE_METHODS]
    return base[int(np.argmax(np.round(F[base].mean(1), 9)))]


def choose_lcb(lists, grid=None, z: float = LCB_Z) -> np.ndarray:
    """Shrink to the best baseline unless a candidate's gain over it holds across the
    validation datasets: the gain's lower confidence bound ``mean(d) - z sd(d) / sqrt(n)``
    over the per-dataset NDCG@5 differences ``d`` must be positive; the candidate with the
    highest bound is kept, else the baseline with the best mean."""
    grid = candidate_grid() if grid is None else grid
    _, _, F = validation_matrix(lists, grid)
    b = _best_baseline(F, grid)
    D = F - F[b]
    n = D.shape[1]
    lcb = D.mean(1) - z * (D.std(1, ddof=1) if n > 1 else np.zeros(len(D))) / np.sqrt(n)
    lcb[b] = 0.0
    c = _argbest(lcb, grid)
    return grid[c] if lcb[c] > 1e-12 else grid[b]


def choose_wins(lists, grid=None) -> np.ndarray:
    """Per-dataset win counts against the best baseline: the candidate with the most
    (wins - losses) over the validation datasets (ties: the better mean), kept only when
    that net count is positive, else the baseline."""
    grid = candidate_grid() if grid is None else grid
    _, _, F = validation_matrix(lists, grid)
    b = _best_baseline(F, grid)
    D = np.round(F - F[b], 9)
    net = np.sign(D).sum(1) + 1e-3 * D.mean(1)
    net[b] = 0.0
    c = _argbest(net, grid)
    return grid[c] if net[c] >= 1 else grid[b]


def choose_nested(lists, grid=None) -> np.ndarray:
    """Stacking by nested leave-one-dataset-out: each candidate is scored on every
    validation dataset by the candidate the *other* datasets chose (mean rule); the rule's
    choice on all datasets is kept if that nested figure beats the best baseline's, else
    the baseline."""
    grid = candidate_grid() if grid is None else grid
    N, fold_of, F = validation_matrix(lists, grid)
    folds = sorted(set(fold_of.tolist()))
    nested = np.mean([F[_argbest(F[:, [g for g in range(len(folds)) if g != i]].mean(1), grid), i]
                      for i in range(len(folds))])
    b = _best_baseline(F, grid)
    c = _argbest(N.mean(1), grid)
    return grid[c] if nested > F[b].mean() + 1e-12 else grid[b]


BAG_ROUNDS = 100


def choose_bagged(lists, grid=None, rounds: int = BAG_ROUNDS, seed: int = 0) -> np.ndarray:
    """Bootstrap aggregation of the mean rule: ``rounds`` resamples (with replacement) of
    the validation datasets, the mean rule's choice on each (best mean of the per-dataset
    NDCG@5, ties to the simpler), and the weights averaged over the resamples. One
    candidate that wins on nearly every resample is kept as it is; a choice that hinges on
    one or two validation datasets is spread over the candidates that win the other
    resamples instead of betting on it. Deterministic for ``seed``."""
    grid = candidate_grid() if grid is None else grid
    _, _, F = validation_matrix(lists, grid)
    n = F.shape[1]
    rng = np.random.default_rng(seed)
    counts = np.zeros(len(grid))
    for _ in range(int(rounds)):
        counts[_argbest(F[:, rng.integers(0, n, n)].mean(1), grid)] += 1
    w = counts @ grid / counts.sum()
    w[w < 1e-9] = 0.0
    return w / w.sum()


CHOOSERS = {"mean": choose_mean, "lcb": choose_lcb, "wins": choose_wins, "nested": choose_nested,
            "bagged": choose_bagged}
DEFAULT_CHOOSER = "mean"    # lcb, wins, nested and bagged were measured worse (benchmarks/recommend_chooser.py)


def choose(lists, chooser: str = DEFAULT_CHOOSER):
    """The validated choice -> (method, weights, table).

    ``table`` has the validation NDCG@5 / NDCG@5 (LOVM) / tau@5 of the four pure methods,
    ``blend`` (the best equal-weight blend on all validation lists: optimistic, its subset is
    fitted there), ``blend_nested`` (its subset chosen on the other validation datasets
    only) and ``chosen`` (the candidate the rule kept). The rule (``chooser``, default
    :func:`choose_mean`) is one of CHOOSERS."""
    grid = candidate_grid()
    n_pure = len(VAL_METHODS)
    N, fold_of, _ = validation_matrix(lists, grid)
    table = {name: _mean([_metrics(t, S[j]) for _, t, S in lists]) for j, name in enumerate(VAL_METHODS)}
    c_all = n_pure + int(np.argmax(np.round(N[n_pure:].mean(1), 12)))
    table["blend"] = _mean([_metrics(t, blend_scores(grid[c_all], S)) for _, t, S in lists])
    nested = []
    for f in sorted(set(fold_of.tolist())):
        inside = fold_of == f
        c = n_pure + int(np.argmax(np.round(N[n_pure:, ~inside].mean(1), 12)))
        nested += [_metrics(t, blend_scores(grid[c], S)) for ff, t, S in lists if ff == f]
    table["blend_nested"] = _mean(nested)
    w = CHOOSERS[chooser](lists, grid)
    table["chosen"] = _mean([_metrics(t, blend_scores(w, S)) for _, t, S in lists])
    weights = {m: round(float(x), 4) for m, x in zip(VAL_METHODS, w) if x > 0}
    method = next(iter(weights)) if len(weights) == 1 else "blend"
    return method, ({method: 1.0} if method != "blend" else weights), table


def validate(recs: Records, side: SideInfo | None, config: dict, embedder=None, reference=None,
             progress=None) -> Selection:
    """Run the leave-one-dataset-out validation and choose (see the module docstring)."""
    from zooql.methods.modellens.recommender import _embed

    t0 = time.perf_counter()
    side = side or SideInfo()
    n_d = len(set(recs.d_idx.tolist()))
    if n_d < 3:
        return Selection("modellens", {"modellens": 1.0}, n_datasets=n_d,
                         note=f"{n_d} dataset(s): leave-one-dataset-out needs at least 3")
    emb = memo_embedder(embedder or _embed)
    lists, folds = validation_lists(recs, side, config, emb, reference, progress)
    if len({f for f, _, _ in lists}) < 2:
        return Selection("modellens", {"modellens": 1.0}, folds=folds, n_datasets=n_d,
                         note=f"too few validation lists with >= {MIN_LIST} models")
    method, weights, table = choose(lists)
    return Selection(method, weights, table, folds, n_d, len(lists), round(time.perf_counter() - t0, 1))


def train_default(recs: Records, side: SideInfo | None, config: dict, progress=None, embedder=None,
                  reference=None, val_progress=None):
    """What TRAIN RECOMMENDER does: ModelLens on all records, then (``validate=True``) the
    validation; the Selection is kept on the model (``rec.selection``, saved with it)."""
    from zooql.methods.modellens.recommender import Recommender

    kw = {"text_embedder": embedder} if embedder is not None else {}
    rec = Recommender(**config, **kw).fit(recs, side, progress=progress)
    rec.selection = None
    if config.get("validate", True):
        rec.selection = validate(recs, side, config, embedder=embedder, reference=reference,
                                 progress=val_progress)
    return rec


class AutoRecommender:
    """The default method (``auto``): ModelLens, or the validated choice for an unseen
    dataset without seeds. Same ``fit`` / ``predict`` API as the baselines."""

    name = "auto"

    def __init__(self, config: dict | None = None, reference: str | None = None, embedder=None):
        self.config = dict(config or {})
        self.reference = reference
        self.embedder = embedder

    def fit(self, recs: Records, side: SideInfo | None = None, progress=None):
        emb = memo_embedder(self.embedder) if self.embedder is not None else None
        if emb is None:
            from zooql.methods.modellens.recommender import _embed
            emb = memo_embedder(_embed)
        self.rec = train_default(recs, side, self.config, embedder=emb, reference=self.reference)
        return self.attach(self.rec, recs, side, emb)

    def attach(self, rec, recs: Records, side: SideInfo | None, embedder=None):
        """Use an already trained ModelLens (``rec.selection`` says what to blend)."""
        self.rec, self.selection = rec, getattr(rec, "selection", None)
        self.baselines = {}
        if self.selection is not None and self.selection.method != "modellens":
            for name, b in make_baselines(self.reference, embedder).items():
                if self.selection.weights.get(name, 0) > 0:
                    self.baselines[name] = b.fit(recs, side)
        return self

    def applies(self, dataset: str, given=None) -> bool:
        """Does the validated choice (rather than ModelLens itself) rank this dataset?"""
        d = self.rec._d_index.get(dataset)
        known = d is not None and self.rec.dataset_n[d] > 0
        return not known and not given and self.selection is not None and self.selection.method != "modellens"

    def predict(self, dataset, metric=None, models=None, description=None, given=None,
                model_features=None):
        ml = self.rec.predict(dataset, metric=metric, models=models, description=description,
                              given=given, model_features=model_features)
        if not self.applies(dataset, given):
            return ml
        names = [m for m, _, _ in ml]
        own = np.array([s for _, s, _ in ml])
        unc = np.array([u for _, _, u in ml])
        blend = np.zeros(len(names))
        for name, w in self.selection.weights.items():
            if w <= 0:
                continue
            vec = own if name == "modellens" else _score_vec(self.baselines[name], dataset, metric, names,
                                                             description)
            blend += w * robust_z(vec)
        # scores in the metric's units: the i-th best by the blend gets ModelLens's i-th
        # highest prediction; the uncertainty widens by how far that moves the model
        order = np.argsort(-blend, kind="stable")
        assigned = np.empty(len(names))
        assigned[order] = np.sort(own)[::-1]
        spread = np.sqrt(unc ** 2 + (assigned - own) ** 2)
        return [(names[i], float(assigned[i]), float(spread[i])) for i in order]
