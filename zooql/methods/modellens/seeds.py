"""ModelLens after training: the posterior over training datasets given seed scores (GIVEN),
fitting a dataset vector to the seeds, and the residual calibration of the uncertainty.
A mixin of :class:`zooql.methods.modellens.recommender.Recommender`, which owns the
parameters these methods read."""
from __future__ import annotations

import math  # noqa: F401

import numpy as np


class SeedsAndCalibration:
    def _seed_posterior(self, seeds, att, k, mu0, sd0, model_features):
        """Posterior attention over training datasets given seed scores.

        Prior: the description attention mixed with a uniform floor (the text may
        point at the wrong neighbours).  Likelihood of dataset j: Gaussian residuals
        (z units, sigma = the cold-dataset residual scale) of the seeds under the
        best affine map from j's list (observed z where the seed model was observed
        on j, latent reconstruction elsewhere) to the seed scores."""
        P = self.params
        names = [m for m, _ in seeds]
        y = np.array([s for _, s in seeds], dtype=np.float64)
        Us, bs, _ = self._model_vectors(names, model_features)
        ids = np.array([self._m_index.get(m, -1) for m in names])
        src = att > 0
        prior = 0.7 * att + 0.3 * src / max(src.sum(), 1)
        sigma = max(self.resid.get("id|text", 0.5), 0.2)
        logl = np.full(len(att), -np.inf)
        alphas = np.zeros(len(att))
        betas = np.zeros(len(att))
        for j in np.nonzero(src)[0]:
            ls = np.nonzero(self.list_d == j)[0]
            if not len(ls):
                continue
            same = ls[self.list_k[ls] == k] if k is not None else ls[:0]
            l = int(same[0]) if len(same) else int(ls[np.argmax(self.list_n[ls])])
            yt = bs + Us @ (P["V"][j] * P["W"][self.list_k[l]])
            r_obs = np.where(ids >= 0, self.list_resid[l, np.maximum(ids, 0)], np.nan)
            yt = yt + np.where(np.isfinite(r_obs), r_obs, 0.0)
            alpha, beta = _fit_affine(yt, y, sd0)
            r = (y - alpha - beta * yt) / beta
            logl[j] = -float(np.sum(r ** 2)) / (2 * sigma ** 2)
            alphas[j], betas[j] = alpha, beta
        ok = np.isfinite(logl)
        if not ok.any():
            return att, mu0, sd0
        post = np.zeros(len(att))
        lp = np.log(np.maximum(prior[ok], 1e-12)) + logl[ok]
        post[ok] = np.exp(lp - lp.max())
        post /= post.sum()
        return post, float(post @ alphas), float(post @ betas)

    def _fit_given(self, seeds, v0, mu0, sd0, model_features):
        """Ridge fit of the dataset vector from observed seed scores."""
        names = [m for m, _ in seeds]
        y = np.array([s for _, s in seeds], dtype=np.float64)
        U, b, _ = self._model_vectors(names, model_features)
        lam = self.config["given_reg"]
        n = len(y)
        v = v0.copy()
        alpha, beta = _fit_affine(b + U @ v, y, sd0)
        for _ in range(4):
            zt = (y - alpha) / beta
            r = zt - b - U @ v0
            A = U.T @ U + lam * np.eye(U.shape[1])
            v = v0 + np.linalg.solve(A, U.T @ r)
            alpha, beta = _fit_affine(b + U @ v, y, sd0)
        resid = (y - alpha - beta * (b + U @ v)) / beta
        seed_rms = float(np.sqrt(np.mean(resid ** 2))) if n > 1 else 0.0
        # the list mean: alpha is the z=0 point
        return v, alpha, beta, seed_rms

    def _calibrate(self, Y, mask):
        """Residual RMS (z units) for each (model case, dataset case)."""
        import torch

        P = {k: torch.from_numpy(v) for k, v in self.params.items()}
        Xt, Et = torch.from_numpy(self.X), torch.from_numpy(self.E)
        ht = torch.from_numpy(self.has_text)
        ld, lk = torch.from_numpy(self.list_d), torch.from_numpy(self.list_k)
        M, D = len(self.models), len(self.datasets)
        self.resid = {}
        with torch.no_grad():
            warm = self._forward(P, Xt, Et, ht, ld, lk, torch.from_numpy(self.model_n == 0),
                                 torch.from_numpy(self.dataset_n == 0)).numpy()
            self.list_resid = np.where(mask, Y - warm, np.nan).astype(np.float32)
            for mc, dm in (("id", False), ("feat", True)):
                for dc in ("id", "text", "none"):
                    drop_m = torch.full((M,), dm)
                    drop_d = torch.full((D,), dc != "id")
                    if dc == "none":
                        ht_use = torch.zeros_like(ht)
                    else:
                        ht_use = ht
                    pred = self._forward(P, Xt, Et, ht_use, ld, lk, drop_m, drop_d).numpy()
                    err = (pred - Y)[mask]
                    r = float(np.sqrt(np.mean(err ** 2))) if err.size else 1.0
                    self.resid[f"{mc}|{dc}"] = r
        # the text case is only meaningful where datasets have text
        if not self.has_text.any():
            for mc in ("id", "feat"):
                self.resid[f"{mc}|text"] = self.resid[f"{mc}|none"]


def _fit_affine(p: np.ndarray, y: np.ndarray, sd0: float, kappa: float = 3.0) -> tuple[float, float]:
    """The affine map ``y ~ alpha + beta * p`` of predictions to seed scores: the slope is
    shrunk towards the prior scale ``sd0`` (``kappa`` pseudo-seeds), and is ``sd0`` itself
    with fewer than 3 seeds or constant predictions."""
    n = len(y)
    if n >= 3 and np.var(p) > 1e-12:
        beta = float(np.cov(p, y, bias=True)[0, 1] / np.var(p))
        beta = (n * max(beta, 0.0) + kappa * sd0) / (n + kappa)
    else:
        beta = sd0
    beta = max(beta, 1e-6)
    return float(np.mean(y - beta * p)), beta
