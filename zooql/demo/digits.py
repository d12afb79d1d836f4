"""Demo classifiers: small torch models trained in seconds on scikit-learn's digits.

scikit-learn's digits are 1797 grey 8x8 images with integer pixels in 0..16.  They map
to ordinary images as ``pixel / 16`` (float in [0, 1]; :func:`digit_images` returns
them that way).  Every demo model is registered with the preprocessing
``input_size=8, channels=1, mean=[0.5], std=[0.5]``: :class:`~zooql.runtime.preprocess.Preprocess`
leaves an 8x8 float image unresized and computes ``(pixel/16 - 0.5) / 0.5``, which is
exactly the tensor the models were trained on.  (A uint8 8x8 image ``round(pixel/16*255)``
gives the same result up to rounding.)

The models are saved as TorchScript, so loading them runs no pickled Python code; the
labels and preprocessing are embedded in the file (``zooql.json`` extra file) as well as
returned in the records.  Some models cover a subset of the classes and most put their
logits in a shuffled label order, which exercises per-model label mapping downstream.
Training is deterministic for a given seed (single thread, fixed generators).
"""
from __future__ import annotations

import copy
import json
import os
import warnings
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

DIGITS_OPTIONS = {"input_size": 8, "channels": 1, "mean": [0.5], "std": [0.5]}

# (name, architecture, classes, hidden width, shuffle label order)
_VARIANTS = [
    ("digits_mlp", "mlp", tuple(range(10)), 64, True),
    ("digits_cnn", "cnn", tuple(range(10)), 8, True),
    ("digits_linear", "linear", tuple(range(10)), 0, False),
    ("digits_mlp_even", "mlp", (0, 2, 4, 6, 8), 32, True),
    ("digits_cnn_low", "cnn", (0, 1, 2, 3, 4), 6, False),
    ("digits_mlp_odd", "mlp", (1, 3, 5, 7, 9), 32, True),
    ("digits_cnn_wide", "cnn", tuple(range(10)), 12, True),
    ("digits_mlp_high", "mlp", (5, 6, 7, 8, 9), 48, False),
]
_CLASS_SETS = {tuple(range(10)): "all", (0, 2, 4, 6, 8): "even", (1, 3, 5, 7, 9): "odd",
               (0, 1, 2, 3, 4): "0-4", (5, 6, 7, 8, 9): "5-9"}


def digit_images(split: str = "test", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(images float32 [N, 8, 8] in [0, 1], digits int64 [N])`` for 'train', 'test' or 'all'.

    The split (75% / 25%, stratified by class) is the one :func:`train_digit_classifiers`
    uses for the same seed."""
    pixels, target = _load_digits()
    images = (pixels.reshape(-1, 8, 8) / 16.0).astype(np.float32)
    if split == "all":
        return images, target
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    rng = np.random.default_rng(seed)
    test = np.zeros(len(target), dtype=bool)
    for c in range(10):
        idx = np.flatnonzero(target == c)
        test[rng.permutation(idx)[: len(idx) // 4]] = True
    keep = test if split == "test" else ~test
    return images[keep], target[keep]


def train_digit_classifiers(out_dir: str | os.PathLike, n: int = 5, seed: int = 0) -> list[dict]:
    """Train ``n`` small classifiers, save each as TorchScript in ``out_dir``, return records.

    Each record: ``{name, source: 'torchscript:<abs path>', labels, options, tags,
    test_accuracy, description}`` (``labels[i]`` names logit ``i``)."""
    out_dir = os.path.abspath(os.fspath(out_dir))
    os.makedirs(out_dir, exist_ok=True)
    x_train, y_train = digit_images("train", seed)
    x_test, y_test = digit_images("test", seed)
    records = []
    with _single_thread():
        for i in range(n):
            name, arch, classes, width, shuffle = _VARIANTS[i % len(_VARIANTS)]
            if i >= len(_VARIANTS):
                name, width = f"{name}_{i // len(_VARIANTS) + 1}", width + 8 * (i // len(_VARIANTS))
            rng = np.random.default_rng([seed, i])
            order = [int(c) for c in (rng.permutation(classes) if shuffle else classes)]
            labels = [str(c) for c in order]
            torch.manual_seed(seed * 1000 + i)
            model = _make(arch, width, len(order))
            _fit(model, *_subset(x_train, y_train, order), steps=60 if arch == "cnn" else 150)
            acc = _accuracy(model, *_subset(x_test, y_test, order))
            path = os.path.join(out_dir, f"{name}.pt")
            with warnings.catch_warnings():  # torch >= 2.10 flags TorchScript as deprecated
                warnings.simplefilter("ignore", FutureWarning)
                scripted = torch.jit.script(model.eval())
                meta = {"labels": labels, "preprocess": {**DIGITS_OPTIONS, "interpolation": "bilinear"},
                        "family": f"digits-{arch}"}
                torch.jit.save(scripted, path, _extra_files={"zooql.json": json.dumps(meta)})
            records.append({
                "name": name,
                "source": f"torchscript:{path}",
                "labels": labels,
                "options": copy.deepcopy(DIGITS_OPTIONS),
                "tags": {"dataset": "sklearn-digits", "arch": arch, "classes": _CLASS_SETS.get(classes, "custom"),
                         "num_classes": str(len(order)), "params": str(sum(p.numel() for p in model.parameters()))},
                "test_accuracy": round(acc, 4),
                "description": f"{arch} on digits {_CLASS_SETS.get(classes, classes)}, logits in order {''.join(labels)}",
            })
    return records


# ---- internals -----------------------------------------------------------------------------

def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """(pixels [1797, 64] in 0..16, digits [1797]) from scikit-learn's bundled CSV.

    Reads the file directly (importing sklearn.datasets costs seconds); falls back to
    :func:`sklearn.datasets.load_digits` if the file moved."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(folder, "datasets", "data", "digits.csv.gz")
        if os.path.isfile(path):
            data = np.loadtxt(path, delimiter=",", dtype=np.float64)
            return data[:, :-1], data[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data, d.target.astype(np.int64)


def _make(arch: str, width: int, k: int) -> nn.Module:
    if arch == "linear":
        return nn.Sequential(nn.Flatten(), nn.Linear(64, k))
    if arch == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, k))
    if arch == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(width * 16, k))
    raise ValueError(f"unknown digits architecture {arch!r}")


def _subset(x: np.ndarray, y: np.ndarray, order: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images of the classes in ``order``, as normalised tensors, targets as logit indices."""
    keep = np.isin(y, order)
    index = {c: j for j, c in enumerate(order)}
    xs = (torch.from_numpy(x[keep]).unsqueeze(1) - 0.5) / 0.5  # == Preprocess(8, 1, [.5], [.5])
    ys = torch.tensor([index[int(c)] for c in y[keep]], dtype=torch.long)
    return xs, ys


def _fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int,
         opt: torch.optim.Optimizer | None = None) -> None:
    """Full-batch training for ``steps`` steps (Adam unless an optimizer is given)."""
    if opt is None:
        opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.inference_mode():
        return float((model(x).argmax(1) == y).float().mean())


@contextmanager
def _single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
