"""ModelLens benchmark: rank models on an unseen dataset from leaderboard records.

Protocols (all on the real tables in the shared data folder, see recommend_data.py):

1. Leave-one-dataset-out (LODO): for every dataset, hide all its records, train on
   the rest, rank the models on it from its *description only*, compare with the
   hidden truth (every metric list of the held-out dataset counts once).
   Methods: auto (the default of RECOMMEND: ModelLens trained and validated inside the
   training split by zooql.methods.modellens.select, which keeps ModelLens, a baseline or a
   blend), pure modellens and the baselines.
   Metrics: NDCG@5 (graded top-5 relevance, see zooql.methods.modellens.metrics.ndcg_at_k),
   ndcg5_lovm (the LOVM/DCD definition, DCD App. F.2: gains 2^rel - 1 of the true score
   as a fraction, only for models in both the predicted and the true top-5),
   Kendall tau@5 (LOVM: over the intersection of predicted and true top-5),
   R@5 (top-5 overlap), top-1 regret (table units), Spearman rho over all models,
   and pool-NDCG@5: NDCG@5 among random pools of 40 candidate models (mean of 50
   draws) -- the zoo size of the LOVM/SWAB literature, so numbers are on that scale.
2. LOVM-comparable subset (open_clip only): the 35 LOVM models x the 20 LOVM
   datasets present in the open_clip table, LODO on that sub-table alone.
3. Seeds: LODO again, but `given` n observed scores of random models on the
   held-out dataset (n = 0, 3, 5, 10); evaluated on the non-seed models.
4. New-model cold start: 5-fold over models; a fold's models lose all records and
   are ranked from their features only.  Metric per dataset list: Spearman among
   the held-out models, and the mean |predicted - true| percentile of each held-out
   model inside the full list (other models at their true scores).
5. Learning curve: LODO with only a random 10/25/50/100% of the training records.
6. train: what TRAIN RECOMMENDER does on the whole table (ModelLens fit + validation +
   choice), timed, with the validation table.

Usage:
    python benchmarks/recommend_bench.py            # full (~15-20 min on 1 core)
    python benchmarks/recommend_bench.py --quick    # subset of folds (~3 min)
    python benchmarks/recommend_bench.py --tables openclip --protocols lodo,seeds
    python benchmarks/recommend_bench.py --tables openclip --protocols train,lovm,lodo
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import math  # noqa: E402
import re  # noqa: E402

import numpy as np  # noqa: E402

from zooql.methods.modellens.recommender import (Records, Recommender, SideInfo,  # noqa: E402
                                    kendall_tau_at_k, ndcg_at_k, recall_at_k, spearman,
                                    top1_regret)
from zooql.methods.modellens.baselines import BASELINES  # noqa: E402
from zooql.methods.modellens.metrics import ndcg_lovm_at_k  # noqa: E402
from zooql.methods.modellens.select import AutoRecommender, train_default  # noqa: E402

REPO = ROOT

# ---------------------------------------------------------------------------
# data: loaders for the real tables (never copied into the repo) and the
# hand-written dataset descriptions.  The shared folder is $ZOOQL_SHARED_DATA if
# set, else <repo>/../shared/data.  The descriptions were written for this
# benchmark from the public descriptions of each dataset (what the images /
# questions are, not how models score on them); they are all that ModelLens and
# knn_dataset see of a held-out dataset.  The Open LLM Leaderboard scrape is
# CC BY-NC-SA 4.0: research use only, nothing derived from it is shipped.
# ---------------------------------------------------------------------------



def shared_data_dir() -> Path:
    env = os.environ.get("ZOOQL_SHARED_DATA")
    return Path(env) if env else (REPO.parent / "shared" / "data")


OPENCLIP_DESCRIPTIONS = {
    "ImageNet 1k": "ImageNet-1k: natural photographs of everyday objects and animals in 1000 WordNet categories; the standard general object recognition benchmark.",
    "Caltech-101": "Caltech-101: photographs of objects from 101 categories plus background, mostly centred single objects collected from web image search.",
    "CIFAR-10": "CIFAR-10: tiny 32x32 low-resolution colour photographs of 10 classes of vehicles and animals.",
    "CIFAR-100": "CIFAR-100: tiny 32x32 low-resolution colour photographs of 100 classes of objects, animals, plants, people and scenes.",
    "CLEVR Counts": "CLEVR counts: synthetic rendered 3D scenes of simple geometric objects (cubes, spheres, cylinders); count how many objects are in the scene.",
    "CLEVR Distance": "CLEVR distance: synthetic rendered 3D scenes of simple geometric objects; classify the depth of the object closest to the camera.",
    "Country211": "Country211: geolocation of photographs from YFCC100M; predict which of 211 countries a photo was taken in.",
    "Describable Textures": "Describable Textures Dataset (DTD): close-up texture images labelled with 47 texture attributes such as striped, dotted, braided, marbled.",
    "EuroSAT": "EuroSAT: Sentinel-2 satellite images of land use and land cover in Europe, 10 classes such as forest, river, highway, industrial, residential.",
    "FGVC Aircraft": "FGVC-Aircraft: fine-grained photographs of airplanes; recognise 100 aircraft model variants.",
    "Food-101": "Food-101: photographs of dishes; recognise 101 food categories.",
    "GTSRB": "GTSRB: German traffic sign recognition; small cropped photographs of 43 classes of road signs.",
    "ImageNet Sketch": "ImageNet-Sketch: black-and-white hand-drawn sketches of the 1000 ImageNet classes; domain shift from photographs to drawings.",
    "ImageNet v2": "ImageNetV2: a new test set of natural photographs for the 1000 ImageNet classes collected with the original protocol; mild distribution shift.",
    "ImageNet-A": "ImageNet-A: natural adversarial examples; real photographs of 200 ImageNet classes that are misclassified by ResNet models.",
    "ImageNet-O": "ImageNet-O: out-of-distribution detection with adversarially filtered photographs of classes that are not in ImageNet-1k.",
    "ImageNet-R": "ImageNet-R: renditions of 200 ImageNet classes as art, cartoons, paintings, sculptures, toys, tattoos and graffiti.",
    "KITTI Vehicle Distance": "KITTI closest vehicle distance: driving scenes from a car-mounted camera; classify how far away the nearest vehicle is.",
    "MNIST": "MNIST: 28x28 grayscale images of handwritten digits 0-9.",
    "ObjectNet": "ObjectNet: photographs of household objects in unusual rotations, backgrounds and viewpoints; 113 classes overlapping ImageNet; a robustness test set.",
    "Oxford Flowers-102": "Oxford Flowers-102: fine-grained photographs of flowers; recognise 102 flower species.",
    "Oxford-IIIT Pet": "Oxford-IIIT Pet: fine-grained photographs of 37 cat and dog breeds.",
    "Pascal VOC 2007": "Pascal VOC 2007: Flickr photographs of 20 object classes such as people, animals, vehicles and indoor furniture; classify object crops.",
    "PatchCamelyon": "PatchCamelyon: medical histopathology; 96x96 patches of stained lymph node tissue scans, detect metastatic cancer (binary).",
    "Rendered SST2": "Rendered SST2: optical character recognition; sentences of movie reviews rendered as text images, classify positive or negative sentiment.",
    "RESISC45": "RESISC45: remote sensing aerial and satellite scene classification with 45 classes such as airport, farmland, harbor, stadium.",
    "Stanford Cars": "Stanford Cars: fine-grained photographs of cars; recognise 196 car makes, models and years.",
    "STL-10": "STL-10: 96x96 natural photographs of 10 classes of animals and vehicles.",
    "SUN397": "SUN397: scene recognition; photographs of 397 indoor and outdoor scene categories.",
    "SVHN": "SVHN: Street View House Numbers; cropped street photographs of digits on house number plates.",
    "Flickr": "Flickr30k image-text retrieval: everyday photographs with human-written captions; retrieve the matching caption for an image and the image for a caption.",
    "MSCOCO": "MS-COCO image-text retrieval: photographs of common objects in context with human-written captions; retrieve the matching caption or image.",
    "WinoGAViL": "WinoGAViL: a vision-and-language association game; pick the images that match a set of cue words using commonsense associations.",
    "iWildCam": "iWildCam (WILDS): camera-trap photographs of wildlife from many locations; species classification under a shift in camera location.",
    "Camelyon17": "Camelyon17 (WILDS): histopathology tissue patches from several hospitals; tumour detection under a shift in hospital.",
    "FMoW": "FMoW (WILDS): Functional Map of the World satellite images; classify building and land use across world regions and years.",
    "Dollar Street": "Dollar Street: photographs of household objects taken in homes around the world at different income levels; geographic and income fairness.",
    "GeoDE": "GeoDE: geographically diverse crowdsourced photographs of common objects from different world regions; geographic fairness.",
}

TIMM_DESCRIPTIONS = {
    "imagenet": "ImageNet-1k validation set: 50,000 natural photographs of objects and animals in 1000 classes.",
    "imagenet-real": "ImageNet-ReaL: the ImageNet validation photographs re-labelled with reassessed multi-label 'real' labels.",
    "imagenetv2-matched-frequency": "ImageNetV2 matched frequency: a new test set of photographs of the 1000 ImageNet classes collected with the original protocol; mild distribution shift.",
    "imagenet-sketch": "ImageNet-Sketch: black-and-white hand-drawn sketches of the 1000 ImageNet classes; domain shift from photographs to drawings.",
    "imagenet-r": "ImageNet-R: renditions of 200 ImageNet classes as art, cartoons, paintings, sculptures, toys, tattoos and graffiti.",
    "imagenet-a": "ImageNet-A: natural adversarial examples; real photographs of 200 ImageNet classes that ResNet-50 classifiers get wrong.",
    "imagenet-r-clean": "ImageNet validation photographs restricted to the same 200 classes as ImageNet-R (clean reference).",
    "imagenet-a-clean": "ImageNet validation photographs restricted to the same 200 classes as ImageNet-A (clean reference).",
}

LLM_DESCRIPTIONS = {
    "arc": "ARC-Challenge: grade-school science multiple-choice questions that retrieval and co-occurrence methods fail on; reasoning and science knowledge, 25-shot.",
    "hellaswag": "HellaSwag: commonsense natural language inference; choose the most plausible continuation of a description of an everyday activity, 10-shot.",
    "mmlu": "MMLU: multiple-choice exam questions on 57 subjects including mathematics, history, law and medicine; broad world knowledge, 5-shot.",
    "truthfulqa": "TruthfulQA: questions crafted so that common misconceptions lead to false answers; measures truthfulness, multiple choice (mc2), 0-shot.",
    "winogrande": "WinoGrande: commonsense pronoun resolution; fill in the blank of a sentence with one of two options, 5-shot.",
    "gsm8k": "GSM8K: grade-school math word problems requiring multi-step arithmetic reasoning with a free-form numeric answer, 5-shot.",
}

TABLES = ("openclip", "timm", "llm")


def _read(name):
    import pyarrow.parquet as pq

    path = shared_data_dir() / name
    if not path.exists():
        raise FileNotFoundError(f"{path} not found (set ZOOQL_SHARED_DATA to the shared data folder)")
    return pq.read_table(path).to_pydict()


_PRETRAIN_SOURCES = ("laion2b", "laion400m", "laion5b", "laion_aesthetic", "openai", "datacomp",
                     "commonpool", "dfn5b", "dfn2b", "metaclip", "webli", "yfcc15m", "cc12m",
                     "merged2b", "mscoco")
_SCALE = {"m": 1e6, "b": 1e9}


def _openclip_features(arch: str, tag: str, params_m, gflops) -> dict:
    a = arch.lower()
    fam = ("eva" if a.startswith("eva") else "coca" if a.startswith("coca") else
           "convnext" if a.startswith("convnext") else "resnet" if a.startswith("rn") else
           "nllb" if a.startswith("nllb") else "vit")
    variant = ("siglip" if "siglip" in a else "clipa" if "clipa" in a else
               "quickgelu" if "quickgelu" in a else "clip")
    t = tag.lower()
    src = [s for s in _PRETRAIN_SOURCES if s in t] or [t]
    m = re.search(r"_s(\d+)([mb])", t)
    seen = float(m.group(1)) * _SCALE[m.group(2)] if m else None
    size = re.search(r"commonpool_(s|m|l|xl)|datacomp_(s|m|l|xl)", t)
    feats = {"params_m": float(params_m), "gflops": float(gflops), "arch": arch, "pretrained": tag,
             "family": fam, "variant": variant, "pretrain_data": src,
             "samples_seen": seen, "multilingual": bool(re.search(r"nllb|xlm|i18n", a))}
    if size:
        feats["pool_scale"] = size.group(1) or size.group(2)
    if "filter" in t or re.search(r"_(clip|laion|image|text|basic)_s", t):
        feats["pool_filter"] = re.search(r"_(clip|laion|image|text|basic)_s", t).group(1) \
            if re.search(r"_(clip|laion|image|text|basic)_s", t) else "none"
    return feats


def load_openclip():
    long = _read("openclip_long.parquet")
    mods = _read("openclip_models.parquet")
    recs = Records.from_rows(zip(long["model"], long["dataset"], long["metric"], long["score"]))
    feats = {m: _openclip_features(a, p, pm, gf) for m, a, p, pm, gf in
             zip(mods["model"], mods["arch"], mods["pretrained"], mods["params_m"], mods["gflops"])}
    side = SideInfo(dataset_text=dict(OPENCLIP_DESCRIPTIONS), model_features=feats)
    return recs, side, {"reference": "ImageNet 1k", "units": "accuracy points x100", "scale": 100.0,
                        "rel_scale": 1.0}


def load_timm():
    long = _read("timm_long.parquet")
    mods = _read("timm_models.parquet")
    recs = Records.from_rows(zip(long["model_key"], long["dataset"], long["metric"], long["score"]))
    feats = {}
    for i, key in enumerate(mods["model_key"]):
        def g(c):
            v = mods[c][i]
            return None if v is None or (isinstance(v, float) and math.isnan(v)) else v
        feats[key] = {"params_m": g("param_count_m"), "family": g("family"), "arch": g("arch"),
                      "pretrained_tag": g("pretrained_tag"), "img_size": g("img_size"),
                      "gmacs": g("infer_gmacs"), "crop_pct": g("crop_pct"),
                      "interpolation": g("interpolation"), "pretrain": g("in1k_metadata_pretrain"),
                      "throughput": g("infer_samples_per_sec")}
    side = SideInfo(dataset_text=dict(TIMM_DESCRIPTIONS), model_features=feats)
    return recs, side, {"reference": "imagenet", "units": "accuracy %", "scale": 1.0, "rel_scale": 0.01}


LLM_BENCHMARKS = ("arc", "hellaswag", "mmlu", "truthfulqa", "winogrande", "gsm8k")


def load_llm():
    t = _read("open_llm_leaderboard.parquet")
    rows, feats = [], {}
    for i, name in enumerate(t["name"]):
        for b in LLM_BENCHMARKS:
            s = t[b][i]
            if s is not None and not (isinstance(s, float) and math.isnan(s)):
                rows.append((name, b, "acc", float(s)))
        size = t["size"][i]
        arch = t["arch"][i]
        feats[name] = {"params_b": float(size) if size is not None and size > 0 else None,
                       "arch": arch if arch and arch != "error" else None,
                       "moe": bool(t["moe"][i]), "precision": t["precision"][i],
                       "org": t["org"][i], "name": name.split("/", 1)[-1]}
    recs = Records.from_rows(rows)
    side = SideInfo(dataset_text=dict(LLM_DESCRIPTIONS), model_features=feats)
    return recs, side, {"reference": "mmlu", "units": "accuracy %", "scale": 1.0, "rel_scale": 0.01}


LOADERS = {"openclip": load_openclip, "timm": load_timm, "llm": load_llm}


LOVM_MODELS = (
    "RN50:openai RN101:openai RN50x4:openai RN50x16:openai RN50x64:openai ViT-B-32:openai "
    "ViT-B-16:openai ViT-L-14:openai ViT-L-14-336:openai ViT-B-32:laion400m_e31 "
    "ViT-B-32:laion400m_e32 ViT-B-32:laion2b_e16 ViT-B-32:laion2b_s34b_b79k "
    "ViT-B-32-quickgelu:laion400m_e32 ViT-B-16:laion400m_e32 ViT-B-16-plus-240:laion400m_e32 "
    "ViT-L-14:laion400m_e32 ViT-L-14:laion400m_e31 ViT-L-14:laion2b_s32b_b82k "
    "ViT-H-14:laion2b_s32b_b79k ViT-g-14:laion2b_s12b_b42k ViT-g-14:laion2b_s34b_b88k "
    "convnext_base_w:laion2b_s13b_b82k convnext_base_w:laion2b_s13b_b82k_augreg "
    "convnext_base_w:laion_aesthetic_s13b_b82k convnext_base_w_320:laion_aesthetic_s13b_b82k "
    "convnext_base_w_320:laion_aesthetic_s13b_b82k_augreg convnext_large_d:laion2b_s26b_b102k_augreg "
    "convnext_large_d_320:laion2b_s29b_b131k_ft convnext_large_d_320:laion2b_s29b_b131k_ft_soup "
    "convnext_base:laion400m_s13b_b51k coca_ViT-B-32:laion2b_s13b_b90k "
    "coca_ViT-B-32:mscoco_finetuned_laion2b_s13b_b90k coca_ViT-L-14:laion2b_s13b_b90k "
    "coca_ViT-L-14:mscoco_finetuned_laion2b_s13b_b90k").split()
LOVM_DATASETS = ("Stanford Cars", "CIFAR-100", "CLEVR Distance", "CLEVR Counts", "Country211",
                 "Describable Textures", "EuroSAT", "Oxford Flowers-102", "GTSRB", "ImageNet 1k",
                 "KITTI Vehicle Distance", "MNIST", "PatchCamelyon", "Oxford-IIIT Pet",
                 "Rendered SST2", "RESISC45", "STL-10", "SUN397", "SVHN", "Pascal VOC 2007")

METHODS = ("auto", "modellens", "avg_rank", "imagenet", "size", "knn_dataset")
METRIC_COLS = ("ndcg5", "ndcg5_lovm", "tau5", "r5", "regret", "rho", "pool_ndcg5")
POOL, POOL_DRAWS = 40, 50


def make_methods(meta, cfg):
    # auto = the default of RECOMMEND: TRAIN RECOMMENDER's fit + validation + choice
    # (recommend_select), with the reference dataset that the imagenet baseline uses
    return {
        "auto": AutoRecommender(Recommender(**cfg).config, reference=meta["reference"]),
        "modellens": Recommender(**cfg),
        "avg_rank": BASELINES["avg_rank"](),
        "imagenet": BASELINES["imagenet"](reference=meta["reference"]),
        "size": BASELINES["size"](),
        "knn_dataset": BASELINES["knn_dataset"](),
    }


def pool_ndcg(true, pred, rng):
    n = len(true)
    if n <= POOL:
        return ndcg_at_k(true, pred)
    vals = []
    for _ in range(POOL_DRAWS):
        idx = rng.choice(n, POOL, replace=False)
        vals.append(ndcg_at_k(true[idx], pred[idx]))
    return float(np.mean(vals))


def score_list(true, pred, scale, rng, rel_scale=None):
    return {"ndcg5": ndcg_at_k(true, pred), "ndcg5_lovm": ndcg_lovm_at_k(true, pred, rel_scale=rel_scale),
            "tau5": kendall_tau_at_k(true, pred),
            "r5": recall_at_k(true, pred), "regret": top1_regret(true, pred) * scale,
            "rho": spearman(true, pred), "pool_ndcg5": pool_ndcg(true, pred, rng)}


def held_out_lists(recs, di):
    sel = recs.d_idx == di
    for k in np.unique(recs.k_idx[sel]):
        s2 = sel & (recs.k_idx == k)
        yield recs.metrics[k], [recs.models[i] for i in recs.m_idx[s2]], recs.score[s2]


def predict_vec(method, dataset, metric, models, description=None, given=None):
    out = {m: s for m, s, _ in method.predict(dataset, metric, models=models,
                                               description=description, given=given)}
    return np.array([out.get(m, -np.inf) for m in models], dtype=np.float64)


def lodo(recs, side, meta, cfg, folds, rng, keep_frac=1.0, seeds_list=(), methods=METHODS,
         log=None, choices=None):
    """-> ({method: [row dicts]}, {n_seeds: [row dicts]} for modellens/knn)."""
    rows = {m: [] for m in methods}
    seed_rows: dict[str, list] = {}
    for di in folds:
        d = recs.datasets[di]
        train_mask = recs.d_idx != di
        if keep_frac < 1.0:
            train_mask &= rng.random(len(recs)) < keep_frac
        train = recs.subset(train_mask)
        side_tr = SideInfo({k: v for k, v in side.dataset_text.items() if k != d},
                           side.model_features)
        ms = {k: v for k, v in make_methods(meta, cfg).items() if k in methods}
        for m in ms.values():
            m.fit(train, side_tr)
        if choices is not None and "auto" in ms:
            choices.append(ms["auto"].selection.describe())
        desc = side.dataset_text.get(d)
        for metric, models, true in held_out_lists(recs, di):
            for name, m in ms.items():
                pred = predict_vec(m, d, metric, models, description=desc)
                rows[name].append(score_list(true, pred, meta["scale"], rng, meta.get("rel_scale")))
            for n in seeds_list:
                pick = rng.choice(len(models), n, replace=False) if n else np.array([], int)
                given = {models[i]: float(true[i]) for i in pick}
                rest = np.setdiff1d(np.arange(len(models)), pick)
                sub_models = [models[i] for i in rest]
                for name in ("modellens", "avg_rank", "knn_dataset"):
                    if name not in ms:
                        continue
                    # knn_dataset with seeds ranks by seed correlation (no description)
                    dsc = None if (name == "knn_dataset" and n) else desc
                    pred = predict_vec(ms[name], d, metric, sub_models, description=dsc,
                                       given=given or None)
                    seed_rows.setdefault(f"{name}|{n}", []).append(
                        score_list(true[rest], pred, meta["scale"], rng, meta.get("rel_scale")))
        if log:
            log(f"  fold {d!r} done")
    return rows, seed_rows


def cold_models(recs, side, meta, cfg, rng, n_folds=5, max_folds=None):
    """New-model cold start: K-fold over models, rank held-out models from features."""
    M = len(recs.models)
    perm = rng.permutation(M)
    folds = np.array_split(perm, n_folds)[: max_folds or n_folds]
    res = {"modellens": {"rho": [], "pct_err": []}, "size": {"rho": [], "pct_err": []},
           "featureless": {"rho": [], "pct_err": []}}
    for f in folds:
        hold = np.zeros(M, dtype=bool)
        hold[f] = True
        train = recs.subset(~hold[recs.m_idx])
        ml = Recommender(**cfg).fit(train, side)
        sz = BASELINES["size"]().fit(train, side)
        lists = np.unique(recs.d_idx * len(recs.metrics) + recs.k_idx)
        for lk in lists:
            d, k = divmod(int(lk), len(recs.metrics))
            sel = (recs.d_idx == d) & (recs.k_idx == k)
            models = [recs.models[i] for i in recs.m_idx[sel]]
            true = recs.score[sel]
            is_h = hold[recs.m_idx[sel]]
            if is_h.sum() < 3:
                continue
            hm = [m for m, h in zip(models, is_h) if h]
            ht = true[is_h]
            others = np.sort(true[~is_h])
            true_pct = np.array([np.searchsorted(np.sort(true), t, side="left") / (len(true) - 1)
                                 for t in ht])
            for name in res:
                if name == "featureless":
                    pred_scores = np.full(len(hm), np.median(others))
                    pred_rank = np.zeros(len(hm))
                elif name == "modellens":
                    out = {m: (s, u) for m, s, u in ml.predict(recs.datasets[d], recs.metrics[k], models=hm)}
                    pred_scores = np.array([out[m][0] for m in hm])
                    pred_rank = pred_scores
                else:
                    out = {m: s for m, s, _ in sz.predict(recs.datasets[d], recs.metrics[k], models=hm)}
                    pred_rank = np.array([out[m] for m in hm])
                    # size has no score scale: place by the rank of its size among held-out
                    order = np.argsort(np.argsort(pred_rank))
                    qs = (order + 0.5) / len(hm)
                    pred_scores = np.quantile(others, qs)
                pred_pct = np.searchsorted(others, pred_scores, side="left") / max(len(others), 1)
                res[name]["pct_err"].append(float(np.mean(np.abs(pred_pct - true_pct))))
                rho = spearman(ht, pred_rank) if name != "featureless" else 0.0
                res[name]["rho"].append(rho)
    return {k: {m: float(np.nanmean(v)) for m, v in d.items()} for k, d in res.items()}


def choice_note(agg, choices):
    """What the default chose in each outer fold, and its margin over the best baseline."""
    if "auto" not in agg:
        return ""
    base = {m: agg[m]["ndcg5"] for m in ("avg_rank", "imagenet", "size", "knn_dataset") if m in agg}
    best = max(base, key=base.get)
    counts = {c: choices.count(c) for c in sorted(set(choices), key=choices.index)}
    return (f"auto (the default) chose, per fold: " + "; ".join(f"{c} x{n}" for c, n in counts.items())
            + f". auto ndcg5 - best baseline ({best}) = {agg['auto']['ndcg5'] - base[best]:+.3f} "
              f"(target >= +0.02)")


def mean_rows(rows):
    return {c: float(np.nanmean([r[c] for r in rows])) for c in METRIC_COLS} if rows else {}


def fmt_table(title, agg, cols=METRIC_COLS, note=None):
    lines = [f"### {title}", ""]
    if note:
        lines += [note, ""]
    lines.append("| method | " + " | ".join(cols) + " |")
    lines.append("|---|" + "---:|" * len(cols))
    for name, vals in agg.items():
        lines.append(f"| {name} | " + " | ".join(f"{vals.get(c, float('nan')):.3f}" for c in cols) + " |")
    return "\n".join(lines) + "\n"


def lovm_subset(recs, side):
    keep_m = {recs.models.index(m) for m in LOVM_MODELS if m in recs.models}
    keep_d = {recs.datasets.index(d) for d in LOVM_DATASETS if d in recs.datasets}
    mask = np.array([m in keep_m and d in keep_d for m, d in zip(recs.m_idx, recs.d_idx)])
    sub = recs.subset(mask).compact()
    side2 = SideInfo({d: t for d, t in side.dataset_text.items() if d in sub.datasets},
                     {m: f for m, f in side.model_features.items() if m in sub.models})
    return sub, side2


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="subset of folds, fewer epochs")
    ap.add_argument("--tables", default="openclip,timm,llm")
    ap.add_argument("--protocols", default="lodo,lovm,seeds,cold,curve",
                    help="any of train,lodo,lovm,seeds,cold,curve")
    ap.add_argument("--json", default=None, help="also write all numbers to this JSON file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", default="{}", help="JSON of Recommender overrides, e.g. '{\"dim\": 16}'")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    if not shared_data_dir().exists():
        print(f"shared data folder {shared_data_dir()} not found; set ZOOQL_SHARED_DATA")
        return 2
    cfg = {"epochs": 150} if args.quick else {}
    cfg.update(json.loads(args.config))
    protocols = set(args.protocols.split(","))
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if args.verbose else None
    out_md, out_json = [], {"config": Recommender(**cfg).config, "quick": args.quick}
    t_all = time.time()
    for table in args.tables.split(","):
        recs, side, meta = LOADERS[table]()
        if "train" in protocols:
            t0 = time.time()
            rec = train_default(recs, side, Recommender(**cfg).config, reference=meta["reference"])
            md = (f"### {table} -- TRAIN RECOMMENDER (ModelLens fit + validation + choice on all "
                  f"{len(recs)} records): {time.time() - t0:.0f}s\n\n{rec.selection.summary()}\n")
            out_md.append(md)
            print(md, flush=True)
            out_json.setdefault(table, {})["train"] = {"seconds": time.time() - t0,
                                                       "selection": rec.selection.to_json()}
        rng = np.random.default_rng(args.seed)
        D = len(recs.datasets)
        folds = list(range(D)) if not args.quick else list(range(0, D, max(1, D // 6)))[:6]
        head = (f"## {table}: {len(recs.models)} models x {len(recs.datasets)} datasets, "
                f"{len(recs)} records (regret in {meta['units']})")
        out_md.append(head + "\n")
        print(head, flush=True)
        res_t = out_json.setdefault(table, {})
        if protocols & {"lodo", "seeds"}:
            t0 = time.time()
            seeds = (0, 3, 5, 10) if "seeds" in protocols else ()
            choices = []
            rows, seed_rows = lodo(recs, side, meta, cfg, folds, rng, seeds_list=seeds, log=log,
                                   choices=choices)
            agg = {m: mean_rows(r) for m, r in rows.items()}
            dt = time.time() - t0
            md = fmt_table(f"{table} -- leave-one-dataset-out ({len(folds)} folds, {dt:.0f}s)", agg,
                           note=choice_note(agg, choices))
            out_md.append(md)
            print(md, flush=True)
            res_t["lodo"] = agg
            if seeds:
                sagg = {k: mean_rows(v) for k, v in seed_rows.items()}
                cols = ("ndcg5", "pool_ndcg5", "rho", "regret")
                lines = ["### " + table + " -- unseen dataset with n observed seed scores "
                         "(eval on non-seed models)", "",
                         "| method | n | " + " | ".join(cols) + " |", "|---|---:|" + "---:|" * len(cols)]
                for key, vals in sorted(sagg.items(), key=lambda kv: (kv[0].split("|")[0], int(kv[0].split("|")[1]))):
                    name, n = key.split("|")
                    lines.append(f"| {name} | {n} | " + " | ".join(f"{vals[c]:.3f}" for c in cols) + " |")
                md = "\n".join(lines) + "\n"
                out_md.append(md)
                print(md, flush=True)
                res_t["seeds"] = sagg
        if "lovm" in protocols and table == "openclip":
            t0 = time.time()
            sub, side2 = lovm_subset(recs, side)
            f2 = list(range(len(sub.datasets)))
            if args.quick:
                f2 = f2[::4]
            choices = []
            rows, _ = lodo(sub, side2, meta, cfg, f2, rng, log=log, choices=choices)
            agg = {m: mean_rows(r) for m, r in rows.items()}
            md = fmt_table(
                f"openclip LOVM-comparable subset: {len(sub.models)} LOVM models x {len(sub.datasets)} "
                f"LOVM datasets, LODO ({time.time() - t0:.0f}s)", agg,
                note="Literature anchors on LOVM (35-48 VLMs x ~21 datasets, their own ground truth "
                     "and NDCG@5 implementation): ModelGPT 0.544, ImageNet 0.539, AvgRank 0.524, "
                     "SWAB 0.616. Not the same numbers -- indicative only.\n\n" + choice_note(agg, choices))
            out_md.append(md)
            print(md, flush=True)
            res_t["lovm_subset"] = agg
        if "cold" in protocols:
            t0 = time.time()
            cm = cold_models(recs, side, meta, cfg, rng, max_folds=2 if args.quick else None)
            lines = [f"### {table} -- new-model cold start (features only, "
                     f"{'2 of ' if args.quick else ''}5 model folds, {time.time() - t0:.0f}s)", "",
                     "| method | Spearman among held-out models | mean abs percentile error |",
                     "|---|---:|---:|"]
            for name, v in cm.items():
                lines.append(f"| {name} | {v['rho']:.3f} | {v['pct_err']:.3f} |")
            md = "\n".join(lines) + "\n"
            out_md.append(md)
            print(md, flush=True)
            res_t["cold_models"] = cm
        if "curve" in protocols and (table != "llm" or not args.quick):
            t0 = time.time()
            cfold = folds if table != "llm" else folds[:3]
            lines = [f"### {table} -- learning curve: LODO with a fraction of the training records "
                     f"({len(cfold)} folds)", "",
                     "| kept | modellens ndcg5 | modellens pool_ndcg5 | modellens rho | avg_rank ndcg5 | avg_rank pool_ndcg5 | avg_rank rho |",
                     "|---:|---:|---:|---:|---:|---:|---:|"]
            curve = {}
            for frac in (0.1, 0.25, 0.5, 1.0):
                rows, _ = lodo(recs, side, meta, cfg, cfold, np.random.default_rng(args.seed + 1),
                               keep_frac=frac, methods=("modellens", "avg_rank"), log=log)
                a, b = mean_rows(rows["modellens"]), mean_rows(rows["avg_rank"])
                curve[str(frac)] = {"modellens": a, "avg_rank": b}
                lines.append(f"| {int(frac * 100)}% | {a['ndcg5']:.3f} | {a['pool_ndcg5']:.3f} | {a['rho']:.3f} | "
                             f"{b['ndcg5']:.3f} | {b['pool_ndcg5']:.3f} | {b['rho']:.3f} |")
            md = "\n".join(lines) + f"\n\n({time.time() - t0:.0f}s)\n"
            out_md.append(md)
            print(md, flush=True)
            res_t["curve"] = curve
    total = time.time() - t_all
    print(f"total runtime {total:.0f}s", flush=True)
    out_json["runtime_s"] = total
    if args.json:
        Path(args.json).write_text(json.dumps(out_json, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
