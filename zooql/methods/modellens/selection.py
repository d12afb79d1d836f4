"""The choice TRAIN RECOMMENDER's validation made (method, blend weights, validation table),
stored with the trained recommender's state."""
from __future__ import annotations

from dataclasses import dataclass, field  # noqa: F401

import numpy as np  # noqa: F401


@dataclass
class Selection:
    """What the validation chose. ``weights`` is ``{method: weight}`` (one entry, 1.0, for a
    pure method); ``table`` is ``{candidate: {"ndcg5", "ndcg5_lovm", "tau5"}}`` with the
    nested figure for ``blend``; ``folds`` are the validation datasets."""

    method: str
    weights: dict
    table: dict = field(default_factory=dict)
    folds: list = field(default_factory=list)
    n_datasets: int = 0
    lists: int = 0
    seconds: float = 0.0
    note: str | None = None

    def weights_text(self) -> dict:
        return {m: round(float(w), 2) for m, w in self.weights.items() if w > 0}

    def describe(self) -> str:
        """``method=blend weights={modellens: 0.6, avg_rank: 0.4}`` (EXPLAIN's form)."""
        if self.method != "blend":
            return f"method={self.method}"
        return "method=blend weights={" + ", ".join(f"{m}: {w:g}" for m, w in self.weights_text().items()) + "}"

    def summary(self) -> str:
        """One line for TRAIN RECOMMENDER's message: the validation table and the choice."""
        if not self.table:
            return f"no validation ({self.note}); {self.describe()}"
        cells = ", ".join(f"{m} {v['ndcg5']:.3f}" for m, v in self.table.items())
        return (f"validation NDCG@5 (leave-one-dataset-out over {len(self.folds)} of {self.n_datasets} "
                f"datasets, {self.lists} lists, {self.seconds:.0f}s): {cells}; chose {self.describe()}")

    def to_json(self) -> dict:
        return {"method": self.method, "weights": dict(self.weights), "table": self.table,
                "folds": list(self.folds), "n_datasets": self.n_datasets, "lists": self.lists,
                "seconds": self.seconds, "note": self.note}

    @classmethod
    def from_json(cls, d: dict | None) -> "Selection | None":
        if not d:
            return None
        return cls(d["method"], dict(d["weights"]), dict(d.get("table") or {}), list(d.get("folds") or []),
                   int(d.get("n_datasets", 0)), int(d.get("lists", 0)), float(d.get("seconds", 0.0)),
                   d.get("note"))


