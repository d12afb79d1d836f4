"""Random, stratified samples of an image folder for ``CREATE TASK t FROM IMAGES 'folder'
LIMIT n [SEED s]`` (DCD's few-shot target and source tasks, Eq. 4 assumes i.i.d. images) and
for ``RANK ... OPTIONS (draws = k)``, which redraws the target with seeds ``s, s+1, ...``.

Without ``LIMIT`` a task takes every image of the folder (sorted). With ``LIMIT n`` it takes
``n`` images drawn without replacement with ``numpy.random.default_rng(seed)`` (seed 0
unless given), allocated over the class sub-folders in proportion to their sizes (largest
remainder; ties in random order), and kept in sorted order.
"""
from __future__ import annotations

import math
import os

import numpy as np

from zooql.runtime.images import IMAGE_EXTS

DEFAULT_SAMPLE_SEED = 0


def _folder_listing(path: str) -> tuple[list[str], dict[str, list[str]]]:
    """(class sub-folders sorted, {class: image files sorted}); an unlabelled folder is
    returned as no classes and ``{"": flat image files}``."""
    classes = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)) and not d.startswith("."))
    flat = sorted(f for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTS)
                  and os.path.isfile(os.path.join(path, f)))
    if not classes:
        return [], {"": flat}
    return classes, {c: sorted(f for f in os.listdir(os.path.join(path, c)) if f.lower().endswith(IMAGE_EXTS))
                     for c in classes}


def stratified_counts(sizes: list[int], n: int, rng: np.random.Generator) -> list[int]:
    """How many of ``n`` draws each stratum gets: proportional to its size, the remainder
    by largest fractional part (ties in random order, so that ``n`` smaller than the number
    of strata picks random strata)."""
    total = sum(sizes)
    n = min(int(n), total)
    quota = [n * s / total for s in sizes] if total else [0.0] * len(sizes)
    counts = [int(math.floor(q)) for q in quota]
    rest = n - sum(counts)
    order = sorted(range(len(sizes)), key=lambda i: (-(quota[i] - counts[i]), float(rng.random())))
    for i in order[:rest]:
        counts[i] += 1
    return counts


def sample_folder(path: str, limit: int | None, seed: int | None = None) -> tuple[list[str], list[str], dict]:
    """The images CREATE TASK ... FROM IMAGES takes: ``(classes, relative paths, sample)``.

    Without ``limit`` every image (sorted). With ``limit n``: a random sample of ``n``
    without replacement (``seed``, default 0), stratified over the class sub-folders when
    there are some (:func:`stratified_counts`), kept in sorted order. ``sample`` =
    ``{"limit", "seed", "of", "strata": {class: drawn}}`` (empty without ``limit``)."""
    classes, files = _folder_listing(path)
    keys = classes or [""]
    if limit is None:
        return classes, [os.path.join(k, f) if k else f for k in keys for f in files[k]], {}
    seed = DEFAULT_SAMPLE_SEED if seed is None else int(seed)
    rng = np.random.default_rng(seed)
    counts = stratified_counts([len(files[k]) for k in keys], limit, rng)
    chosen = []
    for k, c in zip(keys, counts):
        idx = sorted(rng.choice(len(files[k]), size=c, replace=False).tolist()) if c else []
        chosen += [os.path.join(k, files[k][i]) if k else files[k][i] for i in idx]
    sample = {"limit": int(limit), "seed": seed, "of": sum(len(v) for v in files.values()),
              "strata": {k: c for k, c in zip(keys, counts)} if classes else {}}
    return classes, chosen, sample


def describe_sample(sample: dict) -> str:
    """``"3 of 40 (seed 0; strata cat 2, dog 1)"`` for EXPLAIN and messages."""
    if not sample:
        return ""
    drawn = sum(sample["strata"].values()) if sample["strata"] else min(sample["limit"], sample["of"])
    text = f"{drawn} of {sample['of']} (seed {sample['seed']}"
    if sample["strata"]:
        text += "; strata " + ", ".join(f"{k} {v}" for k, v in sample["strata"].items())
    return text + ")"
