"""Simulated model trees with dense clusters of near-identical fine-tunes and broken uploads.

The Hidden Gems paper (Kahana, Horwitz & Hoshen 2026) describes real model trees as mostly
redundant: many fine-tunes are re-uploads, quantisations or light fine-tunes of the base
model or of a popular fine-tune, so they score (and answer) almost exactly like their
parent; a few uploads are broken (near-zero accuracy); and a handful of lineages are
genuinely different, some of them better than the base (the hidden gems). The real
score trees of ``benchmarks/discover_bench.py`` (``llm_trees.parquet`` + the IRT
simulator) have none of that redundancy at the query level: every model answers
independently given its ability. This module builds trees that do.

Construction (``clustered_tree``), for ``M`` models and a pool of ``Q`` queries:

* **Heads.** The base model (score ``base_score``) and ``n_lineages`` lineage heads with
  scores ``base_score + lineage_shift + lineage_sd * N(0, 1)`` (clipped to [0.02, 0.98]).
* **Broken uploads.** ``round(broken_share * M)`` models (at least 1) with scores
  ``U(0, 0.03)`` and their own outcomes.
* **Near-duplicates.** Every other model copies a head: the base with probability
  ``dup_share``, else a lineage drawn with Zipf weights ``1 / rank`` over a random order
  of the lineages (so a few lineages have many copies, most have one or two). A copy is
  an exact re-upload with probability ``exact_share`` (identical outcomes, so identical
  full score); otherwise a variant with score ``head + dup_sd * N(0, 1)``.
* **Outcomes.** 2PL IRT as in :mod:`~.irt_sim` (shared query difficulty ``b_j``, abilities
  fitted to the scores) with *common random numbers*: model ``i`` answers query ``j``
  correctly iff ``U_ij < P(i, j)``, where a copy reuses its head's ``U_hj`` except on a
  random ``flip`` share of the queries, where it draws afresh. Copies of one head thus
  agree on almost every query, as re-uploads and quantisations do.

Ground truth for benchmarks is the realised full-pool accuracy (``full_scores``); exact
re-uploads tie, and the rank of a returned model is ``1 + #{models strictly better}``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zooql.testing.irt_sim import IRTPool, _sigmoid, fit_abilities


@dataclass
class ClusteredTree:
    outcomes: np.ndarray    # uint8 [M, Q]
    target: np.ndarray      # the scores the abilities were fitted to [M]
    head: np.ndarray        # index of the model each one copies (itself for heads and broken uploads)
    kind: np.ndarray        # "base", "lineage", "reupload", "variant", "broken" per model

    full_scores = IRTPool.full_scores     # mean outcome per model
    oracle = IRTPool.oracle               # (models, queries) -> outcomes


def _assign_heads(rng, n_copies: int, n_lineages: int, dup_share: float) -> np.ndarray:
    """Head of each copy: 0 (the base) or 1..n_lineages (Zipf weights over a random order)."""
    w = 1.0 / np.arange(1, n_lineages + 1)
    w = w[rng.permutation(n_lineages)]
    w = (1.0 - dup_share) * w / w.sum()
    p = np.concatenate([[dup_share], w])
    return rng.choice(n_lineages + 1, size=n_copies, p=p)


def clustered_tree(n_models: int = 500, n_queries: int = 2500, base_score: float = 0.55,
                   n_lineages: int = 40, dup_share: float = 0.5, lineage_shift: float = -0.02,
                   lineage_sd: float = 0.05, dup_sd: float = 0.003, exact_share: float = 0.3,
                   flip: float = 0.03, broken_share: float = 0.03, difficulty_sd: float = 2.5,
                   seed: int = 0) -> ClusteredTree:
    """A simulated tree of ``n_models`` with near-duplicate clusters (module docstring)."""
    rng = np.random.default_rng(seed)
    M, Q = int(n_models), int(n_queries)
    n_broken = max(1, int(round(broken_share * M)))
    n_copies = M - n_broken - 1 - n_lineages
    if n_copies < 0:
        raise ValueError("n_models too small for the lineages and broken uploads asked for")
    heads = 1 + n_lineages
    score = np.empty(M)
    head = np.arange(M)
    kind = np.empty(M, dtype=object)
    score[0], kind[0] = base_score, "base"
    score[1:heads] = base_score + lineage_shift + lineage_sd * rng.standard_normal(n_lineages)
    kind[1:heads] = "lineage"
    c = slice(heads, heads + n_copies)
    head[c] = _assign_heads(rng, n_copies, n_lineages, dup_share)
    exact = rng.random(n_copies) < exact_share
    score[c] = score[head[c]] + np.where(exact, 0.0, dup_sd * rng.standard_normal(n_copies))
    kind[c] = np.where(exact, "reupload", "variant")
    score[heads + n_copies:] = rng.uniform(0.0, 0.03, size=n_broken)
    kind[heads + n_copies:] = "broken"
    score = np.clip(score, 0.0, 0.98)

    b = rng.normal(0.0, difficulty_sd, size=Q) if difficulty_sd > 0 else np.zeros(Q)
    a = np.ones(Q)
    theta = fit_abilities(score, b, a)
    th = theta.copy()
    th[c] = np.where(exact, theta[head[c]], theta[c])      # re-uploads: the very same model
    U = rng.random((M, Q), dtype=np.float32)
    fresh = rng.random((n_copies, Q)) < np.where(exact, 0.0, flip)[:, None]
    U[c] = np.where(fresh, U[c], U[head[c]])
    out = np.empty((M, Q), dtype=np.uint8)
    for s in range(0, M, 256):
        P = _sigmoid(th[s:s + 256, None] - b[None, :])
        out[s:s + 256] = U[s:s + 256] < P
    # exact re-uploads: identical outcome rows (the float32 abilities above are identical too)
    out[heads:heads + n_copies][exact] = out[head[c][exact]]
    # random model order, so that no strategy can profit from index order
    perm = rng.permutation(M)
    inv = np.empty(M, dtype=np.int64)
    inv[perm] = np.arange(M)
    return ClusteredTree(outcomes=out[perm], target=score[perm], head=inv[head[perm]], kind=kind[perm])
