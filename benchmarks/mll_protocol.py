"""The MLL protocol (Tan et al., ICML 2025) on whatever open_clip checkpoints are at hand.

Imported by ``benchmarks/vlm_selection.py``; usable on its own::

    from benchmarks.mll_protocol import run_mll_protocol, load_openclip_table
    rows = run_mll_protocol(
        [("ViT-B-32:openai", "open_clip:ViT-B-32", "/ckpt/vit_b32_openai.pt"), ...],
        [{"name": "Oxford-IIIT Pet", "folder": "/data/pets/test"}],   # <folder>/<class>/<image>
        graph_folder="/data/imagenet_nodes",                          # <wnid>/<image> (+ WordNet)
        evaluations=load_openclip_table("../shared/data/openclip_long.parquet"))

For every target dataset (a folder of class sub-folders of test images) the protocol runs,
through the ZooQL language on a fresh hub: ``CREATE SEMANTIC GRAPH`` + ``LABEL MODELS``
(once, task independent), ``SELECT MODELS FOR TASK ... USING LABELS`` and ``CLASSIFY ...
USING LABELS ENSEMBLE k`` (accuracy measured on the images), plus the paper's *ImageNet
baseline*: the checkpoint with the best ImageNet zero-shot score in ``evaluations``, run
zero-shot on the same images. Where ``evaluations`` also holds the target dataset, the rows
carry the table scores of the MLL top model, of the ImageNet model and of the oracle.
"""
from __future__ import annotations

import os
import tempfile
import time
from typing import Callable, Sequence

IMAGENET = "ImageNet 1k"
ROW_KEYS = ("dataset", "classes", "images", "models", "mll_top_model", "mll_accuracy", "imagenet_model",
            "imagenet_accuracy", "mll_top_table", "imagenet_table", "oracle_table", "seconds")


def load_openclip_table(path: str) -> dict[tuple[str, str], float]:
    """``{(arch:pretrained, dataset): score}`` from ``openclip_long.parquet`` (shared data)."""
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=["model", "dataset", "score"]).to_pydict()
    return {(m, d): float(s) for m, d, s in zip(t["model"], t["dataset"], t["score"])}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _s(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def run_mll_protocol(checkpoints: Sequence[tuple[str, str, str | None]], datasets: Sequence[dict], graph_folder: str,
                     *, evaluations: dict | None = None, hub_path: str | None = None, ensemble: int = 1,
                     alpha: float = 0.7, nodes_per_class: int = 3, max_images: int = 75, limit: int | None = None,
                     root: str | None = None, device: str | None = None,
                     log: Callable[[str], None] = print) -> list[dict]:
    """Run the MLL protocol; one row (keys ``ROW_KEYS``) per dataset.

    ``checkpoints``: ``(name, source, checkpoint_path)``; ``name`` is the model's key in
    ``evaluations`` (``arch:pretrained`` for the open_clip table), ``source`` an
    ``open_clip:<arch>`` source, the path ``None`` for a locally cached pretrained tag.
    ``datasets``: dicts with ``name`` (the key in ``evaluations``), ``folder``
    (``<folder>/<class>/<image>``), optional ``classes`` (default: the sub-folder names,
    sorted), ``domain`` and ``captions`` (a classes file for ``CLASSES FROM``)."""
    import numpy as np

    import zooql
    from zooql.methods.mll import labels as mll
    from zooql.methods.probelog.probe_inputs import list_image_files as list_images
    from zooql.runtime.models import ModelRuntime

    evaluations = evaluations or {}
    tmp = None
    if hub_path is None:
        tmp = tempfile.TemporaryDirectory(prefix="zooql-mll-")
        hub_path = os.path.join(tmp.name, "hub")
    hub = zooql.connect(hub_path, device=device)
    try:
        t0 = time.perf_counter()
        have = {r[0] for r in hub.execute("SHOW MODELS").rows}
        for name, source, ckpt in checkpoints:
            if name not in have:
                hub.execute(f"ADD MODEL {_s(source)} AS {_q(name)}" + (f" FROM {_s(ckpt)}" if ckpt else ""))
        graph = "mll_graph"
        hub.execute(f"CREATE OR REPLACE SEMANTIC GRAPH {graph} FROM {_s(graph_folder)} MAX IMAGES {int(max_images)}"
                    + (f" ROOT {_s(root)}" if root else ""))
        log(hub.explain(f"LABEL MODELS ON GRAPH {graph}"))
        res = hub.execute(f"LABEL MODELS ON GRAPH {graph}")
        log(f"{res.message} ({time.perf_counter() - t0:.1f}s)")
        names = [c[0] for c in checkpoints]
        ref = [n for n in names if (n, IMAGENET) in evaluations]
        imagenet_model = max(ref, key=lambda n: (evaluations[(n, IMAGENET)], n)) if ref else None
        rt = ModelRuntime(device=device or "cpu")
        rows = []
        for ds in datasets:
            t1 = time.perf_counter()
            folder = ds["folder"]
            classes = list(ds.get("classes") or sorted(d for d in os.listdir(folder)
                                                       if os.path.isdir(os.path.join(folder, d))))
            task = _s(ds["name"])
            spec = f"CLASSES FROM {_s(ds['captions'])}" if ds.get("captions") else \
                "CLASSES (" + ", ".join(_s(c) for c in classes) + ")"
            dom = f" DOMAIN {_s(ds['domain'])}" if ds.get("domain") else ""
            opts = f" OPTIONS (alpha = {alpha}, nodes_per_class = {int(nodes_per_class)})"
            sel = hub.execute(f"SELECT MODELS FOR TASK {task} {spec}{dom} USING LABELS ON GRAPH {graph} "
                              f"TOP {int(ensemble)}{opts}").to_dicts()
            lim = f" LIMIT {int(limit)}" if limit else ""
            cls = hub.execute(f"CLASSIFY {_s(folder)} FOR TASK {task} {spec}{dom} USING LABELS ENSEMBLE "
                              f"{int(ensemble)} ON GRAPH {graph}{lim}{opts}")
            labelled = [r for r in cls.rows if r[4] is not None]
            mll_acc = sum(r[1] == r[4] for r in labelled) / len(labelled) if labelled else None
            in_acc = None
            if imagenet_model is not None:
                src, ck = next((s, c) for n, s, c in checkpoints if n == imagenet_model)
                loaded = rt.load(imagenet_model, src, ck, None)
                paths = list_images(folder)[: limit or None]
                probs = mll.zero_shot(rt, loaded, [os.path.join(folder, p) for p in paths], classes)
                truth = [p.split("/")[0] for p in paths]
                pairs = [(classes[int(i)], t) for i, t in zip(np.argmax(probs, 1), truth) if t in classes]
                in_acc = sum(a == b for a, b in pairs) / len(pairs) if pairs else None
            top = sel[0]["model"] if sel else None
            table = [evaluations.get((n, ds["name"])) for n in names]
            known = [s for s in table if s is not None]
            rows.append(dict(zip(ROW_KEYS, (
                ds["name"], len(classes), len(cls.rows), len(names), top, mll_acc, imagenet_model, in_acc,
                evaluations.get((top, ds["name"])), evaluations.get((imagenet_model, ds["name"])),
                max(known) if known else None, round(time.perf_counter() - t1, 2)))))
            log(f"{ds['name']}: MLL top {top}, ensemble accuracy {mll_acc}, ImageNet baseline "
                f"{imagenet_model} accuracy {in_acc}")
        return rows
    finally:
        hub.close()
        if tmp is not None:
            tmp.cleanup()
