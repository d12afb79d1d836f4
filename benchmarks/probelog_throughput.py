"""Benchmark 3: probing overhead over a bare batched forward pass.

For each model, time
* **bare**: ``model(x)`` over pre-made, already normalised float32 NCHW batches;
* **probe**: :func:`zooql.methods.probelog.kernels.probe_and_store` -- batching, conversion from
  uint8 NHWC images (scale/shift/permute), the forward pass, z-scoring and appending
  the descriptors to a DescriptorMatrix on disk (fsync + atomic manifest).
Runs alternate (bare, probe, bare, probe, ...) and medians are compared, since the
machine is shared.  Target: overhead <= 10%.

    python benchmarks/probelog_throughput.py
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from zooql.methods.probelog import kernels as P  # noqa: E402
from zooql.methods.probelog.probesets import builtin_probes  # noqa: E402
from zooql.methods.probelog.descriptors import DescriptorMatrix  # noqa: E402


def cache_dir() -> str:
    d = os.environ.get("ZOOQL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "zooql", "bench")
    os.makedirs(d, exist_ok=True)
    return d


def models():
    import torch.nn as nn
    out = []
    try:
        import timm
        out.append(("efficientnet_lite0 (timm, random init) 224px", timm.create_model(
            "efficientnet_lite0", pretrained=False, num_classes=1000), 224, 3, 64, 16))
    except Exception as e:  # pragma: no cover
        print("timm unavailable:", e)
    try:
        import torchvision
        out.append(("resnet18 (torchvision, random init) 224px",
                    torchvision.models.resnet18(weights=None), 224, 3, 64, 16))
    except Exception as e:  # pragma: no cover
        print("torchvision unavailable:", e)
    cnn = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(32 * 7 * 7, 10))
    out.append(("small CNN 28x28 gray (Fashion-MNIST size)", cnn, 28, 1, 2000, 250))
    return out


def main(argv=None):
    import torch
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    res = {"torch_threads": torch.get_num_threads(), "models": []}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    tmp = tempfile.mkdtemp(prefix="zq-throughput-", dir=cache_dir())
    try:
        for mi, (name, model, size, C, n, bs) in enumerate(models()):
            model.eval()
            rgb = builtin_probes(n=n, size=size, seed=0)
            if C == 1:
                probes = rgb.mean(-1).astype(np.uint8)
                mean, std = (0.286,), (0.353,)
            else:
                probes = rgb
                mean, std = P.IMAGENET_MEAN, P.IMAGENET_STD
            # pre-made tensors for the bare loop (the same normalisation)
            m = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
            s = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
            x = probes[..., None] if probes.ndim == 3 else probes
            x = (x.transpose(0, 3, 1, 2).astype(np.float32) / 255.0 - m) / s
            batches = [torch.from_numpy(np.ascontiguousarray(x[i:i + bs])) for i in range(0, n, bs)]

            def bare():
                with torch.inference_mode():
                    for xb in batches:
                        model(xb)

            k = [0]

            def probe():
                dm = DescriptorMatrix.create(os.path.join(tmp, f"m{mi}-d{k[0]}"), n, "float16")
                k[0] += 1
                P.probe_and_store(model, probes, dm, batch_size=bs, mean=mean, std=std)

            bare()
            probe()  # warm up both
            tb, tp = [], []
            for _ in range(a.reps):
                t = time.perf_counter()
                bare()
                tb.append(time.perf_counter() - t)
                t = time.perf_counter()
                probe()
                tp.append(time.perf_counter() - t)
            # check the logits agree
            ref = torch.cat([model(xb) for xb in batches]).detach().numpy()
            got = P.probe_logits(model, probes, batch_size=bs, mean=mean, std=std)
            err = float(np.abs(ref - got).max() / (np.abs(ref).max() + 1e-9))
            mb, mp = float(np.median(tb)), float(np.median(tp))
            row = {"model": name, "probes": n, "batch": bs, "bare_s": mb, "probe_s": mp,
                   "overhead_pct": (mp / mb - 1) * 100, "probes_per_s": n / mp,
                   "max_rel_logit_err": err}
            res["models"].append(row)
            print(f"{name}: {n} probes, batch {bs}: bare {mb:.3f} s, probe+store {mp:.3f} s "
                  f"-> overhead {row['overhead_pct']:+.1f}% ({n / mp:.0f} probes/s); "
                  f"logits match (rel err {err:.1e})", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        json.dump(res, open(a.json, "w"), indent=1)
    return res


if __name__ == "__main__":
    main()
