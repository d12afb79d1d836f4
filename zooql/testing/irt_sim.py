"""Item-response simulator of per-query outcomes for a model tree.

Real leaderboards give one aggregate score per model (e.g. GSM8K accuracy), but a
query-budgeted search needs per-(model, query) outcomes. We simulate them with a
two-parameter logistic item-response model (2PL IRT):

    P(model i answers query j correctly) = sigmoid(a_j * (theta_i - b_j))

* ``b_j ~ N(0, difficulty_sd)``: query difficulty, shared by all models. This is what
  makes outcomes of different models *correlated* (hard questions are hard for
  everyone), the structure that correlated sampling exploits. ``difficulty_sd = 0``
  gives independent Bernoulli outcomes. The default 2.5 is calibrated on real data: the
  mean between-model correlation of binarised per-query GSM8K outcomes of the 7 LLMs in
  ``router_outcomes.parquet`` is 0.42, and this simulator gives 0.43 for the same
  accuracies (1.5 gives 0.27; MMLU outcomes are more correlated, 0.64, Winogrande less).
* ``a_j``: discrimination; 1 by default, ``LogNormal(0, discrimination_sd)`` if
  ``discrimination_sd > 0``.
* ``theta_i``: ability, solved by vectorised bisection so that the model's *expected*
  accuracy over the pool equals its real score: ``mean_j P(i, j) = score_i``
  (the mean is monotone increasing in ``theta_i``, so bisection converges; scores are
  clipped to [1e-4, 1 - 1e-4]).

Outcomes are Bernoulli draws, ``uint8`` matrix ``[M, n_queries]`` (default 2,500
queries). The realised full-pool accuracy of a model differs from its real score by
sampling noise (sd about ``sqrt(p(1-p)/2500)``, about 0.9 points), so benchmarks must use the
*realised* full-evaluation accuracy as ground truth, not the input scores.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class IRTPool:
    outcomes: np.ndarray      # uint8 [M, Q]
    theta: np.ndarray         # [M]
    difficulty: np.ndarray    # b_j [Q]
    discrimination: np.ndarray  # a_j [Q]
    target: np.ndarray        # the scores the abilities were fitted to [M]

    @property
    def full_scores(self) -> np.ndarray:
        """Full-evaluation accuracy of each model on the simulated pool."""
        return self.outcomes.mean(axis=1)

    def oracle(self):
        out = self.outcomes

        def f(models: np.ndarray, queries: np.ndarray) -> np.ndarray:
            return out[models, queries]
        return f


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def fit_abilities(scores: np.ndarray, difficulty: np.ndarray, discrimination: np.ndarray,
                  iters: int = 50, chunk: int = 512) -> np.ndarray:
    """theta_i with ``mean_j sigmoid(a_j (theta_i - b_j)) = scores_i`` (bisection)."""
    p = np.clip(np.asarray(scores, dtype=np.float64), 1e-4, 1 - 1e-4)
    b = np.asarray(difficulty, dtype=np.float32)
    a = np.asarray(discrimination, dtype=np.float32)
    span = float(np.abs(b).max() + 12.0 / max(float(a.min()), 1e-3))
    theta = np.empty(p.size)
    for s in range(0, p.size, chunk):       # chunked to bound memory ([chunk, Q] floats)
        pp = p[s:s + chunk]
        lo = np.full(pp.size, -span)
        hi = np.full(pp.size, span)
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            m = _sigmoid(a[None, :] * (mid[:, None].astype(np.float32) - b[None, :])).mean(axis=1)
            up = m < pp
            lo = np.where(up, mid, lo)
            hi = np.where(up, hi, mid)
        theta[s:s + chunk] = 0.5 * (lo + hi)
    return theta


def simulate(scores, n_queries: int = 2500, difficulty_sd: float = 2.5,
             discrimination_sd: float = 0.0, seed: int = 0) -> IRTPool:
    """Simulate a ``[len(scores), n_queries]`` outcome matrix whose per-model expected
    accuracy equals ``scores`` (fractions in [0, 1])."""
    rng = np.random.default_rng(seed)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or np.isnan(scores).any():
        raise ValueError("scores must be a 1-d array without NaN")
    b = rng.normal(0.0, difficulty_sd, size=n_queries) if difficulty_sd > 0 else np.zeros(n_queries)
    a = rng.lognormal(0.0, discrimination_sd, size=n_queries) if discrimination_sd > 0 else np.ones(n_queries)
    theta = fit_abilities(scores, b, a)
    out = np.empty((scores.size, n_queries), dtype=np.uint8)
    for s in range(0, scores.size, 512):
        P = _sigmoid(a[None, :] * (theta[s:s + 512, None] - b[None, :]))
        out[s:s + 512] = rng.random(P.shape) < P
    return IRTPool(outcomes=out, theta=theta, difficulty=b, discrimination=a, target=scores)
