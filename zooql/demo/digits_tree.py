"""A small model tree for the DISCOVER demo: one base digits MLP and fine-tunes of it.

The base is trained briefly on scikit-learn's digits; each fine-tune continues from its
parent's weights with its own learning rate, number of steps, training subset and label
noise, so the tree holds models of clearly different quality (from a few noisy ones to
well-tuned ones) the way a hub's fine-tunes of one base model do. Saved as TorchScript
with labels and preprocessing embedded; deterministic given ``seed``; a few seconds on CPU.
"""
from __future__ import annotations

import copy
import json
import os
import warnings

import numpy as np
import torch
from torch import nn

from zooql.demo.digits import DIGITS_OPTIONS, _accuracy, _fit, _make, _single_thread, _subset, digit_images

LABELS = [str(c) for c in range(10)]


def _finetune(model: nn.Module, x, y, *, steps: int, lr: float, rng: np.random.Generator,
              subset: float, noise: float) -> None:
    n = len(y)
    keep = rng.choice(n, size=max(20, int(subset * n)), replace=False)
    xs, ys = x[keep], y[keep].clone()
    flip = rng.random(len(ys)) < noise
    ys[torch.from_numpy(flip)] = torch.from_numpy(rng.integers(0, 10, int(flip.sum()))).long()
    _fit(model, xs, ys, steps, torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9))


def _save(model: nn.Module, path: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(model.eval())
        meta = {"labels": LABELS, "preprocess": {**DIGITS_OPTIONS, "interpolation": "bilinear"},
                "family": "digits-mlp"}
        torch.jit.save(scripted, path, _extra_files={"zooql.json": json.dumps(meta)})


def build_tree(out_dir: str | os.PathLike, n_finetunes: int = 15, seed: int = 0,
               tree: str = "digits-mlp") -> list[dict]:
    """Train the base and ``n_finetunes`` descendants; return model records with ``tree``,
    ``parent``, ``downloads`` (popularity unrelated to quality, as on real hubs) and the
    test accuracy measured on the held-out split."""
    out_dir = os.path.abspath(os.fspath(out_dir))
    os.makedirs(out_dir, exist_ok=True)
    x_train, y_train = _subset(*digit_images("train", seed), list(range(10)))
    x_test, y_test = _subset(*digit_images("test", seed), list(range(10)))
    rng = np.random.default_rng(seed)
    records: list[dict] = []
    models: dict[str, nn.Module] = {}
    parent_of: dict[str, str | None] = {f"{tree}-base": None}
    with _single_thread():
        torch.manual_seed(seed)
        base = _make("mlp", 24, 10)
        _finetune(base, x_train, y_train, steps=25, lr=0.05, rng=rng, subset=0.5, noise=0.0)
        models[f"{tree}-base"] = base
        parents = [f"{tree}-base"]
        for i in range(n_finetunes):
            parent = parents[int(rng.integers(len(parents)))]
            name = f"{tree}-ft{i + 1:02d}"
            model = copy.deepcopy(models[parent])
            torch.manual_seed(seed * 1000 + i)
            _finetune(model, x_train, y_train, steps=int(rng.integers(5, 80)),
                      lr=float(rng.choice([0.005, 0.02, 0.05, 0.2])), rng=rng,
                      subset=float(rng.uniform(0.05, 1.0)), noise=float(rng.choice([0.0, 0.0, 0.2, 0.5])))
            models[name] = model
            parent_of[name] = parent
            parents.append(name)
        for name, model in models.items():
            path = os.path.join(out_dir, f"{name}.pt")
            _save(model, path)
            records.append({
                "name": name, "source": f"torchscript:{path}", "labels": LABELS,
                "options": copy.deepcopy(DIGITS_OPTIONS), "tree": tree,
                "parent": parent_of[name],
                "downloads": int(rng.integers(1, 5000)),
                "test_accuracy": round(_accuracy(model, x_test, y_test), 4),
            })
    return records

