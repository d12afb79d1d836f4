"""PROBE over many small models (issue 14, "Probing many models") against bare batched
forward passes of the same models, interleaved so that both see the same machine load.

The benchmark generates ``--models`` TorchScript MLPs (16x16 grey input, 256 -> 64 -> 10;
different random weights, ~70 KB each) and a probe set of ``--probes`` images and registers
them in a hub (not timed). With ``--keep`` the registered hub stays under ``--workdir`` and
a later run with the same ``--models``/``--probes`` reuses it (each run probes with a probe
set of its own, so every model is probed afresh). Worker processes stay up for the whole
run (so each one's peak RSS is its own, and one-off imports are paid once, as in one long PROBE):

* **bare**: for every model ``torch.jit.load`` + batched forward passes over the probes
  (preprocessed once), the outputs kept as numpy arrays -- what a hand-written script does,
  in one process with one torch thread;
* **zooql**: ``PROBE MODELS WHERE name >= a AND name < b WITH ps`` on the local executor
  with the default settings: on this machine's worker processes (``local_workers`` auto:
  ``min(cores, 4)`` for 32 models or more, docs/find.md "Worker processes"), commit groups of
  at most ``probe_commit_interval`` = 1 s of work, stored and committed on a writer thread;
  every model atomic. The pool's start (~3 s) is paid before the first block (a warm-up PROBE
  of ``--warm`` models, not timed), as in one long PROBE.

The models are cut into blocks of ``--block``; each block runs bare and ZooQL back to back,
in ABBA order (bare first on even blocks, ZooQL first on odd ones), so that a change of the
machine's load hits both alike. Reported: the totals over all blocks (their ratio is the
figure), and the median and range of the per-block ratios. Each ZooQL block is its own PROBE
statement, so its per-statement costs are paid once per block (conservative against one
PROBE over all models). Informational rows, each one bare/ZooQL pair over the first
``--per-model`` models: ``SET probe_commit_interval = 0`` (one transaction per model);
``SET local_workers = 1`` (ZooQL in one process: its own overhead against the same bare
loop); and the bare loop split over as many processes as ZooQL's default has workers (the
same cores on both sides).
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
import re
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
    """This process's peak RSS plus that of ZooQL's PROBE worker processes, if any (each
    worker's own peak, read from /proc: they are alive until the process ends)."""
    import resource

    mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    pool = sys.modules.get("zooql.runtime.process_pool")
    procs = (getattr(pool._POOL["pool"], "_processes", None) or {}) if pool and pool._POOL["pool"] else {}
    for p in procs.values():
        try:
            with open(f"/proc/{p.pid}/status") as f:
                mb += next(int(x.split()[1]) for x in f if x.startswith("VmHWM:")) / 1024.0
        except (OSError, StopIteration):
            pass
    return mb


def _name(i: int) -> str:
    return f"mlp{i:05d}"


def bare_worker(folder: Path):
    """Bare batched forward passes: load each model, run it over the probes in batches.
    Returns ``run(a, b) -> seconds`` for models a..b-1."""
    import torch

    torch.set_num_threads(1)
    probes = np.load(folder / "probes.npy")
    x = torch.from_numpy(((probes.astype(np.float32) / 255.0) - 0.5) / 0.5)[:, None]

    def run(a: int, b: int, **_) -> dict:
        t0, c0 = time.perf_counter(), time.process_time()
        out = 0.0
        for i in range(a, b):
            m = torch.jit.load(str(folder / f"{_name(i)}.pt"))
            with torch.inference_mode():
                ys = [m(x[j:j + 64]).float().numpy() for j in range(0, len(x), 64)]
            out += float(np.concatenate(ys)[0, 0])
        return {"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0, "probed": b - a, "check": out}
    return run


def zooql_worker(folder: Path):
    """``run(a, b, probe_set, interval)``: one PROBE statement over models a..b-1."""
    import torch
    import zooql

    torch.set_num_threads(1)
    hub = zooql.connect(str(folder / "hub"))

    def run(a: int, b: int, probe_set: str = "ps", interval: float | None = None, workers: int | None = None) -> dict:
        if interval is not None:   # SET persists in the hub: the caller sets it back
            hub.execute(f"SET probe_commit_interval = {interval}")
        hub.execute(f"SET local_workers = {workers or 0}")   # a setting of this connection; 0: auto
        stmt = f"PROBE MODELS WHERE name >= '{_name(a)}' AND name < '{_name(b)}' WITH {probe_set}"
        t0, c0, m0 = time.perf_counter(), time.process_time(), time.thread_time()
        res = hub.execute(stmt)
        seconds, cpu, main = time.perf_counter() - t0, time.process_time() - c0, time.thread_time() - m0
        probed = sum(1 for r in res.rows if str(r[2]).startswith("probed"))
        pool = re.search(r"on (\d+) worker processes", res.message or "")   # PROBE's own report
        return {"seconds": seconds, "cpu": cpu, "cpu_main": main, "probed": probed, "message": res.message,
                "workers": int(pool.group(1)) if pool else 1}
    return run


def serve(kind: str, folder: Path) -> None:
    """A worker process: one JSON command a line on stdin, one JSON answer a line on stdout."""
    run = bare_worker(folder) if kind == "bare" else zooql_worker(folder)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("quit"):
            print(json.dumps({"peak_rss_mb": _peak_rss_mb()}), flush=True)
            return
        print(json.dumps(run(**cmd)), flush=True)


class _Worker:
    def __init__(self, kind: str, folder: Path):
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   OMP_NUM_THREADS="1")
        self.kind = kind
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--phase", kind,
                                      "--workdir", str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env)

    def ask(self, **cmd) -> dict:
        self.send(**cmd)
        return self.answer()

    def send(self, **cmd) -> None:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def answer(self) -> dict:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the {self.kind} worker died (exit {self.proc.wait()})")
            if line.startswith("{"):
                return json.loads(line)

    def close(self) -> float:
        rss = self.ask(quit=True)["peak_rss_mb"]
        self.proc.wait(timeout=60)
        return rss


def prepare(folder: Path, n: int, n_probes: int) -> dict:
    """The models and a hub with them registered: reused when ``folder`` already holds the
    same (``registered.json``), else generated and registered (not timed)."""
    marker = folder / "registered.json"
    want = {"models": n, "probes": n_probes}
    if marker.exists() and {k: json.loads(marker.read_text()).get(k) for k in want} == want:
        return {**json.loads(marker.read_text()), "reused": True}
    import zooql

    shutil.rmtree(folder, ignore_errors=True)
    t0 = time.perf_counter()
    generate(folder, n, n_probes)
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    hub = zooql.connect(str(folder / "hub"))
    hub.execute(f"ADD MODELS FROM '{folder / 'models.csv'}'")
    hub.close()
    info = {**want, "generate_s": round(gen_s, 1), "register_s": round(time.perf_counter() - t0, 1)}
    marker.write_text(json.dumps(info))
    return {**info, "reused": False}


def _probe_sets(folder: Path, kinds: tuple = ("ps", "pe")) -> tuple:
    """Fresh probe sets for this run, one per kind (the main rows, the per-model-commit row...)."""
    import zooql

    tag = datetime.datetime.now().strftime("%Y%m%d%H%M%S%f")
    hub = zooql.connect(str(folder / "hub"))
    names = tuple(f"{k}{tag}" for k in kinds)
    for name in names:
        hub.execute(f"CREATE PROBE SET {name} FROM '{folder / 'probes.npy'}'")
    hub.close()
    return names


def interleaved(bare: _Worker, zq: _Worker, n: int, block: int, probe_set: str) -> dict:
    """ABBA blocks of ``block`` models: per-block (bare s, ZooQL s) and the ZooQL probed count."""
    pairs, cpus, probed, workers = [], [], 0, 1
    for k, a in enumerate(range(0, n, block)):
        b = min(n, a + block)
        order = (bare, zq) if k % 2 == 0 else (zq, bare)
        got = {w.kind: w.ask(a=a, b=b, **({"probe_set": probe_set} if w is zq else {})) for w in order}
        pairs.append((got["bare"]["seconds"], got["zooql"]["seconds"]))
        cpus.append((got["bare"]["cpu"], got["zooql"]["cpu"], got["zooql"]["cpu_main"]))
        probed += got["zooql"]["probed"]
        workers = max(workers, int(got["zooql"].get("workers", 1)))
        print(f"block {k}: models {a}..{b - 1}: bare {pairs[-1][0]:.2f} s, ZooQL {pairs[-1][1]:.2f} s "
              f"({pairs[-1][0] / pairs[-1][1]:.0%}); CPU s bare {cpus[-1][0]:.2f}, ZooQL {cpus[-1][1]:.2f} "
              f"(main thread {cpus[-1][2]:.2f})", file=sys.stderr, flush=True)
    return {"pairs": pairs, "cpus": cpus, "probed": probed, "workers": workers}


def rows(args) -> list[dict]:
    """The benchmark's table rows (see the module docstring)."""
    n = int(getattr(args, "models", 10000) or 10000)
    n_probes = int(getattr(args, "probes", 256) or 256)
    block = max(1, int(getattr(args, "block", 500) or 500))
    per_model = min(n, int(getattr(args, "per_model", 500) or 500))
    folder = _workdir(args) / f"m{n}"
    try:
        prep = prepare(folder, n, n_probes)
        ps, pe, pw = _probe_sets(folder, ("ps", "pe", "pw"))
        bare, zq = _Worker("bare", folder), _Worker("zooql", folder)
        extra: list = []
        try:
            warm = int(getattr(args, "warm", 64) or 64)
            w = zq.ask(a=0, b=min(n, warm), probe_set=pw)   # starts the pool (a probe set of its own)
            main = interleaved(bare, zq, n, block, ps)
            pm_z = zq.ask(a=0, b=per_model, probe_set=pe, interval=0)
            pm_b = bare.ask(a=0, b=per_model)
            zq.ask(a=0, b=0, probe_set=pe, interval=1)   # the default again (SET persists in a kept hub)
            workers = max(1, int(main.get("workers", 1)))
            extra = informational(folder, bare, zq, per_model, workers, w)
        finally:
            rss = {"bare": bare.close(), "zooql": zq.close()}
    finally:
        if not getattr(args, "keep", False):
            shutil.rmtree(folder, ignore_errors=True)
    return [_main_row(n, n_probes, block, main, rss, prep), _per_model_row(per_model, pm_b, pm_z, rss)] + extra


def informational(folder: Path, bare: _Worker, zq: _Worker, m: int, workers: int, warm: dict) -> list[dict]:
    """ZooQL in one process against the same bare loop, and the default against the bare loop
    on as many processes as the default has workers (each on the first ``m`` models, with
    probe sets of their own)."""
    ps1, ps2 = _probe_sets(folder, ("pa", "pb"))
    one_b = bare.ask(a=0, b=m)
    one_z = zq.ask(a=0, b=m, probe_set=ps1, workers=1)
    others = [_Worker("bare", folder) for _ in range(workers - 1)]
    try:
        for wk in others:   # started and warm (imports, the probes) before the timing
            wk.ask(a=0, b=1)
        cuts = np.linspace(0, m, workers + 1).astype(int)
        t0 = time.perf_counter()
        for wk, a, b in zip([bare] + others, cuts[:-1], cuts[1:]):
            wk.send(a=int(a), b=int(b))
        par = [wk.answer() for wk in [bare] + others]
        par_s = time.perf_counter() - t0
        par_z = zq.ask(a=0, b=m, probe_set=ps2)
    finally:
        for wk in others:
            wk.close()
    rows = []
    for label, b_s, z in ((f"ZooQL in one process (SET local_workers = 1) vs the bare loop, {m} models", one_b["seconds"], one_z),
                          (f"ZooQL default ({par_z['workers']} workers) vs the bare loop split over {workers} processes, "
                           f"{m} models", par_s, par_z)):
        ratio = b_s / z["seconds"]
        rows.append({"figure": label + " (informational)", "baseline_s": round(b_s, 2),
                     "zooql_s": round(z["seconds"], 2), "ratio": round(ratio, 3),
                     "target": "- (informational)", "met": None,
                     "peak_rss_mb": None,
                     "note": f"{z['probed']}/{m} probed; one pair; ZooQL driver CPU {z['cpu']:.2f} s "
                             f"(main thread {z['cpu_main']:.2f} s); pool start before the first block "
                             f"{warm['seconds']:.1f} s (not timed)"})
    par_cpu = sum(p["cpu"] for p in par)
    rows[-1]["note"] += f"; bare processes' CPU {par_cpu:.2f} s"
    return rows


def _main_row(n, n_probes, block, main, rss, prep) -> dict:
    pairs = main["pairs"]
    b_s, z_s = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
    ratio = b_s / z_s            # ZooQL throughput / bare throughput
    per = sorted(b / z for b, z in pairs)
    setup = ("hub reused" if prep["reused"] else "hub built") + \
        (f" ({prep['note']})" if prep.get("note") else
         f" (generate {prep.get('generate_s', 0):.0f} s, register {prep.get('register_s', 0):.0f} s, not timed)")
    return {"figure": f"PROBE {n} small models (default: {main['workers']} worker processes, commit groups of 1 s, "
                      f"writer thread), {len(pairs)} ABBA blocks of {block}",
            "baseline_s": round(b_s, 2), "zooql_s": round(z_s, 2), "ratio": round(ratio, 3),
            "target": f">= {TARGET:.0%} of bare throughput", "met": bool(ratio >= TARGET and main["probed"] == n),
            "peak_rss_mb": round(max(rss.values()), 1),
            "note": (f"{main['probed']}/{n} probed; per-block ratio median {per[len(per) // 2]:.3f}, range "
                     f"{per[0]:.3f}-{per[-1]:.3f}; bare {n / b_s:.0f} models/s, ZooQL {n / z_s:.0f} models/s; "
                     f"overhead {(z_s - b_s) / n * 1000:.2f} ms/model; RSS bare {rss['bare']:.0f} MB, ZooQL (driver + workers) "
                     f"{rss['zooql']:.0f} MB; {n_probes} probes; {setup}")}


def _per_model_row(m, b, z, rss) -> dict:
    ratio = b["seconds"] / z["seconds"]
    return {"figure": f"PROBE {m} small models (commit every model; informational)",
            "baseline_s": round(b["seconds"], 2), "zooql_s": round(z["seconds"], 2), "ratio": round(ratio, 3),
            "target": "- (informational)", "met": None,
            "peak_rss_mb": round(max(rss.values()), 1),
            "note": f"{z['probed']}/{m} probed; one pair (ZooQL then bare); overhead "
                    f"{(z['seconds'] - b['seconds']) / m * 1000:.1f} ms/model"}


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
    p.add_argument("--block", type=int, default=500, help="models per interleaved block")
    p.add_argument("--warm", type=int, default=64, help="models of the untimed warm-up PROBE (starts the pool)")
    p.add_argument("--workdir", default=None)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--phase", choices=("bare", "zooql"), default=None)
    p.add_argument("--no-results", dest="no_results", action="store_true")
    args = p.parse_args(argv)
    if args.phase:
        serve(args.phase, Path(args.workdir))
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
