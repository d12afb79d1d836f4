"""ProbeLog evaluation helpers: the paper's model-level baseline and retrieval metrics.

Used by ``benchmarks/probelog_quality.py`` and ``benchmarks/collab_probing.py`` (and
tested on hand-computed cases in ``tests/test_probelog_metrics.py``).

* **Model-level baseline** (ProbeLog, Section 5.1): a model is represented by a single
  descriptor, the average of its logit descriptors (:func:`model_mean_descriptors`);
  a query descriptor (a logit or a text) ranks models by the L2 distance to that
  average over all probes (:func:`model_mean_rank`). A ranked model is a correct hit
  when it has the query's concept at all (the model descriptor names no logit).
  ZooQL's own model-level comparison, a one-sided Chamfer distance between logit sets
  (:func:`zooql.methods.probelog.kernels.model_search`), is a different method.
* **Top-k accuracy**: a query is correct when at least one of its ``k`` first results
  has its concept (:func:`topk_accuracy`).
* **Top-k precision** (the paper reports top-5 precision): the fraction of the ``k``
  first results that have the query's concept, averaged over queries
  (:func:`topk_precision`); a query with fewer than ``k`` results counts the missing
  ones as wrong.
"""
from __future__ import annotations

import numpy as np

__all__ = ["model_mean_descriptors", "model_mean_rank", "topk_accuracy", "topk_precision", "hits_matrix"]


def model_mean_descriptors(D: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The paper's model descriptors: for every model, the mean of its logit descriptors.

    ``D``: logit descriptors ``[n probes, C logits]``; ``owner[c]``: the model of logit
    ``c``. Returns ``(model_ids [M] ascending, descriptors [n, M])`` (float64)."""
    D = np.asarray(D, dtype=np.float64)
    owner = np.asarray(owner).ravel()
    if D.ndim != 2 or D.shape[1] != owner.shape[0]:
        raise ValueError(f"descriptors {D.shape} and owners {owner.shape} disagree")
    ids, inv = np.unique(owner, return_inverse=True)
    S = np.zeros((D.shape[0], ids.shape[0]))
    np.add.at(S.T, inv, D.T)
    return ids, S / np.bincount(inv, minlength=ids.shape[0])[None, :]


def model_mean_rank(query: np.ndarray, model_desc: np.ndarray, exclude=None) -> np.ndarray:
    """Rank models (columns of ``model_desc`` [n, M]) by the L2 distance between the
    query descriptor ``[n]`` and their averaged descriptor, nearest first (ties: lower
    column). ``exclude``: columns to leave out (e.g. the query's own model)."""
    q = np.asarray(query, dtype=np.float64).ravel()
    d = np.sqrt(((np.asarray(model_desc, np.float64) - q[:, None]) ** 2).sum(0))
    if exclude is not None:
        d[np.asarray(exclude, dtype=np.int64)] = np.inf
    order = np.lexsort((np.arange(d.shape[0]), d))
    return order[np.isfinite(d[order])]


def hits_matrix(retrieved_concepts, query_concepts, k: int) -> np.ndarray:
    """``[Q, k]`` bool: whether result ``j`` of query ``i`` has the query's concept.

    ``retrieved_concepts``: one sequence of concepts per query (best first; shorter
    than ``k`` is padded as misses); ``query_concepts[i]``: the concept of query ``i``."""
    qc = list(query_concepts)
    out = np.zeros((len(qc), int(k)), bool)
    for i, (r, c) in enumerate(zip(retrieved_concepts, qc)):
        r = list(r)[: int(k)]
        out[i, : len(r)] = [x == c for x in r]
    return out


def topk_accuracy(retrieved_concepts, query_concepts, k: int) -> float:
    """Fraction of queries with at least one correct result among their first ``k``."""
    h = hits_matrix(retrieved_concepts, query_concepts, k)
    return float(h.any(1).mean()) if h.shape[0] else float("nan")


def topk_precision(retrieved_concepts, query_concepts, k: int = 5) -> float:
    """Mean over queries of the fraction of their first ``k`` results that are correct."""
    h = hits_matrix(retrieved_concepts, query_concepts, k)
    return float(h.mean(1).mean()) if h.shape[0] else float("nan")
