"""Ranking metrics shared by the methods: the DCD paper's (Yang et al. 2026, App. F.2,
Eq. 54-55) beside ModelLens' LOVM / SWAB conventions, and the helpers both use (clean
score vectors, a stable descending order, Kendall's tau-b).

Our reading of Eq. 54-55 (the appendix text was not available offline):

* :func:`ndcg5_paper` -- NDCG@k with exponential gains ``2^rel - 1``: the true top-k
  models get relevance ``k, k-1, ..., 1`` (the true best ``k``), every other model 0, so
  the DCG sums over the models in the **intersection** of the predicted and the true
  top-k, at their predicted positions, ``(2^rel - 1) / log2(position + 1)``; the ideal DCG
  is the true top-k in true order. The project's :func:`~zooql.methods.modellens.metrics.ndcg_at_k`
  uses the linear gains ``rel``.
* :func:`tau5_paper` -- Kendall's tau-b between the true and the predicted scores of the
  models in the intersection of the two top-k lists; 0 when fewer than 2 models are in
  it. ModelLens' ``kendall_tau_at_k`` is 0 below 3
  (the LOVM reference code).
"""
from __future__ import annotations

import numpy as np

from scipy.stats import kendalltau


def clean_scores(true_scores, pred_scores):
    """Aligned float arrays of the models with a finite true score (a missing prediction
    ranks last)."""
    t = np.asarray(true_scores, dtype=np.float64)
    p = np.asarray(pred_scores, dtype=np.float64)
    if t.shape != p.shape:
        raise ValueError("true_scores and pred_scores must align")
    ok = np.isfinite(t)
    p = np.where(np.isfinite(p), p, -np.inf)
    return t[ok], p[ok]


def order_desc(x: np.ndarray) -> np.ndarray:
    """Indices sorting ``x`` descending; ties broken by position (stable)."""
    return np.argsort(-x, kind="stable")


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b (scipy); 0 when either side is constant."""
    if len(x) < 2:
        return 0.0
    tau = kendalltau(x, y).statistic
    return float(tau) if np.isfinite(tau) else 0.0


def ndcg5_paper(true_scores, pred_scores, k: int = 5) -> float:
    """Eq. 54 (our reading): NDCG@k over the intersection, gains ``2^rel - 1``."""
    t, p = clean_scores(true_scores, pred_scores)
    if len(t) == 0:
        return float("nan")
    k = min(int(k), len(t))
    rel = np.zeros(len(t))
    rel[order_desc(t)[:k]] = np.arange(k, 0, -1, dtype=np.float64)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = float(np.sum((2.0 ** rel[order_desc(p)[:k]] - 1.0) * disc))
    idcg = float(np.sum((2.0 ** np.arange(k, 0, -1, dtype=np.float64) - 1.0) * disc))
    return dcg / idcg


def tau5_paper(true_scores, pred_scores, k: int = 5) -> float:
    """Eq. 55 (our reading): Kendall's tau-b over the intersection of the top-k lists."""
    t, p = clean_scores(true_scores, pred_scores)
    if len(t) == 0:
        return float("nan")
    truth = set(order_desc(t)[:k].tolist())
    inter = [i for i in order_desc(p)[:k].tolist() if i in truth]
    if len(inter) < 2:
        return 0.0
    idx = np.array(inter)
    return float(kendall_tau_b(t[idx], p[idx]))
