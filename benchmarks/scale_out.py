"""Scale-out benchmark (issue 15): serial local executor vs Ray with 2 workers (warm actors).

One run, on this machine, inside a private network namespace the benchmark creates for
itself (``unshare --net``, loopback only; Ray never sees a routable address):

* PROBE of 40 and of 400 small TorchScript MLPs (16x16 grey -> ``--hidden`` -> 10), local
  vs ``SET executor = 'ray'`` with ``ray_workers = 2``; both with
  ``probe_commit_interval = 1`` (each model atomic, a commit at least every second);
* a DISCOVER round (uniform, every model on every query of a live 16x16 image task) over
  the 40 models, local vs Ray, and whether both return the same ranking;
* the Ray executor's per-model overhead: the wall time per job of 2,000 no-op jobs through
  the warm actors (target < 5 ms);
* the cold-start cost: ``ray.init`` and starting the two actors (torch imported in each);
* sharded FIND: the exact top-10 over a generated store of ``--find-logits`` (1M) float16
  descriptors of ``--find-probes`` (128) probes, the driver's memory-mapped exact scan
  (local) vs ``--find-shards`` (4) shards held by the 2 Ray actors (first query: the actors
  load their shards; then warm), and whether both return the same ids and distances.

Prints a table and appends it to benchmarks/RESULTS.md::

    python benchmarks/scale_out.py

Generated files go under ``$ZOOQL_CACHE/scale_out`` (default ``~/.cache/zooql/bench/scale_out``)
and are deleted afterwards.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def _generate(folder: Path, n: int, hidden: int) -> None:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    net = torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, hidden), torch.nn.ReLU(),
                                               torch.nn.Linear(hidden, 10)))
    lines = ["name,source,tree,input_size,channels,mean,std"]
    for i in range(n):
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.as_tensor(rng.normal(size=tuple(p.shape)) / np.sqrt(p.shape[-1]), dtype=torch.float32))
        net.save(str(folder / f"mlp{i:05d}.pt"))
        lines.append(f"mlp{i:05d},torchscript:{folder / f'mlp{i:05d}.pt'},mlps,16,1,0.5,0.5")
    (folder / "models.csv").write_text("\n".join(lines) + "\n")
    np.save(folder / "probes.npy", rng.integers(0, 256, (256, 16, 16), dtype=np.uint8))
    labels = np.arange(300) % 10
    np.savez(folder / "task.npz", images=rng.integers(0, 256, (300, 16, 16), dtype=np.uint8), labels=labels)


def _timed(hub, stmt):
    t0 = time.perf_counter()
    res = hub.execute(stmt)
    return time.perf_counter() - t0, res


def _probe_and_discover(hub, tag: str, out: dict) -> None:
    for n in (40, 400):
        s, res = _timed(hub, f"PROBE MODELS WHERE name < 'mlp{n:05d}' WITH ps_{tag}{n}")
        assert sum(r[2] == "probed" for r in res.rows) == n, res.message
        out[f"probe{n}"] = s
    s, res = _timed(hub, f"DISCOVER BEST IN TREE mlps ON task_{tag} BUDGET 12000 USING uniform SEED 3 "
                         f"WHERE name < 'mlp00040'")
    out["discover"] = s
    out["discover_best"] = [r[1] for r in res.rows]


class _Settings:
    """A statement context's settings (what FIND's sharded scan reads)."""

    def __init__(self, **kw):
        self.kw = kw

    def setting(self, key, default=None):
        return self.kw.get(key, default)


def _find_shards(args, folder: Path) -> dict:
    """Exact FIND scan on the driver vs over shards held by the Ray actors (same store)."""
    from hub_scale_desc import generate, queries
    from zooql.methods.probelog import find_shards as FS
    from zooql.methods.probelog import kernels as K

    dm = generate(str(folder / "find_store"), args.find_logits, args.find_probes)
    qs = queries(dm, 6)
    kp = K.default_k_probes(dm.n_probes)
    ctx = _Settings(executor="ray", ray_workers=2)
    local_s, ray_s, same = [], [], True
    t0 = time.perf_counter()
    (ids, d), info = FS.search(ctx, dm, qs[0], kp, 10, None, forced=args.find_shards, limit_mb=None)
    first = time.perf_counter() - t0
    for q in qs:
        t0 = time.perf_counter()
        want = K.asymmetric_search(q, dm, kp, 10)
        local_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        (ids, d), info = FS.search(ctx, dm, q, kp, 10, None, forced=args.find_shards, limit_mb=None)
        ray_s.append(time.perf_counter() - t0)
        same &= ids.tolist() == want[0].tolist() and d.tolist() == want[1].tolist()
    return {"local_s": float(np.median(local_s)), "ray_s": float(np.median(ray_s)), "first_s": first,
            "same": bool(same), "shards": info["shards"], "workers": info["workers"], "logits": dm.n_columns,
            "probes": dm.n_probes, "kp": kp, "mb": dm.nbytes() / 2 ** 20}


def namespaced(args) -> dict:
    """The measurements (run inside the private network namespace)."""
    import torch
    import zooql

    torch.set_num_threads(1)
    folder = Path(args.workdir)
    shutil.rmtree(folder, ignore_errors=True)
    _generate(folder / "zoo", 400, args.hidden)
    hub = zooql.connect(str(folder / "hub"))
    hub.execute(f"ADD MODELS FROM '{folder / 'zoo' / 'models.csv'}'")
    for tag in ("local", "ray"):
        for n in (40, 400):
            hub.execute(f"CREATE PROBE SET ps_{tag}{n} FROM '{folder / 'zoo' / 'probes.npy'}'")
        hub.execute(f"CREATE TASK task_{tag} FROM '{folder / 'zoo' / 'task.npz'}'")
    hub.execute("SET probe_commit_interval = 1.0")
    local: dict = {}
    _probe_and_discover(hub, "local", local)

    import ray
    from zooql.runtime import ray_executor as RE
    from zooql.runtime.jobs import Job

    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=os.path.join(args.tmp, "ray"),
             _node_ip_address="127.0.0.1", log_to_driver=False)
    ips = [n["NodeManagerAddress"] for n in ray.nodes()]
    assert set(ips) == {"127.0.0.1"}, f"a Ray node advertises {ips}"
    t_init = time.perf_counter() - t0
    t0 = time.perf_counter()
    ex = RE.ray_executor(address=None, workers=2, gpus=0.0, device="cpu", trust_code=False)
    t_actors = time.perf_counter() - t0
    n_noop = 2000
    t0 = time.perf_counter()
    got = list(ex.map(Job(i, {"name": f"m{i}"}, fn="zooql.runtime.jobs:noop", args={"echo": i})
                      for i in range(n_noop)))
    t_noop = time.perf_counter() - t0
    assert sorted(r.value for r in got) == list(range(n_noop))
    hub.execute("SET executor = 'ray'")
    hub.execute("SET ray_workers = 2")
    remote: dict = {}
    _probe_and_discover(hub, "ray", remote)
    find = _find_shards(args, folder) if args.find_logits else None
    RE.release()
    ray.shutdown()
    shutil.rmtree(folder, ignore_errors=True)
    return {"local": local, "ray": remote, "t_init": t_init, "t_actors": t_actors,
            "noop_ms": t_noop / n_noop * 1000, "ips": ips, "find": find}


def _rows(m: dict) -> list[dict]:
    out = []
    for key, label, n in (("probe40", "PROBE 40 small models", 40), ("probe400", "PROBE 400 small models", 400),
                          ("discover", "DISCOVER round (40 models x 300 queries)", 40)):
        lo, ra = m["local"][key], m["ray"][key]
        note = f"local {n / lo:.1f} models/s, ray {n / ra:.1f} models/s"
        if key == "discover":
            same = m["local"]["discover_best"] == m["ray"]["discover_best"]
            note += f"; same ranking as local: {same}"
        out.append({"figure": label, "local_s": round(lo, 2), "ray_2_workers_s": round(ra, 2),
                    "speedup": round(lo / ra, 2), "note": note})
    out.append({"figure": "Ray per-model overhead (2,000 no-op jobs, warm actors)", "local_s": None,
                "ray_2_workers_s": round(m["noop_ms"] * 2000 / 1000, 2), "speedup": None,
                "note": f"{m['noop_ms']:.2f} ms per model (target < 5 ms: "
                        f"{'met' if m['noop_ms'] < 5 else 'missed'})"})
    out.append({"figure": "Ray cold start", "local_s": None,
                "ray_2_workers_s": round(m["t_init"] + m["t_actors"], 1), "speedup": None,
                "note": f"ray.init {m['t_init']:.1f} s + 2 actors (torch imported) {m['t_actors']:.1f} s; "
                        f"nodes at {sorted(set(m['ips']))}"})
    f = m.get("find")
    if f:
        out.append({"figure": f"sharded FIND, exact top-10 over {f['logits']:,} logits x {f['probes']} probes "
                              f"({f['mb']:.0f} MB float16, topk_probes={f['kp']})",
                    "local_s": round(f["local_s"], 3), "ray_2_workers_s": round(f["ray_s"], 3),
                    "speedup": round(f["local_s"] / f["ray_s"], 2),
                    "note": f"{f['shards']} shards on {f['workers']} actors, warm (median of 6 queries); first query "
                            f"(actors load their shards) {f['first_s']:.2f} s; local = the driver's exact scan "
                            f"of the memory-mapped store (warm page cache); same ids and distances: {f['same']}"})
    return out


def _table(rs: list[dict]) -> str:
    keys = ["figure", "local_s", "ray_2_workers_s", "speedup", "note"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join("" if r[k] is None else str(r[k]) for k in keys) + " |" for r in rs]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--workdir", default=None)
    p.add_argument("--find-logits", dest="find_logits", type=int, default=1_000_000,
                   help="columns of the sharded-FIND store (0: skip that row)")
    p.add_argument("--find-probes", dest="find_probes", type=int, default=128)
    p.add_argument("--find-shards", dest="find_shards", type=int, default=4)
    p.add_argument("--inside", default=None, help=argparse.SUPPRESS)   # the namespaced run writes here
    p.add_argument("--tmp", default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-results", dest="no_results", action="store_true")
    args = p.parse_args(argv)
    if args.inside:
        with open(args.inside, "w") as f:
            json.dump(namespaced(args), f)
        return
    base = args.workdir or os.path.join(
        os.environ.get("ZOOQL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "zooql", "bench"), "scale_out")
    tmp = tempfile.mkdtemp(prefix="zqb", dir="/tmp")
    out = os.path.join(tmp, "m.json")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_USAGE_STATS_ENABLED="0", HOME=tmp, OMP_NUM_THREADS="1",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', sys.executable,
           str(Path(__file__).resolve()), "--inside", out, "--tmp", tmp, "--workdir", base, "--hidden", str(args.hidden),
           "--find-logits", str(args.find_logits), "--find-probes", str(args.find_probes),
           "--find-shards", str(args.find_shards)]
    try:
        proc = subprocess.run(cmd, env=env, cwd=str(ROOT), capture_output=True, text=True)
        if not os.path.exists(out):
            sys.exit(f"the namespaced run failed (rc={proc.returncode}; needs root for unshare --net):\n"
                     f"{proc.stderr[-4000:]}")
        with open(out) as f:
            m = json.load(f)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    table = _table(_rows(m))
    print(table)
    if not args.no_results:
        cmd_text = " ".join(["python benchmarks/scale_out.py"] + (argv if argv is not None else sys.argv[1:]))
        with open(ROOT / "benchmarks" / "RESULTS.md", "a") as f:
            f.write(f"\n\n## Scale-out on Ray (issue 15), {datetime.date.today()}\n\n"
                    f"Machine: shared 2-core CPU, loaded (another benchmark may run at the same time). "
                    f"Command: `{cmd_text}`. Ray runs inside a private network namespace (loopback only), "
                    f"2 workers of 1 CPU; local is serial with 1 torch thread; MLPs 256 -> {args.hidden} -> 10, "
                    f"256 probes; both with probe_commit_interval = 1.\n\n{table}\n")


if __name__ == "__main__":
    main()
