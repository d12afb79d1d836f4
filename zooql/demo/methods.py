"""The method sections of the demo (DISCOVER, RECOMMEND, FIND), each run when its method
is registered in this build."""
from __future__ import annotations

import json
import os
from importlib import resources

from zooql.methods import registry


def _registered() -> set[str]:
    return {m.name for m in registry.methods()}


def _progress(task: str, done: int, total: int) -> None:  # quiet in the demo
    pass


def discover_demo(hub, show) -> None:
    """Live DISCOVER over a tree of digit classifiers the demo fine-tunes itself."""
    import numpy as np

    from zooql.demo.digits import digit_images
    from zooql.demo.digits_tree import build_tree

    print("\n== DISCOVER: best fine-tune of a model tree under a query budget (Hidden Gems) ==")
    have = set(hub.completions()["models"])
    folder = os.path.join(hub.path, "models", "digits-tree")
    if "digits-mlp-base" not in have:
        print("fine-tuning a tree of 16 digit MLPs (a base and 15 descendants)")
        recs = build_tree(folder, n_finetunes=15, seed=0)
        path = os.path.join(folder, "tree.jsonl")
        with open(path, "w") as f:
            for r in recs:
                f.write(json.dumps({"name": r["name"], "source": r["source"], "labels": r["labels"],
                                    "tree": r["tree"], "parent": r["parent"], "downloads": r["downloads"],
                                    "test_accuracy": r["test_accuracy"], **r["options"]}) + "\n")
        hub.execute("ADD MODELS FROM :p", {"p": path}, progress=_progress)
    if "digits" not in hub.completions().get("tasks", []):
        x, y = digit_images("test", seed=0)
        npz = os.path.join(folder, "digits_test.npz")
        np.savez(npz, images=np.round(x * 255).astype(np.uint8), labels=y)
        hub.execute("CREATE TASK digits FROM :p", {"p": npz})
    show(hub, "SHOW TREES")
    show(hub, "EXPLAIN DISCOVER BEST IN TREE digits-mlp ON digits BUDGET 20")
    show(hub, "DISCOVER BEST 3 IN TREE digits-mlp ON digits BUDGET 20 SEED 0")
    print("(ground truth: every fine-tune evaluated on all held-out digits)")
    show(hub, "SHOW MODELS WHERE tree = 'digits-mlp' ORDER BY tags.test_accuracy DESC LIMIT 3")


def recommend_demo(hub, show) -> None:
    print("\n== RECOMMEND: rank models for a dataset from leaderboard records (ModelLens) ==")
    table = resources.files("zooql").joinpath("data", "demo_evaluations.csv")
    if not table.is_file():
        print("(demo evaluations table missing; skipped)")
        return
    if "demo-histology" not in hub.completions()["datasets"]:
        hub.execute("IMPORT EVALUATIONS FROM :p AS SOURCE demo", {"p": str(table)})
    show(hub, "SHOW DATASETS")
    from zooql.demo.recommend import QUERIES

    for q in QUERIES:
        show(hub, q)


def find_demo(hub, show) -> None:
    print("\n== FIND: search logits by what they recognise (ProbeLog) ==")
    from zooql.demo.find import prepare

    for q in prepare(hub):
        show(hub, q)


def run_method_demos(hub, show) -> None:
    if "hidden_gems" in _registered():
        discover_demo(hub, show)
    if "modellens" in _registered():
        recommend_demo(hub, show)
    if "probelog" in _registered():
        find_demo(hub, show)
