"""The Ray executor (SET executor = 'ray') on a real Ray cluster, confined to loopback.

Every Ray test runs in ONE subprocess (one cluster shared by all checks: ``ray.init``
costs 15-20 s here) that this file starts inside a private network namespace of its own
(``unshare --net`` with only ``lo`` up, as root), so Ray cannot listen on or advertise a
routable address. Before any task runs, the subprocess asserts that every Ray node
reports 127.0.0.1. It sets ``RAY_USAGE_STATS_ENABLED=0``, uses a temp dir (and HOME) of
its own, disables the dashboard, and stops only the Ray processes it started, by pid.
The subprocess writes a JSON report; each test below checks one part of it.

Skipped (with the reason) only when ray cannot be imported or a network namespace cannot
be created (not root / no ``unshare``).
"""
from __future__ import annotations

import json
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from zooql.testing.faults import running

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.ray
N_MODELS = 40


def _skip_reason() -> str | None:
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        return "ray is not installed (pip install 'zooql[ray]')"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare / ip (util-linux, iproute2) are not available to create a private network namespace"
    probe = subprocess.run(["unshare", "--net", "sh", "-c", "ip link set lo up"], capture_output=True)
    if probe.returncode != 0:
        return f"cannot create a private network namespace (needs root): {probe.stderr.decode().strip()[:200]}"
    return None


@pytest.fixture(scope="module")
def report():
    why = _skip_reason()
    if why:
        pytest.skip(why)
    tmp = tempfile.mkdtemp(prefix="zqr", dir="/tmp")   # short: Ray's socket paths have a length limit
    out = os.path.join(tmp, "report.json")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_USAGE_STATS_ENABLED="0", HOME=tmp, PYTHONPATH=str(ROOT), ZOOQL_RAY_TEST_TMP=tmp)
    cmd = ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
           sys.executable, str(Path(__file__).resolve()), out]
    proc = subprocess.Popen(cmd, env=env, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        try:
            stdout, stderr = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:   # stop the run's own session (the Ray processes it started)
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
        if not os.path.exists(out):
            pytest.fail(f"the namespaced Ray run wrote no report (rc={proc.returncode}):\n"
                        f"{stdout[-3000:]}\n{stderr[-6000:]}")
        with open(out) as f:
            rep = json.load(f)
        rep["_log"] = stderr[-4000:]
        yield rep
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _part(report, name):
    part = report.get(name)
    assert part is not None, f"the Ray run did not reach {name!r}: {report.get('error')}\n{report.get('_log', '')}"
    assert "error" not in part, part["error"]
    return part


def test_every_node_is_loopback(report):
    part = _part(report, "cluster")
    assert part["ips"] and set(part["ips"]) == {"127.0.0.1"}
    assert part["usage_stats"] == "0" and part["dashboard"] is None
    assert part["temp_dir"].startswith(os.environ.get("TMPDIR", "/tmp"))


def test_probe_on_ray_equals_local(report):
    part = _part(report, "probe")
    assert part["n_probed"] == N_MODELS and part["statuses"] == ["probed"]
    assert part["max_abs_diff"] == 0.0          # identical descriptors, model by model
    assert part["explain"].endswith("executor=ray workers=2")
    assert len(set(part["worker_pids"])) == 2 and part["devices"] == ["cpu"]
    # ADD MODELS' inspection pool ran on the actors and recorded what the local pool records
    assert part["inspected_equal"] and part["n_models"] == N_MODELS
    assert part["add_explain"] and part["add_explain"][0].endswith("executor=ray workers=2")


def test_sharded_find_on_ray_equals_local_exact(report):
    part = _part(report, "find_shards")
    assert part["same"] == [True] * part["n_queries"] and part["n_queries"] >= 3
    assert part["explain"].endswith("executor=ray shards=4 workers=2")
    assert "exact scan over 4 shards on the ray executor (2 workers)" in part["message"]
    assert len(part["pieces_per_worker"]) == 2 and min(part["pieces_per_worker"]) >= 2   # 2 shards each, kept
    assert part["loads_again"] == 0                             # the second query loaded nothing
    assert part["auto_shards"] >= 2 and part["auto_same"]       # find_shard_mb below the store: automatic
    assert part["dropped_excluded"] and part["after_drop_same"]


def test_checkpoint_bytes_through_the_object_store(report):
    part = _part(report, "ship")
    assert part["n_probed"] == 10 and part["max_abs_diff"] == 0.0
    assert part["shipped_files"] >= 10                 # the workers built the models from shipped copies
    assert all("zooql-model-files" in p for p in part["sources_used"])


def test_killed_worker_is_retried(report):
    part = _part(report, "kill")
    assert part["killed_pid"] not in part["pids_after"]      # the actor was restarted: a new process
    assert part["n_probed"] == N_MODELS and part["failed"] == []
    assert part["max_abs_diff"] == 0.0


def test_cancel_then_rerun_resumes(report):
    part = _part(report, "cancel")
    assert part["cancelled"] and 0 < part["committed"] < N_MODELS
    assert part["rerun_already"] == part["committed"]          # committed models are not redone
    assert part["rerun_probed"] == N_MODELS - part["committed"]
    assert part["max_abs_diff"] == 0.0


def test_discover_on_ray_equals_local(report):
    part = _part(report, "discover")
    assert part["ray_rows"] == part["local_rows"] and part["ray_rows"][0][0] == "acc10"
    assert part["new_evaluations"] > 0


def test_second_node_takes_part(report):
    part = _part(report, "second_node")
    assert part["alive_nodes"] == 2 and set(part["ips"]) == {"127.0.0.1"}
    assert part["models_on_second_node"] > 0 and part["max_abs_diff"] == 0.0
    assert part["node_stopped"]


def test_only_own_processes_stopped(report):
    part = _part(report, "shutdown")
    assert part["started_pids"] and part["left_running"] == []


# ==== the namespaced run =======================================================================

def _descriptors(hub, ps: str) -> dict[str, np.ndarray]:
    """Descriptor columns of each probed model (by name), independent of column order."""
    from zooql.methods.probelog.descriptors import DescriptorMatrix

    root = hub.path
    with hub.store.read() as con:
        d = con.execute("SELECT dir FROM probe_sets WHERE name = ?", [ps]).fetchone()[0]
        runs = con.execute("SELECT m.name, r.first_col, r.n_cols FROM probe_runs r JOIN models m ON m.id = r.model_id "
                           "JOIN probe_sets p ON p.id = r.probe_set_id WHERE p.name = ?", [ps]).fetchall()
    dm = DescriptorMatrix.open(os.path.join(root, d, "descriptors"), "r")
    return {name: np.asarray(dm.columns(np.arange(a, a + n))).astype(np.float32) for name, a, n in runs}


def _diff(a: dict, b: dict) -> float:
    assert sorted(a) == sorted(b), (sorted(a), sorted(b))
    return float(max(np.abs(a[k] - b[k]).max() for k in a))


def _hub(tmp, name, zoo, executor="local", explain_add=None):
    import zooql

    h = zooql.connect(os.path.join(tmp, name), executor=executor, ray_workers=2 if executor == "ray" else None)
    if explain_add is not None:
        explain_add.append(h.explain(f"ADD MODELS FROM '{zoo['models_csv']}'"))
    h.execute(f"ADD MODELS FROM '{zoo['models_csv']}'")
    h.execute(f"CREATE PROBE SET ps FROM '{zoo['probes']}'")
    return h


def _cluster(ray, tmp):
    ray.init(num_cpus=3, include_dashboard=False, _temp_dir=os.path.join(tmp, "ray"),
             _node_ip_address="127.0.0.1", log_to_driver=False)
    node = ray._private.worker._global_node
    ips = [n["NodeManagerAddress"] for n in ray.nodes()]
    assert set(ips) == {"127.0.0.1"}, f"a Ray node advertises a non-loopback address: {ips}"
    pids = [p.process.pid for procs in node.all_processes.values() for p in procs]
    return {"ips": ips, "usage_stats": os.environ.get("RAY_USAGE_STATS_ENABLED"),
            "dashboard": getattr(node, "webui_url", None) or None, "temp_dir": node.get_temp_dir_path(),
            "gcs": node.gcs_address, "pids": pids}


def _executor():
    from zooql.runtime.ray_executor import _CACHE

    return list(_CACHE.values())[-1]


def _catalog_models(h):
    return h.execute("SELECT name, source, params, num_logits, input_size FROM models ORDER BY name").rows


def _probe_part(tmp, zoo, ref, local):
    plans = []
    h = _hub(tmp, "hub_ray", zoo, "ray", plans)      # ADD MODELS inspected on the actors
    add_explain = plans[0]
    explain = h.explain("PROBE MODELS WITH ps")
    res = h.execute("PROBE MODELS WITH ps")
    info = _executor().worker_info()
    return {"n_probed": len(res.rows), "statuses": sorted({r[2] for r in res.rows}),
            "inspected_equal": _catalog_models(h) == _catalog_models(local), "n_models": len(_catalog_models(h)),
            "add_explain": [x for x in add_explain.splitlines() if "InspectModels" in x],
            "max_abs_diff": _diff(_descriptors(h, "ps"), ref), "explain": explain.splitlines()[0],
            "worker_pids": [i["pid"] for i in info], "devices": sorted({i["device"] for i in info})}


def _find_shards_part(local):
    """FIND on the locally probed hub: local exact scan vs shards held by the Ray actors."""
    from zooql.runtime.jobs import Job
    from zooql.runtime.shards import held_info

    queries = ["FIND LOGITS LIKE m00.logit[1] WITH PROBES ps TOP 40",
               "FIND LOGITS LIKE m07.logit[3] WITH PROBES ps TOP 9 WHERE name > 'm10'",
               "FIND LOGITS LIKE m03.logit[0] WITH PROBES ps TOP 15 OPTIONS (method = 'full')"]
    want = [local.execute(q).rows for q in queries]
    local.execute("SET executor = 'ray'")
    local.execute("SET ray_workers = 2")
    local.execute("SET find_shards = 4")
    explain = local.explain(queries[0]).splitlines()[0]
    got = [local.execute(q) for q in queries]
    ex = _executor()

    def held():
        return {r.value["pid"]: r.value for r in ex.map(Job(i, {"name": "held"}, fn="zooql.runtime.shards:held_info",
                                                            route=i) for i in range(ex.workers))}
    before = held()
    local.execute(queries[0])
    after = held()
    local.execute("SET find_shards = NULL")
    local.execute("SET find_shard_mb = 0.002")      # the store (12.8 KB) exceeds it: sharded automatically
    auto = local.execute(queries[0])
    auto_shards = int(auto.message.split("exact scan over ")[1].split(" ")[0])
    drop = next(r[1] for r in want[0] if r[1] != "m00")
    local.execute(f"DROP MODEL {drop}")
    sharded = local.execute(queries[0]).rows
    local.execute("SET executor = 'local'")
    unsharded = local.execute(queries[0]).rows
    local.execute("SET find_shard_mb = NULL")
    assert held_info()["pieces"] == 0               # the driver itself held nothing
    return {"n_queries": len(queries), "same": [g.rows == w for g, w in zip(got, want)], "explain": explain,
            "message": got[0].message, "pieces_per_worker": [v["pieces"] for v in before.values()],
            "loads_again": sum(after[p]["loads"] - before[p]["loads"] for p in before),
            "auto_shards": auto_shards, "auto_same": auto.rows == want[0],
            "dropped_excluded": drop not in {r[1] for r in sharded},
            "after_drop_same": sharded == unsharded}


def _ship_part(tmp, zoo, ref):
    """PROBE with SET ray_ship_files = 'always': the workers load the TorchScript files from
    bytes in the object store (copies in their temp dir), not from the paths."""
    import zooql

    h = zooql.connect(os.path.join(tmp, "hub_ray"), executor="ray", ray_workers=2)
    h.execute(f"CREATE PROBE SET ps2 FROM '{zoo['probes']}'")
    h.execute("SET ray_ship_files = 'always'")
    res = h.execute("PROBE MODELS WHERE name < 'm10' WITH ps2")
    info = _executor().worker_info()
    got = _descriptors(h, "ps2")
    shipped = [p for i in info for p in i["shipped_files"]]
    _executor().ship = "auto"
    return {"n_probed": sum(r[2] == "probed" for r in res.rows),
            "max_abs_diff": _diff(got, {k: ref[k] for k in got}), "shipped_files": len(shipped),
            "sources_used": shipped}


def _kill_part(tmp, zoo, ref):
    h = _hub(tmp, "hub_kill", zoo, "ray")
    ex = _executor()
    pids = [i["pid"] for i in ex.worker_info()]
    killed = []

    def progress(label, done, total):
        if label == "probe" and done == 6 and not killed:
            os.kill(pids[0], signal.SIGKILL)   # one worker process, by its pid, mid-run
            killed.append(pids[0])

    res = h.execute("PROBE MODELS WITH ps", progress=progress)
    after = [i["pid"] for i in ex.worker_info()]
    return {"killed_pid": killed[0] if killed else None, "pids_after": after, "n_probed": len(res.rows),
            "failed": [r[0] for r in res.rows if str(r[2]).startswith("failed")],
            "max_abs_diff": _diff(_descriptors(h, "ps"), ref)}


def _cancel_part(tmp, zoo, ref):
    from zooql.errors import Cancelled

    h = _hub(tmp, "hub_cancel", zoo, "ray")

    def progress(label, done, total):
        if label == "probe" and done == 15:
            raise Cancelled("cancelled by the test")

    cancelled = False
    try:
        h.execute("PROBE MODELS WITH ps", progress=progress)
    except Cancelled:
        cancelled = True
    committed = len(_descriptors(h, "ps"))
    res = h.execute("PROBE MODELS WITH ps")
    return {"cancelled": cancelled, "committed": committed,
            "rerun_already": sum(r[2] == "already probed" for r in res.rows),
            "rerun_probed": sum(r[2] == "probed" for r in res.rows),
            "max_abs_diff": _diff(_descriptors(h, "ps"), ref)}


def _discover_part(tmp):
    import zooql
    from zooql.testing.zoo import digits_task

    folder = Path(tmp) / "digits"
    folder.mkdir()
    paths = digits_task(folder, accuracies=range(2, 11))

    rows = {}
    for executor in ("local", "ray"):
        h = zooql.connect(os.path.join(tmp, f"hub_discover_{executor}"), executor=executor)
        for r in range(2, 11):
            path = paths[r]
            parent = "NULL" if r == 2 else "'acc2'"
            h.execute(f"ADD MODEL 'torchscript:{path}' AS acc{r} WITH (tree = 'digits', parent = {parent}, "
                      f"input_size = 8, channels = 1, mean = (0.5), std = (0.5))")
        h.execute(f"CREATE TASK digits FROM '{folder / 'digits.npz'}'")
        res = h.execute("DISCOVER BEST IN TREE digits ON digits BUDGET 200 SEED 7 OPTIONS (show_all = true)")
        rows[executor] = [[r[1], r[2], r[3]] for r in res.rows]
        new = int(res.message.split(" new evaluations")[0].rsplit("(", 1)[1])
    return {"local_rows": rows["local"], "ray_rows": rows["ray"], "new_evaluations": new}


def _second_node_part(ray, tmp, zoo, ref, gcs):
    from zooql.runtime import ray_executor as RE

    env = dict(os.environ)
    log = open(os.path.join(tmp, "node2.log"), "w")
    node = subprocess.Popen([shutil.which("ray") or os.path.join(os.path.dirname(sys.executable), "ray"), "start",
                             f"--address={gcs}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                             "--disable-usage-stats", "--block"], env=env, stdout=log, stderr=log,
                            start_new_session=True)
    try:
        deadline = time.time() + 90
        while sum(n["Alive"] for n in ray.nodes()) < 2 and time.time() < deadline:
            time.sleep(0.5)
        alive = [n for n in ray.nodes() if n["Alive"]]
        ips = [n["NodeManagerAddress"] for n in alive]
        assert set(ips) == {"127.0.0.1"}, f"the second node advertises {ips}"
        RE.release()   # new actors over both nodes: 4 CPUs, 4 workers of 1 CPU each
        h = _hub(tmp, "hub_two_nodes", zoo, "ray")
        h.execute("SET ray_workers = 4")
        head = ray.get_runtime_context().get_node_id()
        res = h.execute("PROBE MODELS WITH ps")
        info = _executor().worker_info()
        on_second = sum(len(i["cached"]) for i in info if i["node_id"] != head)
        out = {"alive_nodes": len(alive), "ips": ips, "models_on_second_node": on_second,
               "n_probed": len(res.rows), "max_abs_diff": _diff(_descriptors(h, "ps"), ref)}
        RE.release()
    finally:
        try:
            os.killpg(node.pid, signal.SIGTERM)   # the node this test started: its own process group
            node.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(node.pid, signal.SIGKILL)
            node.wait(timeout=10)
        log.close()
    out["node_stopped"] = node.poll() is not None
    return out


def _descendants(root: int) -> list[int]:
    """Every process whose parent chain leads to ``root`` (the processes this run started)."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, frontier = [], [root]
    while frontier:
        kids = [p for p, pp in parent.items() if pp in frontier]
        out += kids
        frontier = kids
    return sorted(out)


def _shutdown(ray, pids):
    from zooql.runtime import ray_executor as RE

    RE.release()
    pids = sorted(set(pids) | set(_descendants(os.getpid())))   # with Ray's agents and workers
    ray.shutdown()
    deadline = time.time() + 60
    while any(running(p) for p in pids) and time.time() < deadline:
        time.sleep(0.2)
    slow = [p for p in pids if running(p)]
    for p in slow:   # only the processes this run started, by pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    deadline = time.time() + 10
    while any(running(p) for p in slow) and time.time() < deadline:
        time.sleep(0.1)
    return {"started_pids": pids, "killed_after_shutdown": slow,
            "left_running": [p for p in pids if running(p)]}


def main(out_path: str) -> None:
    tmp = os.environ["ZOOQL_RAY_TEST_TMP"]
    report: dict = {}

    def save():
        with open(out_path + ".part", "w") as f:
            json.dump(report, f)
        os.replace(out_path + ".part", out_path)

    def step(name, fn, *a):
        t0 = time.time()
        try:
            report[name] = fn(*a)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            import traceback

            report[name] = {"error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-3000:]}"}
        report[name]["seconds"] = round(time.time() - t0, 1)
        save()

    from zooql.testing.zoo import build_zoo

    zoo = build_zoo(os.path.join(tmp, "zoo"), n_models=N_MODELS, n_probes=40)
    local = _hub(tmp, "hub_local", zoo)
    local.execute("PROBE MODELS WITH ps")
    ref = _descriptors(local, "ps")
    import ray

    cluster = _cluster(ray, tmp)
    report["cluster"] = cluster
    save()
    try:
        step("probe", _probe_part, tmp, zoo, ref, local)
        step("find_shards", _find_shards_part, local)
        step("ship", _ship_part, tmp, zoo, ref)
        step("kill", _kill_part, tmp, zoo, ref)
        step("cancel", _cancel_part, tmp, zoo, ref)
        step("discover", _discover_part, tmp)
        step("second_node", _second_node_part, ray, tmp, zoo, ref, cluster["gcs"])
    finally:
        report["shutdown"] = _shutdown(ray, cluster["pids"])
        save()


if __name__ == "__main__":
    main(sys.argv[1])
