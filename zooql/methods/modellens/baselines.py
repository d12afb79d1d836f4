"""Baselines for ranking models on an unseen dataset (same API as ``Recommender``).

* ``avg_rank``   -- mean percentile rank of a model over all training lists
                    (the "capability" prior every learned method must beat);
* ``imagenet``   -- rank by the score on one reference dataset (ImageNet for
                    vision zoos; pass ``reference=`` for other zoos, e.g. ``'mmlu'``).
                    When the reference itself is the target, the most-covered other
                    dataset is used; models without a reference score rank after
                    those with one (ordered by avg_rank);
* ``size``       -- bigger is better: log of the first size-like model feature
                    (``params``, ``params_m``, ``param_count_m``, ``size``, ...);
* ``knn_dataset``-- MiniLM-description nearest datasets: similarity-weighted mean
                    of the per-list z-scores of the ``k`` most similar training
                    datasets (with ``given`` seeds and no description, similarity
                    is the correlation of the seeds with each dataset's scores);
* ``knn_soft``   -- every training dataset, weighted by a softmax of the description
                    similarity with a temperature fitted on the training datasets
                    (``inf``, the mean z-score prior, when descriptions do not help).

The second element of each returned triple is the baseline's own score (a
percentile, a reference score, log-size, or a z-score), not a calibrated
prediction; the third is a spread estimate where one exists, else 0.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from zooql.methods.modellens.data import Records, SideInfo

__all__ = ["AvgRank", "ReferenceDataset", "SizeBaseline", "KnnDataset", "KnnSoft", "BASELINES"]


class _ListStats:
    """Per-(dataset, metric) lists as {model_index: z} / percentile dicts."""

    def _index(self, recs: Records, side: SideInfo | None):
        self.side = side or SideInfo()
        self.models = list(recs.models)
        for m in self.side.model_features:
            if m not in set(self.models):
                self.models.append(m)
        self.m_index = {m: i for i, m in enumerate(self.models)}
        self.recs = recs
        M = len(self.models)
        pair = recs.d_idx * len(recs.metrics) + recs.k_idx
        up, l_of = np.unique(pair, return_inverse=True)
        self.list_d = up // len(recs.metrics)
        self.list_k = up % len(recs.metrics)
        L = len(up)
        self.Z = np.full((L, M), np.nan)
        self.Pct = np.full((L, M), np.nan)
        for l in range(L):
            sel = l_of == l
            m, s = recs.m_idx[sel], recs.score[sel]
            sd = s.std() if s.std() > 0 else 1.0
            self.Z[l, m] = (s - s.mean()) / sd
            if len(s) > 1:
                r = np.argsort(np.argsort(s, kind="stable"), kind="stable")
                self.Pct[l, m] = r / (len(s) - 1)
            else:
                self.Pct[l, m] = 0.5
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            self.avg_pct = np.nanmean(self.Pct, axis=0)
            self.std_pct = np.nanstd(self.Pct, axis=0)
        self.avg_pct = np.where(np.isfinite(self.avg_pct), self.avg_pct, 0.0)
        self.std_pct = np.where(np.isfinite(self.std_pct), self.std_pct, 0.0)

    def _lists_of(self, dataset: str, metric: str | None):
        if dataset not in self.recs.datasets:
            return []
        d = self.recs.datasets.index(dataset)
        ls = np.nonzero(self.list_d == d)[0]
        if metric is not None and metric in self.recs.metrics:
            k = self.recs.metrics.index(metric)
            ls2 = ls[self.list_k[ls] == k]
            if len(ls2):
                return list(ls2)
        if len(ls) == 0:
            return []
        # primary metric: the list with most observations
        cnt = np.isfinite(self.Z[ls]).sum(1)
        return [int(ls[np.argmax(cnt)])]

    def _emit(self, models, score, unc):
        models = list(self.models) if models is None else list(models)
        vals = []
        for m in models:
            i = self.m_index.get(m)
            vals.append((m, float(score[i]) if i is not None else -math.inf,
                         float(unc[i]) if i is not None else 0.0))
        order = sorted(range(len(vals)), key=lambda j: -vals[j][1])
        return [vals[j] for j in order]


class AvgRank(_ListStats):
    name = "avg_rank"

    def fit(self, recs: Records, side: SideInfo | None = None, progress=None):
        self._index(recs, side)
        return self

    def predict(self, dataset, metric=None, models=None, description=None, given=None,
                model_features=None):
        return self._emit(models, self.avg_pct, self.std_pct)


class ReferenceDataset(_ListStats):
    """Rank by the score on a reference dataset (the 'ImageNet' baseline)."""

    name = "imagenet"
    DEFAULT_NAMES = ("imagenet", "imagenet-1k", "imagenet 1k", "imagenet1k", "in1k")

    def __init__(self, reference: str | None = None):
        self.reference = reference

    def fit(self, recs: Records, side: SideInfo | None = None, progress=None):
        self._index(recs, side)
        return self

    def _pick_reference(self, target: str) -> str | None:
        names = [d for d in self.recs.datasets if np.any(self.recs.d_idx == self.recs.datasets.index(d))]
        if self.reference is not None and self.reference in names and self.reference != target:
            return self.reference
        if self.reference is None:
            for d in names:
                if d.lower() in self.DEFAULT_NAMES and d != target:
                    return d
        # fall back: the most covered other dataset
        cands = [d for d in names if d != target]
        if not cands:
            return None
        cnt = {d: int(np.sum(self.recs.d_idx == self.recs.datasets.index(d))) for d in cands}
        return max(cands, key=lambda d: (cnt[d], -cands.index(d)))

    def predict(self, dataset, metric=None, models=None, description=None, given=None,
                model_features=None):
        ref = self._pick_reference(dataset)
        self.used_reference = ref
        score = self.avg_pct - 2.0          # models without a reference score go last
        if ref is not None:
            ls = self._lists_of(ref, metric)
            if ls:
                z = self.Z[ls[0]]
                score = np.where(np.isfinite(z), z, score - 100.0)
        return self._emit(models, score, np.zeros(len(self.models)))


class SizeBaseline(_ListStats):
    """Bigger is better (log of a size-like model feature)."""

    name = "size"
    KEYS = ("params", "params_m", "param_count_m", "params_b", "nparams_b", "size",
            "n_params", "num_params")

    def __init__(self, key: str | None = None):
        self.key = key

    def fit(self, recs: Records, side: SideInfo | None = None, progress=None):
        self._index(recs, side)
        return self

    def _size(self, feats: dict | None) -> float:
        feats = feats or {}
        keys = (self.key,) if self.key else self.KEYS
        for k in keys:
            v = feats.get(k)
            if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) \
                    and math.isfinite(float(v)) and float(v) > 0:
                return math.log(float(v))
        return -1e6

    def predict(self, dataset, metric=None, models=None, description=None, given=None,
                model_features=None):
        extra = model_features or {}
        models = list(self.models) if models is None else list(models)
        # tie-break equal sizes by avg_rank (tiny weight)
        out = []
        for m in models:
            s = self._size(extra.get(m, self.side.model_features.get(m)))
            i = self.m_index.get(m)
            tb = 1e-3 * self.avg_pct[i] if i is not None else 0.0
            out.append((m, s + tb, 0.0))
        out.sort(key=lambda t: -t[1])
        return out


class KnnDataset(_ListStats):
    """Similarity-weighted mean z-score over the k most similar training datasets."""

    name = "knn_dataset"

    def __init__(self, k: int = 3, text_embedder=None):
        self.k = k
        self._embedder = text_embedder

    def _embed(self, texts):
        if self._embedder is not None:
            return self._embedder(texts)
        from zooql.runtime.text_embed import embed_texts

        return embed_texts(texts)

    def fit(self, recs: Records, side: SideInfo | None = None, progress=None):
        self._index(recs, side)
        self.train_d = sorted(set(self.list_d.tolist()))
        texts = [self.side.dataset_text.get(self.recs.datasets[d]) for d in self.train_d]
        self.has_text = np.array([bool(t) for t in texts])
        self.E = np.zeros((len(self.train_d), 384), dtype=np.float32)
        if self.has_text.any():
            self.E[self.has_text] = self._embed([t for t in texts if t])
        # per training dataset: mean z over its lists
        self.DZ = np.full((len(self.train_d), len(self.models)), np.nan)
        for i, d in enumerate(self.train_d):
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                self.DZ[i] = np.nanmean(self.Z[self.list_d == d], axis=0)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            self.mean_z = np.nanmean(self.DZ, axis=0)
        self.mean_z = np.where(np.isfinite(self.mean_z), self.mean_z, -3.0)
        return self

    def predict(self, dataset, metric=None, models=None, description=None, given=None,
                model_features=None):
        text = description or self.side.dataset_text.get(dataset)
        exclude = self.train_d.index(self.recs.datasets.index(dataset)) \
            if dataset in self.recs.datasets and self.recs.datasets.index(dataset) in self.train_d else None
        sims = None
        if text and self.has_text.any():
            e = self._embed([text])[0]
            sims = np.where(self.has_text, self.E @ e, -np.inf)
        elif given:
            idx = [(self.m_index[m], float(s)) for m, s in given.items() if m in self.m_index]
            if len(idx) >= 3:
                mi = np.array([i for i, _ in idx])
                y = np.array([s for _, s in idx])
                sims = np.full(len(self.train_d), -np.inf)
                for j in range(len(self.train_d)):
                    x = self.DZ[j, mi]
                    ok = np.isfinite(x)
                    if ok.sum() >= 3 and np.std(x[ok]) > 0 and np.std(y[ok]) > 0:
                        sims[j] = np.corrcoef(x[ok], y[ok])[0, 1]
        if exclude is not None and sims is not None:
            sims[exclude] = -np.inf
        if sims is None or not np.isfinite(sims).any():
            return self._emit(models, self.mean_z, np.zeros(len(self.models)))
        top = np.argsort(-sims)[: self.k]
        top = top[np.isfinite(sims[top])]
        w = np.exp((sims[top] - sims[top].max()) / 0.05)
        w /= w.sum()
        Z = self.DZ[top]
        with np.errstate(all="ignore"):
            num = np.nansum(Z * w[:, None], axis=0)
            den = np.nansum(np.isfinite(Z) * w[:, None], axis=0)
            score = np.where(den > 0, num / np.maximum(den, 1e-12), self.mean_z)
            spread = np.sqrt(np.nansum(((Z - score) ** 2) * w[:, None], axis=0))
        return self._emit(models, score, np.where(np.isfinite(spread), spread, 0.0))


class KnnSoft(KnnDataset):
    """Soft nearest datasets: the similarity-softmax mean of *every* training dataset's
    per-list z-scores, ``w_j ~ exp(sim_j / T)``, with the temperature ``T`` fitted on the
    training datasets themselves (each hidden in turn and predicted from the others'
    descriptions; the ``T`` with the best mean NDCG@5, ties to the smoother). ``T = inf``
    is the plain mean z-score (an average-rank prior), a small ``T`` is the nearest
    dataset, so the fit shrinks towards the prior when descriptions do not predict."""

    name = "knn_soft"
    TEMPS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, math.inf)

    def __init__(self, temperature: float | None = None, text_embedder=None):
        super().__init__(k=0, text_embedder=text_embedder)
        self.temperature = temperature

    def fit(self, recs: Records, side: SideInfo | None = None, progress=None):
        super().fit(recs, side)
        self.T = self.temperature if self.temperature is not None else self._fit_temperature()
        return self

    def _soft(self, sims: np.ndarray, T: float, exclude: int | None = None) -> np.ndarray:
        ok = np.isfinite(sims) & self.has_text
        if exclude is not None:
            ok[exclude] = False
        if not ok.any():
            return self.mean_z
        w = np.zeros(len(sims))
        w[ok] = 1.0 if math.isinf(T) else np.exp((sims[ok] - sims[ok].max()) / T)
        w /= w.sum()
        Z = self.DZ
        with np.errstate(all="ignore"):
            num = np.nansum(Z * w[:, None], axis=0)
            den = np.nansum(np.isfinite(Z) * w[:, None], axis=0)
            return np.where(den > 0, num / np.maximum(den, 1e-12), self.mean_z)

    def _fit_temperature(self) -> float:
        from zooql.methods.modellens.metrics import ndcg_at_k

        idx = np.nonzero(self.has_text)[0]
        if len(idx) < 3:
            return math.inf
        sims = self.E @ self.E.T
        means = []
        for T in self.TEMPS:
            vals = []
            for i in idx:
                pred = self._soft(sims[i], T, exclude=i)
                for l in np.nonzero(self.list_d == self.train_d[i])[0]:
                    ok = np.isfinite(self.Z[l])
                    if ok.sum() >= 3:
                        vals.append(ndcg_at_k(self.Z[l, ok], pred[ok]))
            means.append(np.mean(vals) if vals else -1.0)
        means = np.round(means, 9)
        return self.TEMPS[max(j for j in range(len(means)) if means[j] == means.max())]

    def predict(self, dataset, metric=None, models=None, description=None, given=None,
                model_features=None):
        text = description or self.side.dataset_text.get(dataset)
        if not text or not self.has_text.any():
            return super().predict(dataset, metric, models, description, given, model_features)
        d = self.recs.datasets.index(dataset) if dataset in self.recs.datasets else None
        exclude = self.train_d.index(d) if d in self.train_d else None
        sims = np.where(self.has_text, self.E @ self._embed([text])[0], -np.inf)
        return self._emit(models, self._soft(sims, self.T, exclude), np.zeros(len(self.models)))


BASELINES = {
    "avg_rank": AvgRank,
    "imagenet": ReferenceDataset,
    "size": SizeBaseline,
    "knn_dataset": KnnDataset,
    "knn_soft": KnnSoft,
}
