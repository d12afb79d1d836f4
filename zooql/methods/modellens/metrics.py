"""Ranking metrics for RECOMMEND (LOVM / SWAB conventions): NDCG@k, Kendall tau@k, recall@k,
top-1 regret and Spearman, over true and predicted score vectors."""
from __future__ import annotations

import math

import numpy as np

from zooql.runtime.ranking import clean_scores as _clean, kendall_tau_b as _kendall_tau_b, order_desc as _order


# ----------------------------------------------------------------------------
# ranking metrics (LOVM / SWAB conventions)
# ----------------------------------------------------------------------------

def ndcg_at_k(true_scores, pred_scores, k: int = 5, gain: str = "rank") -> float:
    """NDCG@k of the predicted ranking against true scores.

    ``gain='rank'`` (default, graded top-k relevance): the true best model has
    relevance ``k``, the second ``k-1``, ..., the k-th ``1``, every other model 0.
    This rewards getting the truly best models to the top and is the harsh
    variant used for the model-selection tables (a random ranking of ~100 models
    scores ~0.05).  ``gain='score'``: relevance is the true score min-max scaled
    to [0, 1] within the list (a lenient variant, ~0.9 for any sensible ranking).
    Discount is ``1/log2(rank+1)``.  NaN true scores are ignored.
    """
    t, p = _clean(true_scores, pred_scores)
    n = len(t)
    if n == 0:
        return float("nan")
    k = min(k, n)
    if gain == "rank":
        rel = np.zeros(n)
        top = _order(t)[:k]
        rel[top] = np.arange(k, 0, -1, dtype=np.float64)
    elif gain == "score":
        lo, hi = t.min(), t.max()
        rel = (t - lo) / (hi - lo) if hi > lo else np.ones(n)
    else:
        raise ValueError(f"unknown gain {gain!r}")
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = float(np.sum(rel[_order(p)[:k]] * disc))
    idcg = float(np.sum(np.sort(rel)[::-1][:k] * disc))
    return dcg / idcg if idcg > 0 else 0.0


def ndcg_lovm_at_k(true_scores, pred_scores, k: int = 5, rel_scale: float | None = None) -> float:
    """NDCG@k in the LOVM / DCD definition (DCD App. F.2, Eq. 54-55).

    The gain of a model is ``2**rel - 1`` with ``rel`` its true score, and only models in
    *both* the predicted top-k and the true top-k earn it:
    ``DCG = sum_{i in P_k, i in T_k} (2**rel_i - 1) / log2(pos_P(i) + 1)`` over positions
    ``pos_P = 1..k`` of the predicted top-k ``P_k``; ``IDCG`` is the same sum over the true
    top-k ``T_k`` in its own order. ``rel`` is the score as a fraction: ``rel_scale=None``
    uses the score itself when every |score| <= 1.5 and score / 100 otherwise (a table in
    percent). NaN true scores are ignored.
    """
    t, p = _clean(true_scores, pred_scores)
    n = len(t)
    if n == 0:
        return float("nan")
    k = min(k, n)
    if rel_scale is None:
        rel_scale = 1.0 if float(np.max(np.abs(t))) <= 1.5 else 0.01
    gain = np.power(2.0, t * rel_scale) - 1.0
    true_top = _order(t)[:k]
    in_true = np.zeros(n, dtype=bool)
    in_true[true_top] = True
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    pred_top = _order(p)[:k]
    dcg = float(np.sum(np.where(in_true[pred_top], gain[pred_top], 0.0) * disc))
    idcg = float(np.sum(gain[true_top] * disc))
    return dcg / idcg if idcg > 0 else 0.0


def kendall_tau_at_k(true_scores, pred_scores, k: int = 5) -> float:
    """Kendall's tau over the intersection of the predicted and the true top-k.

    LOVM / SWAB definition: take the models in both the predicted top-k and the
    true top-k, and compute Kendall's tau(-b) between their true and predicted
    scores.  As in the LOVM reference code, the value is 0 when the intersection
    has fewer than 3 models (a tau over 2 items is only +-1 noise).
    """
    t, p = _clean(true_scores, pred_scores)
    if len(t) == 0:
        return float("nan")
    tt = set(_order(t)[:k].tolist())
    pp = _order(p)[:k].tolist()
    inter = [i for i in pp if i in tt]
    if len(inter) < 3:
        return 0.0
    idx = np.array(inter)
    return float(_kendall_tau_b(t[idx], p[idx]))


def recall_at_k(true_scores, pred_scores, k: int = 5) -> float:
    """|predicted top-k  intersect  true top-k| / k  (LOVM's top-k 'acc')."""
    t, p = _clean(true_scores, pred_scores)
    if len(t) == 0:
        return float("nan")
    k = min(k, len(t))
    return len(set(_order(t)[:k].tolist()) & set(_order(p)[:k].tolist())) / k


def top1_regret(true_scores, pred_scores) -> float:
    """True score of the best model minus true score of the predicted best (>= 0)."""
    t, p = _clean(true_scores, pred_scores)
    if len(t) == 0:
        return float("nan")
    return float(t.max() - t[_order(p)[0]])


def rankdata(x: np.ndarray) -> np.ndarray:
    """0-based ascending ranks of ``x``; tied values share their mean rank."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    # average ties
    xs = x[order]
    i = 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[i]:
            j += 1
        if j > i:
            ranks[order[i:j + 1]] = (i + j) / 2.0
        i = j + 1
    return ranks


def spearman(true_scores, pred_scores) -> float:
    """Spearman rank correlation over all models (ties averaged)."""
    t, p = _clean(true_scores, pred_scores)
    if len(t) < 2:
        return float("nan")
    p = np.where(np.isfinite(p), p, np.nanmin(np.where(np.isfinite(p), p, np.nan)) - 1)
    a, b = rankdata(t), rankdata(p)
    a -= a.mean()
    b -= b.mean()
    den = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0
