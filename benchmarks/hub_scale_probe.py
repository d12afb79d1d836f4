"""PROBE over many small models (issue 14, "Probing many models") against bare batched
forward passes of the same models.

The benchmark generates ``--models`` TorchScript MLPs (16x16 grey input, 256 -> 64 -> 10;
different random weights, ~70 KB each) and a probe set of ``--probes`` images, registers
them in a fresh hub (not timed), then times, each in its own process (so that its peak
RSS is its own):

* **bare**: for every model ``torch.jit.load`` + batched forward passes over the probes
  (preprocessed once), the outputs kept as numpy arrays -- what a hand-written script does;
* **zooql**: ``PROBE MODELS WITH ps`` on the local executor with the default settings
  (commit groups of at most ``probe_commit_interval`` = 1 s of work, stored and committed on
  a writer thread while the next models run; every model atomic);
* **zooql per-model commit**: ``SET probe_commit_interval = 0`` (one transaction per model)
  on the first ``--per-model`` models, reported as its own row.

The bare loop runs before and after ZooQL (the machine is shared: its load changes); the
faster of the two is the baseline, so the ratio is the conservative one.
Target: ZooQL >= 85% of the bare throughput (models/s). Peak memory (RSS) per row.

``rows(args)`` returns the table rows (dicts with keys figure, baseline_s, zooql_s, ratio,
target, met, peak_rss_mb, note) for ``benchmarks/hub_scale.py``; run standalone::

    python benchmarks/hub_scale_probe.py --models 10000

prints the table and appends it to benchmarks/RESULTS.md. Generated files go under
``$ZOOQL_CACHE/hub_scale_probe`` (default ``~/.cache/zooql/bench/hub_scale_probe``) and are
deleted afterwards unless ``--keep``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.85
SIDE, HIDDEN, CLASSES = 16, 64, 10


def _workdir(args) -> Path:
    base = getattr(args, "workdir", None)
    if not base:   # the benchmarks' cache folder (benchmarks/probelog_speed.py and others)
        base = os.path.join(os.environ.get("ZOOQL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "zooql", "bench"),
                            "hub_scale_probe")
    return Path(base)


def generate(folder: Path, n_models: int, n_probes: int, seed: int = 0) -> dict:
    """The MLPs (one TorchScript file each), the probes and a models CSV."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    net = torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(SIDE * SIDE, HIDDEN),
                                               torch.nn.ReLU(), torch.nn.Linear(HIDDEN, CLASSES)))
    params = list(net.parameters())
    lines = ["name,source,input_size,channels,mean,std"]
    for i in range(n_models):
        with torch.no_grad():
            for p in params:
                p.copy_(torch.as_tensor(rng.normal(size=tuple(p.shape)) / np.sqrt(p.shape[-1]), dtype=torch.float32))
        path = folder / f"mlp{i:05d}.pt"
        net.save(str(path))
        lines.append(f"mlp{i:05d},torchscript:{path},{SIDE},1,0.5,0.5")
    (folder / "models.csv").write_text("\n".join(lines) + "\n")
    np.save(folder / "probes.npy", rng.integers(0, 256, (n_probes, SIDE, SIDE), dtype=np.uint8))
    return {"csv": str(folder / "models.csv"), "probes": str(folder / "probes.npy"),
            "paths": [str(folder / f"mlp{i:05d}.pt") for i in range(n_models)]}


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def phase_bare(folder: Path, n: int) -> dict:
    """Bare batched forward passes: load each model, run it over the probes in batches."""
    import torch

    torch.set_num_threads(1)
    probes = np.load(folder / "probes.npy")
    x = torch.from_numpy(((probes.astype(np.float32) / 255.0) - 0.5) / 0.5)[:, None]
    paths = [str(folder / f"mlp{i:05d}.pt") for i in range(n)]
    t0 = time.perf_counter()
    out = 0.0
    for p in paths:
        m = torch.jit.load(p)
        with torch.inference_mode():
            ys = [m(x[i:i + 64]).float().numpy() for i in range(0, len(x), 64)]
        out += float(np.concatenate(ys)[0, 0])
    return {"seconds": time.perf_counter() - t0, "peak_rss_mb": _peak_rss_mb(), "check": out}


def phase_zooql(folder: Path, n: int, interval: float | None, probe_set: str) -> dict:
    import torch
    import zooql

    torch.set_num_threads(1)
    hub = zooql.connect(str(folder / "hub"))
    if interval is not None:   # SET persists in the hub: the per-model row runs last
        hub.execute(f"SET probe_commit_interval = {interval}")
    stmt = f"PROBE MODELS WHERE name < 'mlp{n:05d}' WITH {probe_set}"
    t0 = time.perf_counter()
    res = hub.execute(stmt)
    seconds = time.perf_counter() - t0
    probed = sum(1 for r in res.rows if str(r[2]).startswith("probed"))
    return {"seconds": seconds, "peak_rss_mb": _peak_rss_mb(), "probed": probed, "message": res.message}


def _register(folder: Path) -> float:
    import zooql

    t0 = time.perf_counter()
    hub = zooql.connect(str(folder / "hub"))
    hub.execute(f"ADD MODELS FROM '{folder / 'models.csv'}'")
    hub.execute(f"CREATE PROBE SET ps FROM '{folder / 'probes.npy'}'")
    hub.execute(f"CREATE PROBE SET ps_each FROM '{folder / 'probes.npy'}'")   # for the per-model-commit row
    hub.close()
    return time.perf_counter() - t0


def _run_phase(folder: Path, *extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--phase", *extra, "--workdir", str(folder)],
                         capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"phase {extra} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def rows(args) -> list[dict]:
    """The benchmark's table rows (see the module docstring)."""
    n = int(getattr(args, "models", 10000) or 10000)
    n_probes = int(getattr(args, "probes", 256) or 256)
    per_model = min(n, int(getattr(args, "per_model", 500) or 500))
    folder = _workdir(args) / f"m{n}"
    shutil.rmtree(folder, ignore_errors=True)
    try:
        t0 = time.perf_counter()
        generate(folder, n, n_probes)
        gen_s = time.perf_counter() - t0
        reg_s = _register(folder)
        bare1 = _run_phase(folder, "bare", "--models", str(n))
        zq = _run_phase(folder, "zooql", "--models", str(n))
        bare2 = _run_phase(folder, "bare", "--models", str(n))
        bare = min(bare1, bare2, key=lambda b: b["seconds"])
        bare["both"] = (bare1["seconds"], bare2["seconds"])
        # per-model commits, on a second probe set over the first models
        bare_pm = _run_phase(folder, "bare", "--models", str(per_model))
        bare_pm["both"] = (bare_pm["seconds"],)
        zq_pm = _run_phase(folder, "zooql", "--models", str(per_model), "--interval", "0", "--probe-set", "ps_each")
    finally:
        if not getattr(args, "keep", False):
            shutil.rmtree(folder, ignore_errors=True)
    out = []
    for label, b, z, m in ((f"PROBE {n} small models (default: commit groups of 1 s, writer thread)", bare, zq, n),
                           (f"PROBE {per_model} small models (commit every model)", bare_pm, zq_pm, per_model)):
        ratio = b["seconds"] / z["seconds"]        # ZooQL throughput / bare throughput
        out.append({"figure": label, "baseline_s": round(b["seconds"], 2), "zooql_s": round(z["seconds"], 2),
                    "ratio": round(ratio, 3), "target": f">= {TARGET:.0%} of bare throughput",
                    "met": bool(ratio >= TARGET and z["probed"] == m),
                    "peak_rss_mb": round(max(b["peak_rss_mb"], z["peak_rss_mb"]), 1),
                    "note": (f"{z['probed']}/{m} probed; bare runs {' / '.join(f'{x:.1f} s' for x in b['both'])}; "
                             f"bare {m / b['seconds']:.0f} models/s, ZooQL "
                             f"{m / z['seconds']:.0f} models/s; overhead {(z['seconds'] - b['seconds']) / m * 1000:.1f} "
                             f"ms/model; RSS bare {b['peak_rss_mb']:.0f} MB, ZooQL {z['peak_rss_mb']:.0f} MB; "
                             f"{n_probes} probes; generate {gen_s:.0f} s, register {reg_s:.0f} s (not timed)")})
    return out


def _table(rs: list[dict]) -> str:
    keys = ["figure", "baseline_s", "zooql_s", "ratio", "target", "met", "peak_rss_mb", "note"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rs]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=int, default=10000)
    p.add_argument("--probes", type=int, default=256)
    p.add_argument("--per-model", dest="per_model", type=int, default=500)
    p.add_argument("--workdir", default=None)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--phase", choices=("bare", "zooql"), default=None)
    p.add_argument("--interval", type=float, default=None)
    p.add_argument("--probe-set", dest="probe_set", default="ps")
    p.add_argument("--no-results", dest="no_results", action="store_true")
    args = p.parse_args(argv)
    if args.phase:
        folder = Path(args.workdir)
        res = phase_bare(folder, args.models) if args.phase == "bare" else phase_zooql(folder, args.models, args.interval, args.probe_set)
        print(json.dumps(res))
        return
    args.workdir = args.workdir or str(_workdir(args))
    rs = rows(args)
    table = _table(rs)
    print(table)
    if not args.no_results:
        cmd = " ".join(["python benchmarks/hub_scale_probe.py"] + (argv if argv is not None else sys.argv[1:]))
        with open(ROOT / "benchmarks" / "RESULTS.md", "a") as f:
            f.write(f"\n\n## PROBE over many small models (issue 14), {datetime.date.today()}\n\n"
                    f"Machine: shared 2-core CPU, loaded. Command: `{cmd}`\n\n{table}\n")


if __name__ == "__main__":
    main()
