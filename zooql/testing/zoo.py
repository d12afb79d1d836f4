"""A tiny, fast model zoo for the fault and concurrency suites and ``benchmarks/faults.py``:
TorchScript linear classifiers on 8x8 grey images, a probe set, a models file, recorded
outcomes and a large evaluations table, plus :func:`slow_down`, which makes a statement's
heavy step (inspecting a model, a forward pass, an evaluation, a factor fit) take a fixed
time so that a test can act while the statement runs.

Only tests and benchmarks use this module (it imports torch when models are built).
"""
from __future__ import annotations

import functools
import os
import time
from pathlib import Path

import numpy as np

PREPROCESS = "input_size = 8, channels = 1, mean = (0.5), std = (0.5)"
LABELS = ("w", "x", "y", "z")


def build_zoo(folder: str | os.PathLike, n_models: int = 8, n_probes: int = 40, seed: int = 0,
              n_queries: int = 50, n_eval_rows: int = 0) -> dict:
    """Write the zoo into ``folder``; returns the paths (``models_csv``, ``probes``,
    ``outcomes_csv``, ``recs_csv`` (50 evaluations), ``evaluations_csv``) and the model ``names``."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = [f"m{i:02d}" for i in range(n_models)]
    rows = ["name,source,labels,tree,parent,downloads,input_size,channels,mean,std"]
    for i, name in enumerate(names):
        lin = torch.nn.Linear(64, len(LABELS))
        with torch.no_grad():
            lin.weight.copy_(torch.as_tensor(rng.normal(size=(len(LABELS), 64)) / 8, dtype=torch.float32))
            lin.bias.copy_(torch.as_tensor(rng.normal(size=len(LABELS)) / 10, dtype=torch.float32))
        path = folder / f"{name}.pt"
        torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), lin)).save(str(path))
        parent = "" if i == 0 else names[0]
        rows.append(f"{name},torchscript:{path},{'|'.join(LABELS)},zoo,{parent},{10 * (i + 1)},8,1,0.5,0.5")
    (folder / "models.csv").write_text("\n".join(rows) + "\n")
    np.save(folder / "probes.npy", rng.integers(0, 256, (n_probes, 8, 8), dtype=np.uint8))
    lines = ["model,dataset,query_id,score"]
    for name in names:
        acc = rng.uniform(0.2, 0.9)
        lines += [f"{name},bench,q{q:03d},{float(rng.random() < acc)}" for q in range(n_queries)]
    (folder / "outcomes.csv").write_text("\n".join(lines) + "\n")
    recs = ["model,dataset,metric,score"] + [f"r{m},d{d},top1,{rng.uniform(20, 90):.3f}"
                                             for m in range(10) for d in range(5)]
    (folder / "recs.csv").write_text("\n".join(recs) + "\n")   # a small table TRAIN RECOMMENDER fits fast
    out = {"models_csv": str(folder / "models.csv"), "probes": str(folder / "probes.npy"),
           "outcomes_csv": str(folder / "outcomes.csv"), "recs_csv": str(folder / "recs.csv"), "names": names}
    if n_eval_rows:
        import pyarrow as pa
        import pyarrow.csv as pcsv

        idx = np.arange(n_eval_rows)
        table = pa.table({"model": pa.array([f"e{i % 997}" for i in idx]),
                          "dataset": pa.array([f"d{i // 997}" for i in idx]),
                          "metric": pa.array(["acc"] * n_eval_rows), "score": pa.array(rng.random(n_eval_rows))})
        pcsv.write_csv(table, folder / "evaluations.csv")
        out["evaluations_csv"] = str(folder / "evaluations.csv")
    return out


def slow_down(step: str, seconds: float, until: str | None = None) -> None:
    """Make every call of a statement's heavy step sleep ``seconds`` first (in this process);
    with ``until`` (a file path), wait instead until that file exists (at most ``seconds``):
    a test releases the statement as soon as it has seen what it needs.
    ``step``: inspect (ADD MODELS), forward (PROBE), evaluate (DISCOVER), fit (REFRESH
    DESCRIPTORS), import (IMPORT: reading the file), graph (CREATE SEMANTIC GRAPH: hashing a
    node's images), embed (LABEL MODELS: a node's image embeddings), text (SELECT MODELS ...
    USING LABELS: MiniLM text embeddings), classify (CLASSIFY: one model's zero-shot pass),
    train (TRAIN RECOMMENDER: the fit), task (CREATE TASK: reading the task file), vacuum
    (VACUUM: each slab of a segment merge, the rename, each index rebuild)."""
    def wrap(owner, attr):
        orig = getattr(owner, attr)

        @functools.wraps(orig)
        def slow(*a, **kw):
            pause()
            return orig(*a, **kw)

        setattr(owner, attr, slow)

    def pause():
        if until is None:
            time.sleep(seconds)
            return
        deadline = time.monotonic() + seconds
        while not os.path.exists(until) and time.monotonic() < deadline:
            time.sleep(0.01)

    if step == "inspect":  # also in the inspection worker processes (each job carries it)
        from zooql.runtime.inspect_pool import DELAY_ENV
        os.environ[DELAY_ENV] = str(seconds)
    elif step == "forward":  # also in PROBE's worker processes (every job carries the delay)
        import json

        from zooql.runtime.models import ModelRuntime
        from zooql.runtime.process_pool import DELAY_ENV as POOL_DELAY
        wrap(ModelRuntime, "run")
        os.environ[POOL_DELAY] = json.dumps({"seconds": seconds, "until": until})
    elif step == "evaluate":
        from zooql.core.evaluators import RecordedSource
        wrap(RecordedSource, "evaluate")
    elif step == "fit":
        from zooql.methods.probelog import completion
        wrap(completion, "fit_als")
    elif step == "import":
        from zooql.core.ops import ImportTable
        wrap(ImportTable, "_read")
    elif step == "graph":
        from zooql.methods.mll import semantic_graph
        wrap(semantic_graph, "hash_files")
    elif step == "embed":
        from zooql.methods.mll import labels
        wrap(labels, "embed_node_images")
    elif step == "text":
        from zooql.runtime import text_embed
        wrap(text_embed, "embed_texts")
    elif step == "classify":
        from zooql.methods.mll import labels
        wrap(labels, "zero_shot")
    elif step == "train":
        from zooql.methods.modellens import select
        wrap(select, "train_default")
    elif step == "task":
        from zooql.core import tasks
        wrap(tasks, "read_task")
    elif step == "vacuum":
        from zooql.methods.probelog import segio, store
        wrap(store, "build_index")
        segio.FAULT = lambda stage, done: pause()
    else:
        raise ValueError(f"unknown step {step!r}")


def save_linear(weight, bias, path) -> str:
    """A TorchScript classifier ``Flatten -> Linear(weight, bias)`` saved at ``path``: a model
    whose logits are known in closed form (tests plant logit copies and permutations)."""
    import torch

    lin = torch.nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        lin.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), lin)).save(str(path))
    return str(path)


def digits_task(folder: str | os.PathLike, accuracies=(3, 6, 10), n: int = 60) -> dict[int, Path]:
    """A live classifier task for DISCOVER: ``folder/digits.npz`` holds ``n`` 8x8 grey images
    (class ``c`` lights pixel ``c``) and their labels, and for each ``r`` in ``accuracies`` a
    TorchScript model ``folder/acc<r>.pt`` that is right exactly on the classes below ``r``
    (accuracy ``r / 10``; it maps the other classes onto each other). Returns ``{r: path}``."""
    import torch

    folder = Path(folder)
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 10
    images = rng.integers(0, 40, size=(n, 8, 8), dtype=np.uint8)
    images.reshape(n, 64)[np.arange(n), labels] = 255
    np.savez(folder / "digits.npz", images=images, labels=labels)

    class Pick(torch.nn.Module):
        def __init__(self, idx):
            super().__init__()
            self.register_buffer("idx", torch.tensor(idx, dtype=torch.long))

        def forward(self, x):
            return x.flatten(1)[:, self.idx]

    paths = {}
    for r in accuracies:
        idx = list(range(r)) + [(j + 1 - r) % (10 - r) + r for j in range(r, 10)] if r < 10 else list(range(10))
        paths[r] = folder / f"acc{r}.pt"
        torch.jit.script(Pick(idx)).save(str(paths[r]))
    return paths
