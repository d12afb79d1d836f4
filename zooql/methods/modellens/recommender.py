"""ModelLens: rank models on an (unseen) dataset from leaderboard records.

Input is a long table of records ``(model, dataset, metric, score)`` plus optional
side information (a text description per dataset, a feature dict per model).
Models, datasets and metrics are embedded in one latent space; the predicted,
per-(dataset, metric) z-normalised score of model ``m`` on list ``(d, k)`` is::

    z(m, d, k) = b_m + < u_m , v_d * w_k >

* ``u_m = u_id[m] + f(x_m)``  and  ``b_m = b_id[m] + f_b(x_m)`` -- an ID embedding
  plus a small MLP over model features (family / size / pretraining data tokens);
* ``v_d = v_id[d]`` for a dataset with records; for a *cold* dataset (unseen,
  or ID dropped in training) ``v_d = g(e_d) = sum_j a_j(e_d) v_id[j]``: an attention
  mixture of the training datasets' vectors, with logits ``cos(e_d, e_j) / tau +
  prior_j`` over MiniLM embeddings of the descriptions (learned ``tau`` and prior
  logits; optional linear map of ``e_d`` with ``text_linear=True``);
* ``w_k`` -- a per-metric gain vector.

Training (torch, CPU, full batch, Adam) minimises a ranking loss within every
(dataset, metric) list -- listwise ListNet/Plackett-Luce top-one (``loss='listnet'``)
or pairwise BPR (``loss='bpr'``) -- plus a regression term on the z-scores and an
L2 penalty.  DropoutNet-style, model and dataset ID embeddings are dropped with
probability ``id_dropout`` (``dataset_dropout`` for datasets) so that the feature
towers alone must carry the prediction.  The default ``dropout_mode='expected'``
trains the four cases (warm, cold model, cold dataset, both cold) every step,
weighted by their dropout probabilities -- the expectation of random masks without
their gradient noise; ``'sample'`` draws random masks.  On cold-dataset lists only
the attention is trained (model vectors, biases, dataset vectors frozen), so the
mixture cannot co-adapt to the dataset it stands in for.  At prediction time a cold
dataset also receives the attention-weighted residuals (observed minus warm
reconstruction) of its neighbours (``neighbour_residual=True``), i.e. it mixes the
neighbours' *observed* scores where they exist and latent imputations elsewhere.

``predict(..., given={model: score})`` uses a few observed scores on the target:
for an unseen dataset, Bayesian averaging over training datasets (description
attention as prior, Gaussian likelihood of the seeds under each dataset's list
after an affine fit) gives the posterior mixture and the score scale; from
``given_ridge_min`` seeds on (default 25; and always for a known dataset) the
dataset vector is then refined by ridge regression in the latent space, shrunk to
that prior (``given_reg``).

The returned triples are ``(model, predicted_score, uncertainty)`` where the
score is in the dataset's original scale (estimated from similar datasets when the
dataset is unseen) and ``uncertainty`` is a residual standard deviation in the same
units, calibrated on the training records for the matching cold/warm case
(in-sample: optimistic for a known model on a known dataset).

Ranking metrics follow LOVM/SWAB (see :func:`kendall_tau_at_k`).
"""
from __future__ import annotations

import json
import math
from typing import Callable

import numpy as np

from zooql.methods.modellens.data import Records, SideInfo
from zooql.methods.modellens.features import ModelFeaturizer
from zooql.methods.modellens.objective import _dropout_cases, _list_loss, _penalty
from zooql.methods.modellens.seeds import SeedsAndCalibration
from zooql.methods.modellens.metrics import kendall_tau_at_k, ndcg_at_k, recall_at_k, spearman, top1_regret

__all__ = [
    "Records", "SideInfo", "Recommender", "BASELINES",
    "ndcg_at_k", "kendall_tau_at_k", "recall_at_k", "top1_regret", "spearman",
    "ModelFeaturizer",
]

STATE_VERSION = 2


def _embed(texts: list[str]) -> np.ndarray:
    from zooql.runtime.text_embed import embed_texts

    return embed_texts(texts)


class Recommender(SeedsAndCalibration):
    """ModelLens latent-factor ranker.  See the module docstring for the model."""

    def __init__(self, dim: int = 32, epochs: int = 300, lr: float = 0.03, reg: float = 1e-3,
                 loss: str = "listnet", seed: int = 0, id_dropout: float = 0.5,
                 temperature: float = 0.5, rank_weight: float = 1.0, mse_weight: float = 0.5,
                 hidden: int = 64, bpr_pairs: int = 64, feat_reg: float = 1e-3,
                 text_linear: bool = False, given_reg: float = 1.0, max_tokens: int = 384,
                 dataset_dropout: float | None = None, att_reg: float = 1e-2,
                 dropout_mode: str = "expected", neighbour_residual: bool = True,
                 given_ridge_min: int = 25, tau_min: float = 0.0,
                 validate: bool = True, val_folds: int = 16, val_epochs: int = 100,
                 text_embedder: Callable[[list[str]], np.ndarray] | None = None):
        if loss not in ("listnet", "bpr"):
            raise ValueError("loss must be 'listnet' or 'bpr'")
        self.config = dict(dim=int(dim), epochs=int(epochs), lr=float(lr), reg=float(reg),
                           loss=loss, seed=int(seed), id_dropout=float(id_dropout),
                           temperature=float(temperature), rank_weight=float(rank_weight),
                           mse_weight=float(mse_weight), hidden=int(hidden),
                           bpr_pairs=int(bpr_pairs), feat_reg=float(feat_reg),
                           text_linear=bool(text_linear), given_reg=float(given_reg),
                           max_tokens=int(max_tokens),
                           dataset_dropout=None if dataset_dropout is None else float(dataset_dropout),
                           att_reg=float(att_reg), dropout_mode=str(dropout_mode),
                           neighbour_residual=bool(neighbour_residual),
                           given_ridge_min=int(given_ridge_min), tau_min=float(tau_min),
                           validate=bool(validate), val_folds=int(val_folds), val_epochs=int(val_epochs))
        self._embedder = text_embedder or _embed
        self.fitted = False

    # -- public ---------------------------------------------------------------

    def fit(self, recs: Records, side: SideInfo | None = None, progress=None) -> "Recommender":
        import torch

        side = side or SideInfo()
        cfg = self.config
        rng = np.random.default_rng(cfg["seed"])
        torch.manual_seed(cfg["seed"])
        if len(recs) == 0:
            raise ValueError("no records to fit")
        rc = self._vocabulary(recs, side)
        Y, mask = self._lists(rc)
        X, E = self._side_features(side)
        M, D = len(self.models), len(self.datasets)
        self._build_params(M, D, len(self.metrics), X.shape[1])
        P = self._torch_params()
        opt = torch.optim.Adam(P.values(), lr=cfg["lr"])
        Xt, Et, ht = torch.from_numpy(X), torch.from_numpy(E), torch.from_numpy(self.has_text)
        ld, lk = torch.from_numpy(self.list_d), torch.from_numpy(self.list_k)
        no_m = ~torch.from_numpy(self.model_n > 0)
        no_d = ~torch.from_numpy(self.dataset_n > 0)
        p_drop = cfg["id_dropout"]
        p_drop_d = p_drop if cfg["dataset_dropout"] is None else cfg["dataset_dropout"]
        list_loss = _list_loss(cfg, Y, mask, rng)
        combos = _dropout_cases(p_drop, p_drop_d, no_m, no_d, M, D)
        steps = cfg["epochs"]
        for step in range(steps):
            if cfg["dropout_mode"] == "sample":
                drop_m = torch.from_numpy(rng.random(M) < p_drop) | no_m
                drop_d = torch.from_numpy(rng.random(D) < p_drop_d) | no_d
                data_loss = list_loss(self._forward(P, Xt, Et, ht, ld, lk, drop_m, drop_d))
            else:
                # the towers do not depend on the dropout case: compute them once per step
                towers = (*self._feat_tower(P, Xt, torch), self._text_tower_torch(P, Et, ht))
                data_loss = sum(w * list_loss(self._forward(P, Xt, Et, ht, ld, lk, dm, dd, towers))
                                for w, dm, dd in combos)
            loss = data_loss + _penalty(P, cfg, X.shape[1])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if progress is not None and (step % 25 == 0 or step == steps - 1):
                progress(step + 1, steps, float(loss.detach()))
        self._store_params(P)
        self._calibrate(Y, mask)
        self.fitted = True
        return self

    def _vocabulary(self, recs: Records, side: SideInfo) -> Records:
        """Models/datasets with records first, then side-info-only ones."""
        rc = recs.compact()
        self.models = list(rc.models) + [m for m in side.model_features if m not in set(rc.models)]
        self.datasets = list(rc.datasets) + [d for d in side.dataset_text if d not in set(rc.datasets)]
        self.metrics = list(rc.metrics)
        self._m_index = {m: i for i, m in enumerate(self.models)}
        self._d_index = {d: i for i, d in enumerate(self.datasets)}
        self._k_index = {k: i for i, k in enumerate(self.metrics)}
        return rc

    def _lists(self, rc: Records) -> tuple[np.ndarray, np.ndarray]:
        """Lists = observed (dataset, metric) pairs, z-normalised: (Y [L, M], mask [L, M])."""
        M, D, K = len(self.models), len(self.datasets), len(self.metrics)
        pair = rc.d_idx * K + rc.k_idx
        upair, l_of = np.unique(pair, return_inverse=True)
        L = len(upair)
        self.list_d = (upair // K).astype(np.int64)
        self.list_k = (upair % K).astype(np.int64)
        mu = np.zeros(L)
        sd = np.ones(L)
        cnt = np.zeros(L, dtype=np.int64)
        for l in range(L):
            s = rc.score[l_of == l]
            mu[l] = s.mean()
            sd[l] = s.std() if len(s) > 1 and s.std() > 1e-12 else max(abs(s.mean()) * 0.1, 1e-6)
            cnt[l] = len(s)
        self.list_mu, self.list_sd, self.list_n = mu, sd, cnt
        z = (rc.score - mu[l_of]) / sd[l_of]
        Y = np.zeros((L, M), dtype=np.float32)
        mask = np.zeros((L, M), dtype=bool)
        Y[l_of, rc.m_idx] = z
        mask[l_of, rc.m_idx] = True
        self.model_n = np.bincount(rc.m_idx, minlength=M).astype(np.int64)
        self.dataset_n = np.bincount(rc.d_idx, minlength=D).astype(np.int64)
        return Y, mask

    def _side_features(self, side: SideInfo) -> tuple[np.ndarray, np.ndarray]:
        """Model feature matrix X and dataset text embeddings E."""
        self.featurizer = ModelFeaturizer(min_count=2, max_tokens=self.config["max_tokens"])
        feats = [side.model_features.get(m, {}) for m in self.models]
        self.featurizer.fit(feats)
        X = self.featurizer.transform(feats)
        self.X = X
        texts = [side.dataset_text.get(d) for d in self.datasets]
        self.has_text = np.array([bool(t) for t in texts], dtype=bool)
        E = np.zeros((len(self.datasets), 384), dtype=np.float32)
        if self.has_text.any():
            E[self.has_text] = self._embedder([t for t in texts if t])
        self.E = E
        return X, E

    def predict(self, dataset: str, metric: str | None = None, models: list[str] | None = None,
                description: str | None = None, given: dict[str, float] | None = None,
                model_features: dict[str, dict] | None = None) -> list[tuple[str, float, float]]:
        """Rank ``models`` (default: every known model) on ``dataset``.

        Returns ``[(model, predicted_score, uncertainty), ...]`` best first.  Works
        for a known dataset (learned vector), an unseen one (``description`` and/or
        ``given`` seed scores), and unseen models (features from ``model_features``
        or from the side info seen at fit time; a model with neither gets the
        featureless prior).  ``metric=None`` means the dataset's primary metric.
        """
        self._check()
        models = list(self.models) if models is None else [str(m) for m in models]
        v, mu0, sd0, dcase, att, k = self._dataset_vector(dataset, metric, description)
        U, b, mcase = self._model_vectors(models, model_features)
        corr = np.zeros(len(models))
        if att is not None and self.config["neighbour_residual"]:
            corr = self._neighbour_residual(models, att, k)
        z = b + U @ v + corr
        mu, sd = mu0, sd0
        resid = np.array([self.resid[f"{mc}|{dcase}"] for mc in mcase])
        if given:
            seeds = [(m, float(s)) for m, s in given.items() if s is not None and math.isfinite(float(s))]
            if seeds:
                n = len(seeds)
                if att is not None:
                    # unseen dataset: Bayesian model averaging over the training datasets
                    # (text attention as prior, seed likelihood), then a ridge refinement
                    att, mu0, sd0 = self._seed_posterior(seeds, att, k, mu0, sd0, model_features)
                    wk = self.params["W"][k] if k is not None else self.params["W"].mean(0)
                    v = (att @ self.params["V"]) * wk
                    if self.config["neighbour_residual"]:
                        corr = self._neighbour_residual(models, att, k)
                if n >= self.config["given_ridge_min"] or att is None:
                    v, mu, sd, seed_rms = self._fit_given(seeds, v, mu0, sd0, model_features)
                else:
                    mu, sd, seed_rms = mu0, sd0, 0.0
                z = b + U @ v + corr
                # shrink the cold-dataset residual towards the warm one as seeds accumulate
                warm = np.array([self.resid[f"{mc}|id"] for mc in mcase])
                w = n / (n + 5.0)
                resid = np.sqrt((1 - w) * resid ** 2 + w * np.maximum(warm, seed_rms) ** 2)
        score = mu + sd * z
        unc = sd * resid
        order = np.argsort(-z, kind="stable")
        return [(models[i], float(score[i]), float(unc[i])) for i in order]

    def model_vectors(self, models: list[str] | None = None) -> np.ndarray:
        """Latent model vectors ``[b_m, u_m]`` (for similarity search)."""
        models = list(self.models) if models is None else models
        U, b, _ = self._model_vectors(models, None)
        return np.concatenate([b[:, None], U], axis=1)

    # -- persistence ------------------------------------------------------------

    def state_dict(self) -> dict:
        """All state as numpy arrays plus ``'config'`` (a JSON string).

        ``np.savez(path, **rec.state_dict())`` and ``Recommender.from_state(np.load(path))``
        round-trip exactly (float32/float64 arrays, vocabularies inside the JSON).
        """
        self._check()
        meta = {
            "version": STATE_VERSION, "config": self.config,
            "models": self.models, "datasets": self.datasets, "metrics": self.metrics,
            "featurizer": self.featurizer.state(), "resid": self.resid,
            "selection": sel.to_json() if (sel := getattr(self, "selection", None)) is not None else None,
        }
        out = {k: np.array(v) for k, v in self.params.items()}
        out.update({
            "X": self.X, "E": self.E, "has_text": self.has_text,
            "list_d": self.list_d, "list_k": self.list_k, "list_mu": self.list_mu,
            "list_sd": self.list_sd, "list_n": self.list_n,
            "model_n": self.model_n, "dataset_n": self.dataset_n, "list_resid": self.list_resid,
            "config": np.array(json.dumps(meta)),
        })
        return out

    @classmethod
    def from_state(cls, d, text_embedder: Callable[[list[str]], np.ndarray] | None = None) -> "Recommender":
        cfg_raw = d["config"]
        if isinstance(cfg_raw, np.ndarray):
            cfg_raw = cfg_raw.item()
        meta = json.loads(cfg_raw) if isinstance(cfg_raw, (str, bytes)) else dict(cfg_raw)
        if meta.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported Recommender state version {meta.get('version')}")
        self = cls(**meta["config"], text_embedder=text_embedder)
        self.models, self.datasets, self.metrics = meta["models"], meta["datasets"], meta["metrics"]
        self._m_index = {m: i for i, m in enumerate(self.models)}
        self._d_index = {x: i for i, x in enumerate(self.datasets)}
        self._k_index = {k: i for i, k in enumerate(self.metrics)}
        self.featurizer = ModelFeaturizer.from_state(meta["featurizer"])
        self.resid = {k: float(v) for k, v in meta["resid"].items()}
        from zooql.methods.modellens.selection import Selection

        self.selection = Selection.from_json(meta.get("selection"))
        self.params = {k: np.array(d[k]) for k in _PARAM_NAMES}
        self.X = np.array(d["X"], dtype=np.float32)
        self.E = np.array(d["E"], dtype=np.float32)
        self.has_text = np.array(d["has_text"], dtype=bool)
        for k in ("list_d", "list_k", "list_n", "model_n", "dataset_n"):
            setattr(self, k, np.array(d[k], dtype=np.int64))
        self.list_mu = np.array(d["list_mu"], dtype=np.float64)
        self.list_sd = np.array(d["list_sd"], dtype=np.float64)
        self.list_resid = np.array(d["list_resid"], dtype=np.float32)
        self.fitted = True
        return self

    # -- internals: parameters ------------------------------------------------------

    def _build_params(self, M, D, K, F):
        cfg = self.config
        rng = np.random.default_rng(cfg["seed"] + 1)
        dim, H = cfg["dim"], cfg["hidden"]
        self.params = {
            "U": (0.1 * rng.standard_normal((M, dim))).astype(np.float32),
            "b": np.zeros(M, dtype=np.float32),
            "V": (0.1 * rng.standard_normal((D, dim))).astype(np.float32),
            "W": np.ones((K, dim), dtype=np.float32),
            "F1": (rng.standard_normal((F, H)) / math.sqrt(max(F, 1))).astype(np.float32),
            "f1": np.zeros(H, dtype=np.float32),
            "F2": (0.1 * rng.standard_normal((H, dim + 1)) / math.sqrt(H)).astype(np.float32),
            "f2": np.zeros(dim + 1, dtype=np.float32),
            "T": np.zeros((384, dim), dtype=np.float32),
            "logtau": np.array([math.log(0.05)], dtype=np.float32),
            "a": np.zeros(D, dtype=np.float32),
        }

    def _torch_params(self):
        import torch

        return {k: torch.tensor(v, requires_grad=True) for k, v in self.params.items()}

    def _store_params(self, P):
        self.params = {k: v.detach().numpy().astype(np.float32).copy() for k, v in P.items()}

    @staticmethod
    def _feat_tower(P, X, lib):
        """Model feature tower -> (u_feat [n, dim], b_feat [n])."""
        h = lib.tanh(X @ P["F1"] + P["f1"])   # F1 is [0, H] when there are no features
        out = h @ P["F2"] + P["f2"]
        return out[:, 1:], out[:, 0]

    def _text_tower_torch(self, P, E, has_text):
        """g(e_d) for all datasets (self excluded from the attention mixture)."""
        import torch

        D = E.shape[0]
        sims = E @ E.T / (self.config["tau_min"] + torch.exp(P["logtau"])) + P["a"][None, :]
        sims = torch.where(has_text[:, None], sims, P["a"][None, :].expand(D, D))
        src = torch.from_numpy(self.dataset_n > 0) & (has_text | ~has_text.any())
        allow = src[None, :] & ~torch.eye(D, dtype=torch.bool)
        sims = torch.where(allow, sims, torch.full_like(sims, -1e9))
        att = torch.softmax(sims, dim=1)
        any_src = allow.any(1, keepdim=True)
        # stop-gradient into the neighbours' ID vectors: the cold path may only learn
        # *how to mix* them, never reshape them to help a dropped dataset (no co-adaptation)
        mix = torch.where(any_src, att @ P["V"].detach(), torch.zeros_like(P["V"]))
        g = mix
        if self.config["text_linear"]:
            g = g + torch.where(has_text[:, None], E @ P["T"], torch.zeros_like(g))
        return g

    def _forward(self, P, X, E, has_text, ld, lk, drop_m, drop_d, towers=None):
        import torch

        uf, bf, g = towers if towers is not None else (
            *self._feat_tower(P, X, torch), self._text_tower_torch(P, E, has_text))
        keep_m = (~drop_m).float()[:, None]
        U = keep_m * P["U"] + uf
        b = keep_m[:, 0] * P["b"] + bf
        # warm datasets use their own ID vector; cold (dropped / unseen) ones the text
        # tower, which mixes *full* neighbour vectors (so both live in one space)
        V = torch.where(drop_d[:, None], g, P["V"])
        Vl = V[ld] * P["W"][lk]                     # [L, dim]
        warm = Vl @ U.T + b[None, :]                # [L, M]
        if not bool(drop_d.any()):
            return warm
        # Cold lists train only the attention (a, tau): model vectors, biases and
        # metric gains are frozen there, otherwise they would co-adapt to make the
        # neighbour mixture fit the very dataset it stands in for -- information an
        # unseen dataset never provides.
        Vc = V[ld] * P["W"][lk].detach()
        cold = Vc @ U.detach().T + b.detach()[None, :]
        return torch.where(drop_d[ld][:, None], cold, warm)

    # -- internals: inference -------------------------------------------------------

    def _check(self):
        if not getattr(self, "fitted", False):
            raise RuntimeError("Recommender is not fitted")

    def _att_weights(self, e: np.ndarray | None, exclude: int | None = None) -> np.ndarray:
        """Attention of a (held-out) dataset over the training datasets (sums to 1)."""
        P = self.params
        src = (self.dataset_n > 0) & (self.has_text | (not self.has_text.any()))
        if exclude is not None:
            src = src.copy()
            src[exclude] = False
        w = np.zeros(len(self.datasets))
        if not src.any():
            return w
        logit = P["a"][src].astype(np.float64)
        if e is not None:
            logit = logit + (self.E[src] @ e) / (self.config["tau_min"] + math.exp(float(P["logtau"][0])))
        x = np.exp(logit - logit.max())
        w[src] = x / x.sum()
        return w

    def _text_vector_np(self, e: np.ndarray | None, exclude: int | None = None) -> np.ndarray:
        P = self.params
        w = self._att_weights(e, exclude)
        g = w @ P["V"]
        if self.config["text_linear"] and e is not None:
            g = g + e @ P["T"]
        return g.astype(np.float64)

    def _primary_metric(self, d: int) -> int | None:
        sel = self.list_d == d
        if not sel.any():
            return None
        ls = np.nonzero(sel)[0]
        return int(self.list_k[ls[np.argmax(self.list_n[ls])]])

    def _scale_prior(self, k: int | None, dataset_weights: np.ndarray | None):
        """(mu, sd) for a list without observed stats."""
        lists = np.arange(len(self.list_d))
        if k is not None and (self.list_k == k).any():
            lists = lists[self.list_k == k]
        if dataset_weights is not None and dataset_weights[self.list_d[lists]].sum() > 0:
            w = dataset_weights[self.list_d[lists]]
            w = w / w.sum()
            return float(w @ self.list_mu[lists]), float(w @ self.list_sd[lists])
        return float(np.median(self.list_mu[lists])), float(np.median(self.list_sd[lists]))

    def _dataset_vector(self, dataset: str, metric: str | None, description: str | None):
        """-> (v*w [dim], mu, sd, case, attention | None, metric index).

        case is 'id' (known dataset), 'text' (unseen, described) or 'none'."""
        P = self.params
        d = self._d_index.get(dataset)
        if metric is None:
            k = self._primary_metric(d) if d is not None else None
            if k is None:  # unseen dataset: the metric its nearest datasets report
                e0 = None
                if description:
                    e0 = self._embedder([description])[0].astype(np.float32)
                elif d is not None and self.has_text[d]:
                    e0 = self.E[d]
                w = self._att_weights(e0)
                votes = np.zeros(len(self.metrics))
                for j in np.nonzero(w > 0)[0]:
                    kj = self._primary_metric(j)
                    if kj is not None:
                        votes[kj] += w[j]
                k = int(votes.argmax()) if votes.sum() > 0 else \
                    int(np.bincount(self.list_k, weights=self.list_n).argmax())
        else:
            k = self._k_index.get(metric)
        wk = P["W"][k] if k is not None else P["W"].mean(0)
        if d is not None and self.dataset_n[d] > 0:
            v = P["V"][d].astype(np.float64)
            sel = np.nonzero((self.list_d == d) & (self.list_k == (k if k is not None else -1)))[0]
            if len(sel):
                mu, sd = float(self.list_mu[sel[0]]), float(self.list_sd[sel[0]])
            else:  # known dataset, metric never observed on it
                own = np.nonzero(self.list_d == d)[0]
                mu0, sd0 = self._scale_prior(k, None)
                mu = float(np.mean(self.list_mu[own])) if k is None else mu0
                sd = float(np.mean(self.list_sd[own])) if k is None else sd0
            return v * wk, mu, sd, "id", None, k
        # unseen dataset
        text = description
        if not text and d is not None and self.has_text[d]:
            e = self.E[d]
        elif text:
            e = self._embedder([text])[0].astype(np.float32)
        else:
            e = None
        v = self._text_vector_np(e)
        att = self._att_weights(e)
        mu, sd = self._scale_prior(k, att)
        return v * wk, mu, sd, ("text" if e is not None else "none"), att, k

    def _neighbour_residual(self, models: list[str], att: np.ndarray, k: int | None) -> np.ndarray:
        """Attention-weighted residuals (observed minus warm reconstruction, z units).

        The cold prediction ``b + U (sum_j a_j V_j)`` equals the attention-weighted mix
        of the neighbours' *reconstructed* lists; adding the weighted residuals turns
        it into the mix of their *observed* scores where a model was observed, and
        leaves latent imputations elsewhere (unobserved or unseen models)."""
        out = np.zeros(len(models))
        ids = np.array([self._m_index.get(m, -1) for m in models])
        ok = ids >= 0
        for j in np.nonzero(att > 1e-4)[0]:
            ls = np.nonzero(self.list_d == j)[0]
            if not len(ls):
                continue
            same = ls[self.list_k[ls] == k] if k is not None else ls[:0]
            l = int(same[0]) if len(same) else int(ls[np.argmax(self.list_n[ls])])
            r = self.list_resid[l, ids[ok]].astype(np.float64)
            out[ok] += att[j] * np.where(np.isfinite(r), r, 0.0)
        return out

    def _model_vectors(self, models: list[str], model_features: dict[str, dict] | None):
        P = self.params
        n = len(models)
        Xn = np.zeros((n, self.X.shape[1]), dtype=np.float32)
        ids = np.full(n, -1)
        case = []
        extra = model_features or {}
        new_rows, new_pos = [], []
        for i, m in enumerate(models):
            j = self._m_index.get(m)
            if m in extra:
                new_rows.append(extra[m])
                new_pos.append(i)
            elif j is not None:
                Xn[i] = self.X[j]
            if j is not None and self.model_n[j] > 0:
                ids[i] = j
                case.append("id")
            else:
                case.append("feat")
        if new_rows:
            Xn[new_pos] = self.featurizer.transform(new_rows)
        uf, bf = self._feat_tower(P, Xn, np)
        U = uf.astype(np.float64)
        b = bf.astype(np.float64)
        known = ids >= 0
        U[known] += P["U"][ids[known]]
        b[known] += P["b"][ids[known]]
        return U, b, case


_PARAM_NAMES = ("U", "b", "V", "W", "F1", "f1", "F2", "f2", "T", "logtau", "a")


def __getattr__(name):  # lazy import keeps the baselines module optional at import time
    if name == "BASELINES":
        from zooql.methods.modellens.baselines import BASELINES

        return BASELINES
    raise AttributeError(name)
