"""RECOMMEND data containers: leaderboard records (model, dataset, metric, score) and side
information (dataset descriptions, model feature dicts)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np


# ----------------------------------------------------------------------------
# data containers
# ----------------------------------------------------------------------------

@dataclass
class Records:
    """Long-format leaderboard records with integer-coded model/dataset/metric."""

    models: list[str]
    datasets: list[str]
    metrics: list[str]
    m_idx: np.ndarray
    d_idx: np.ndarray
    k_idx: np.ndarray
    score: np.ndarray

    def __post_init__(self):
        self.m_idx = np.asarray(self.m_idx, dtype=np.int64)
        self.d_idx = np.asarray(self.d_idx, dtype=np.int64)
        self.k_idx = np.asarray(self.k_idx, dtype=np.int64)
        self.score = np.asarray(self.score, dtype=np.float64)
        n = len(self.score)
        if not (len(self.m_idx) == len(self.d_idx) == len(self.k_idx) == n):
            raise ValueError("Records arrays must have equal length")

    def __len__(self) -> int:
        return int(len(self.score))

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str, str, float]]) -> "Records":
        """Build from ``(model, dataset, metric, score)`` tuples.

        Rows with a missing/NaN score are skipped; duplicate (model, dataset,
        metric) triples are averaged.  Vocabularies keep first-seen order.
        """
        mi: dict[str, int] = {}
        di: dict[str, int] = {}
        ki: dict[str, int] = {}
        acc: dict[tuple[int, int, int], list[float]] = {}
        for row in rows:
            m, d, k, s = row
            if s is None:
                continue
            s = float(s)
            if not math.isfinite(s):
                continue
            key = (mi.setdefault(str(m), len(mi)), di.setdefault(str(d), len(di)),
                   ki.setdefault(str(k) if k is not None else "score", len(ki)))
            acc.setdefault(key, []).append(s)
        keys = list(acc)
        arr = np.array(keys, dtype=np.int64).reshape(-1, 3)
        return cls(models=list(mi), datasets=list(di), metrics=list(ki),
                   m_idx=arr[:, 0], d_idx=arr[:, 1], k_idx=arr[:, 2],
                   score=np.array([float(np.mean(acc[k])) for k in keys], dtype=np.float64))

    @classmethod
    def from_arrow(cls, table, model: str = "model", dataset: str = "dataset",
                   metric: str | None = "metric", score: str = "score") -> "Records":
        """Build from a pyarrow Table (or anything with ``.column(name).to_pylist()``)."""
        ms = table.column(model).to_pylist()
        ds = table.column(dataset).to_pylist()
        ks = table.column(metric).to_pylist() if metric else ["score"] * len(ms)
        ss = table.column(score).to_pylist()
        return cls.from_rows(zip(ms, ds, ks, ss))

    def rows(self) -> list[tuple[str, str, str, float]]:
        return [(self.models[m], self.datasets[d], self.metrics[k], float(s))
                for m, d, k, s in zip(self.m_idx, self.d_idx, self.k_idx, self.score)]

    def subset(self, mask: np.ndarray) -> "Records":
        """Records where ``mask`` is true; vocabularies are kept unchanged."""
        mask = np.asarray(mask, dtype=bool)
        return Records(list(self.models), list(self.datasets), list(self.metrics),
                       self.m_idx[mask], self.d_idx[mask], self.k_idx[mask], self.score[mask])

    def compact(self) -> "Records":
        """Drop vocabulary entries that have no record (re-codes indices)."""
        um, m_new = np.unique(self.m_idx, return_inverse=True)
        ud, d_new = np.unique(self.d_idx, return_inverse=True)
        uk, k_new = np.unique(self.k_idx, return_inverse=True)
        return Records([self.models[i] for i in um], [self.datasets[i] for i in ud],
                       [self.metrics[i] for i in uk], m_new, d_new, k_new, self.score.copy())

    def matrix(self, dataset: str, metric: str | None = None) -> dict[str, float]:
        """``{model: score}`` of one (dataset, metric) list (primary metric if None)."""
        d = self.datasets.index(dataset)
        sel = self.d_idx == d
        if metric is None:
            ks, cnt = np.unique(self.k_idx[sel], return_counts=True)
            k = int(ks[np.argmax(cnt)])
        else:
            k = self.metrics.index(metric)
        sel &= self.k_idx == k
        return {self.models[m]: float(s) for m, s in zip(self.m_idx[sel], self.score[sel])}


@dataclass
class SideInfo:
    """Optional side features: dataset descriptions and model feature dicts."""

    dataset_text: dict[str, str] = field(default_factory=dict)
    model_features: dict[str, dict] = field(default_factory=dict)
