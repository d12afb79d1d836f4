"""Generate ``zooql/data/demo_evaluations.csv``: a small SYNTHETIC leaderboard.

Nothing in the file is a real measurement.  It exists so the demo and the docs can
show model recommendation without shipping any third-party table (so it carries
no licence baggage: generated here, same licence as the repository).

How it is generated (deterministic, ``--seed 0``):

* 20 fictional models named ``demo-<family>-<size>-<pretraining data>`` with
  features ``family`` (vit / convnext / resnet / clip), ``params_m`` and
  ``pretrain`` (web-400m / web-2b / in21k / in1k / medical-mix);
* 8 fictional datasets, each with a one-sentence description and a *domain*
  (natural photos, fine-grained, sketches, satellite, medical, OCR, digits,
  retrieval);
* score = sigmoid(general quality (log size + data scale) + family x domain
  affinity + pretraining-data x domain affinity + small noise), mapped to an
  accuracy in [0.05, 0.98] and rounded to 4 decimals.  The affinities are a
  planted low-rank structure (e.g. medical-mix pretraining helps the medical set,
  clip-style web pretraining helps retrieval and OCR), so a per-dataset
  recommendation differs from the global ranking.

Columns: model, dataset, metric, score, family, params_m, pretrain, dataset_description.

    python benchmarks/make_demo_evaluations.py            # rewrites the CSV
    python benchmarks/make_demo_evaluations.py --check    # exit 1 if the CSV is stale
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "zooql" / "data" / "demo_evaluations.csv"

DATASETS = [
    ("demo-everyday-objects", "natural", "Natural photographs of everyday objects and animals in 500 categories."),
    ("demo-bird-species", "fine", "Fine-grained photographs of 200 bird species taken outdoors."),
    ("demo-sketches", "sketch", "Black-and-white hand-drawn sketches of common objects."),
    ("demo-satellite-landuse", "satellite", "Satellite images of land use such as farmland, forest, river and residential areas."),
    ("demo-histology", "medical", "Medical microscopy patches of stained tissue; detect tumour cells."),
    ("demo-scene-text", "ocr", "Photographs of signs and shop fronts; recognise the written words (OCR)."),
    ("demo-house-digits", "digits", "Cropped street photographs of house-number digits 0-9."),
    ("demo-caption-retrieval", "retrieval", "Image-caption retrieval: find the caption that matches a photograph."),
]
DOMAINS = ["natural", "fine", "sketch", "satellite", "medical", "ocr", "digits", "retrieval"]

MODELS = [
    ("vit", "b16", 86, "in1k"), ("vit", "b16", 86, "in21k"), ("vit", "l14", 304, "in21k"),
    ("vit", "h14", 632, "web-2b"), ("vit", "b32", 88, "web-400m"),
    ("convnext", "tiny", 28, "in1k"), ("convnext", "base", 89, "in21k"), ("convnext", "large", 198, "in21k"),
    ("convnext", "base", 89, "medical-mix"),
    ("resnet", "r50", 26, "in1k"), ("resnet", "r101", 45, "in1k"), ("resnet", "r50", 26, "medical-mix"),
    ("resnet", "r152", 60, "in21k"),
    ("clip", "b32", 151, "web-400m"), ("clip", "b16", 150, "web-400m"), ("clip", "l14", 428, "web-2b"),
    ("clip", "h14", 986, "web-2b"), ("clip", "b16", 150, "in21k"),
    ("vit", "s16", 22, "in1k"), ("clip", "l14", 428, "medical-mix"),
]

# planted affinities (family x domain, pretraining x domain)
FAMILY_AFF = {
    "vit": {"sketch": 0.6, "natural": 0.3},
    "convnext": {"fine": 0.5, "satellite": 0.4, "natural": 0.3},
    "resnet": {"digits": 0.6, "medical": 0.3},
    "clip": {"retrieval": 1.2, "ocr": 1.0, "sketch": 0.5, "satellite": -0.3},
}
PRETRAIN_AFF = {
    "in1k": {"natural": 0.2, "retrieval": -1.0, "ocr": -0.6},
    "in21k": {"fine": 0.6, "natural": 0.4, "retrieval": -0.8},
    "web-400m": {"retrieval": 0.6, "ocr": 0.5, "medical": -0.3},
    "web-2b": {"retrieval": 1.0, "ocr": 0.8, "sketch": 0.4},
    "medical-mix": {"medical": 2.0, "natural": -0.4, "retrieval": -0.6},
}
DATA_SCALE = {"in1k": 0.0, "in21k": 0.4, "web-400m": 0.5, "web-2b": 0.9, "medical-mix": 0.1}
DOMAIN_BASE = {"natural": 0.6, "fine": 0.1, "sketch": -0.3, "satellite": 0.2, "medical": -0.2,
               "ocr": -0.8, "digits": 0.5, "retrieval": -0.4}


def generate(seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model", "dataset", "metric", "score", "family", "params_m", "pretrain",
                "dataset_description"])
    for fam, size, params, pre in MODELS:
        name = f"demo-{fam}-{size}-{pre}"
        quality = 0.55 * math.log(params / 50.0) + DATA_SCALE[pre]
        for ds, dom, desc in DATASETS:
            logit = (DOMAIN_BASE[dom] + quality + FAMILY_AFF[fam].get(dom, 0.0)
                     + PRETRAIN_AFF[pre].get(dom, 0.0) + 0.1 * rng.standard_normal())
            acc = 0.05 + 0.93 / (1.0 + math.exp(-logit))
            metric = "recall@1" if dom == "retrieval" else "top1"
            w.writerow([name, ds, metric, f"{acc:.4f}", fam, params, pre, desc])
    return buf.getvalue()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true", help="exit 1 if the CSV differs from a fresh generation")
    args = ap.parse_args(argv)
    text = generate(args.seed)
    if args.check:
        ok = OUT.exists() and OUT.read_text() == text
        print("up to date" if ok else f"{OUT} is stale; rerun without --check")
        return 0 if ok else 1
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT} ({text.count(chr(10)) - 1} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
