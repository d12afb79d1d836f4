"""Near-copy clusters found from a search's own answers, and pooled scores at the cuts
(option ``pool`` of ``grouped_halving``, :mod:`~.grouped`).

Real model trees are full of re-uploads, quantisations and light fine-tunes of one parent.
Such copies answer almost every query alike (97-100% agreement on the clustered design
trees, against 72-76% for models of different lineages at the same level), so a few dozen
*shared* answers tell a copy pair from an unrelated one. Two uses:

* **Detect** (:func:`copy_clusters`). Two survivors are linked when, on the queries both
  answered, they disagree on at most ``frac`` times the number of disagreements expected
  of two *independent* models of their abilities, and that expectation is at least
  ``e_min`` (enough shared evidence). The expectation comes from a Rasch model fitted to
  every answer of the search (:func:`~.grouped.rasch_fit`): abilities ``theta_i`` and the
  population of the answered queries' difficulties ``b``; the rate of pair ``(i, j)`` is
  the mean over that population of ``p_i (1 - p_j) + p_j (1 - p_i)``, so two strong models
  (who agree on most queries anyway) need more shared answers than two mid-level ones.
  The population, not the shared queries' own difficulties, is used on purpose: when the
  survivors are mostly copies of one lineage, a shared query's difficulty is estimated
  from those copies themselves, who all answer it alike, and would make every shared
  query look uninformative. Clusters are the connected components of the links: copies
  of one parent form a clique, so one surviving link per member keeps them together, and
  the strict threshold keeps chance links (which would chain unrelated models) rare.
* **Estimate** (:func:`pooled_scores`). A member of a cluster scores ``level + dev``:
  ``level`` is the cluster's effect in the additive fit ``y = a + d_q`` over the *union*
  of its members' answers (the cluster is one row of the fit, its answer on a query the
  members' mean), so a 25-copy lineage is measured on up to 25 times more distinct
  queries than a singleton;
  ``dev`` is its own paired deviation from its mates on the queries it shares with them
  (its answer minus the mates' mean answer), shrunk toward 0 by ``n / (n + kappa)``.
  A singleton keeps its own additive-fit effect, on the same scale.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

E_MIN = 10.0     # expected disagreements of an independent pair needed before a link
FRAC = 0.15      # a link allows at most this share of the expected disagreements
KAPPA = 200.0    # shrinkage of a member's own deviation: n / (n + kappa)


def pair_stats(Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pair of rows of ``Y`` (NaN = not answered): the number of queries both
    answered, and the sum of squared differences of their answers on them (the number of
    disagreements for 0/1 answers)."""
    O = (~np.isnan(Y)).astype(np.float64)
    Y0 = np.where(O > 0, Y, 0.0).astype(np.float64)
    Y2 = Y0 * Y0
    n = O @ O.T
    D = Y2 @ O.T + O @ Y2.T - 2.0 * (Y0 @ Y0.T)
    return n, np.maximum(D, 0.0)


def independent_rates(theta: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pair of abilities ``theta``: the chance that two independent Rasch answerers
    disagree on a query drawn from the difficulties ``b``."""
    P = 1.0 / (1.0 + np.exp(-(theta[:, None] - b[None, :])))
    return (P @ (1.0 - P).T + (1.0 - P) @ P.T) / max(b.size, 1)


def copy_clusters(Y: np.ndarray, theta: np.ndarray, b: np.ndarray, e_min: float = E_MIN,
                  frac: float = FRAC) -> np.ndarray:
    """Cluster label of each row of ``Y`` (module docstring): rows ``i``, ``j`` are linked
    when ``e = n_ij * rate_ij >= e_min`` and their disagreements ``<= frac * e``."""
    n, D = pair_stats(Y)
    e = n * independent_rates(theta, b)
    link = (e >= e_min) & (D <= frac * e)
    np.fill_diagonal(link, False)
    return connected_components(csr_matrix(link), directed=False)[1]


def collapse(Y: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """One row per cluster: its members' mean answer on each query (NaN where none
    answered)."""
    obs = ~np.isnan(Y)
    n_c = labels.max() + 1 if labels.size else 0
    cnt = np.zeros((n_c, Y.shape[1]))
    tot = np.zeros((n_c, Y.shape[1]))
    np.add.at(cnt, labels, obs)
    np.add.at(tot, labels, np.where(obs, Y, 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)


def pooled_scores(Y: np.ndarray, labels: np.ndarray, fit: Callable[[np.ndarray], np.ndarray],
                  kappa: float = KAPPA) -> np.ndarray:
    """``level + dev`` per row of ``Y`` [n, Q] (answers, NaN = not answered), in the
    clusters ``labels`` of :func:`copy_clusters` (module docstring).

    ``level``: the effects ``fit(Z)`` of the additive fit over the collapsed matrix ``Z``
    (:func:`collapse`: one row per cluster, a singleton's row is its own answers). The fit
    sees a cluster once per query: copies answer alike, so counting them as independent
    answerers would let the query effects absorb the cluster's own luck on the queries only
    it answered. ``dev``: 0 for a singleton; for a member, its paired deviation from its
    mates' mean answer on the queries it shares with them, ``sum / (n + kappa)``."""
    out = np.asarray(fit(collapse(Y, labels)), dtype=np.float64)[labels]
    obs = ~np.isnan(Y)
    Y0 = np.where(obs, Y, 0.0).astype(np.float64)
    for c in np.flatnonzero(np.bincount(labels) > 1):
        rows = np.flatnonzero(labels == c)
        o, y = obs[rows], Y0[rows]
        mates_n = o.sum(axis=0)[None, :] - o                 # mates answering each query
        mates_mean = (y.sum(axis=0)[None, :] - y) / np.maximum(mates_n, 1)
        paired = o & (mates_n > 0)
        out[rows] += np.where(paired, y - mates_mean, 0.0).sum(axis=1) / (paired.sum(axis=1) + kappa)
    return out
