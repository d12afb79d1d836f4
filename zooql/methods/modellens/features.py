"""ModelLens model featurizer: a generic metadata dict -> a dense token vector, used by the
recommender's cold-start model tower."""
from __future__ import annotations

import math
import re
from typing import Iterable

import numpy as np


# ----------------------------------------------------------------------------
# model featurizer (generic dict -> dense vector)
# ----------------------------------------------------------------------------

_SPLIT = re.compile(r"[^a-z0-9]+")


def _tokens_of(key: str, value) -> list[str]:
    if value is None:
        return [f"{key}:missing"]
    if isinstance(value, bool) or isinstance(value, np.bool_):
        return [f"{key}={'true' if value else 'false'}"]
    if isinstance(value, (list, tuple, set)):
        out: list[str] = []
        for v in value:
            out.extend(_tokens_of(key, v))
        return out
    s = str(value).strip().lower()
    out = [f"{key}={s}"]
    parts = [p for p in _SPLIT.split(s) if p]
    if len(parts) > 1:
        out.extend(f"{key}~{p}" for p in parts)
        out.extend(f"{key}~{a}_{b}" for a, b in zip(parts, parts[1:]))
    return out


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


class ModelFeaturizer:
    """Turns ``{model: {feature: value}}`` dicts into a dense float matrix.

    * numbers -> standardised (log10 first when positive and spanning > 2 decades),
      missing or non-finite -> 0 plus a ``key:missing`` indicator token;
    * strings -> one-hot tokens ``key=value`` plus sub-word tokens ``key~part`` and
      ``key~part1_part2`` (so ``laion2b_s34b_b79k`` shares ``laion2b`` with
      ``laion2b_s13b_b90k``);  lists -> union of tokens;  bools -> one token.

    Tokens seen fewer than ``min_count`` times in the fit set are dropped and the
    ``max_tokens`` most frequent kept, so the same state featurizes unseen models.
    """

    def __init__(self, min_count: int = 2, max_tokens: int = 384):
        self.min_count = min_count
        self.max_tokens = max_tokens
        self.numeric: list[str] = []
        self.num_log: list[bool] = []
        self.num_mu: list[float] = []
        self.num_sd: list[float] = []
        self.tokens: list[str] = []
        self._tok_index: dict[str, int] = {}

    @property
    def dim(self) -> int:
        return len(self.numeric) + len(self.tokens)

    def fit(self, feats: Iterable[dict]) -> "ModelFeaturizer":
        feats = [f or {} for f in feats]
        keys_num: dict[str, list[float]] = {}
        keys_other: set[str] = set()
        for f in feats:
            for k, v in f.items():
                if _is_number(v):
                    keys_num.setdefault(k, [])
                else:
                    keys_other.add(k)
        self.numeric = sorted(k for k in keys_num if k not in keys_other)
        self.num_log, self.num_mu, self.num_sd = [], [], []
        for k in self.numeric:
            vals = np.array([float(f[k]) for f in feats if _is_number(f.get(k))], dtype=np.float64)
            vals = vals[np.isfinite(vals)]
            use_log = bool(len(vals) and vals.min() > 0 and vals.max() / vals.min() > 100)
            if use_log:
                vals = np.log10(vals)
            self.num_log.append(use_log)
            self.num_mu.append(float(vals.mean()) if len(vals) else 0.0)
            self.num_sd.append(float(vals.std()) if len(vals) and vals.std() > 0 else 1.0)
        counts: dict[str, int] = {}
        numeric = set(self.numeric)
        for f in feats:
            toks = set()
            for k, v in f.items():
                if k in numeric:
                    if not (_is_number(v) and math.isfinite(float(v))):
                        toks.add(f"{k}:missing")
                    continue
                toks.update(_tokens_of(k, v))
            for t in toks:
                counts[t] = counts.get(t, 0) + 1
        n = max(len(feats), 1)
        cand = [t for t, c in counts.items() if c >= self.min_count and c < n]
        cand.sort(key=lambda t: (-counts[t], t))
        self.tokens = cand[: self.max_tokens]
        self._tok_index = {t: i for i, t in enumerate(self.tokens)}
        return self

    def transform(self, feats: Iterable[dict]) -> np.ndarray:
        feats = [f or {} for f in feats]
        nn = len(self.numeric)
        X = np.zeros((len(feats), self.dim), dtype=np.float32)
        numeric = set(self.numeric)
        for i, f in enumerate(feats):
            for j, k in enumerate(self.numeric):
                v = f.get(k)
                if _is_number(v) and math.isfinite(float(v)) and (not self.num_log[j] or float(v) > 0):
                    x = math.log10(float(v)) if self.num_log[j] else float(v)
                    X[i, j] = np.clip((x - self.num_mu[j]) / self.num_sd[j], -5, 5)
                elif f"{k}:missing" in self._tok_index:
                    X[i, nn + self._tok_index[f"{k}:missing"]] = 1.0
            for k, v in f.items():
                if k in numeric:
                    continue
                for t in _tokens_of(k, v):
                    idx = self._tok_index.get(t)
                    if idx is not None:
                        X[i, nn + idx] = 1.0
        return X

    def state(self) -> dict:
        return {"min_count": self.min_count, "max_tokens": self.max_tokens,
                "numeric": self.numeric, "num_log": self.num_log, "num_mu": self.num_mu,
                "num_sd": self.num_sd, "tokens": self.tokens}

    @classmethod
    def from_state(cls, st: dict) -> "ModelFeaturizer":
        f = cls(st["min_count"], st["max_tokens"])
        f.numeric = list(st["numeric"])
        f.num_log = [bool(x) for x in st["num_log"]]
        f.num_mu = [float(x) for x in st["num_mu"]]
        f.num_sd = [float(x) for x in st["num_sd"]]
        f.tokens = list(st["tokens"])
        f._tok_index = {t: i for i, t in enumerate(f.tokens)}
        return f


# ----------------------------------------------------------------------------
# the recommender
# ----------------------------------------------------------------------------

_DEFAULTS = dict(dim=32, epochs=300, lr=0.03, reg=1e-3, loss="listnet", seed=0,
                 id_dropout=0.5, temperature=0.5, rank_weight=1.0, mse_weight=0.5,
                 hidden=64, bpr_pairs=64, feat_reg=1e-3, text_linear=False,
                 given_reg=1.0, max_tokens=384, dataset_dropout=None, att_reg=1e-2,
                 dropout_mode="expected", neighbour_residual=True,
                 given_ridge_min=25, tau_min=0.0)
