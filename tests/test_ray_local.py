"""The executor settings without a Ray cluster: SET / connect / EXPLAIN, the message when
Ray is missing, and PROBE over many tiny models resuming after ``kill -9`` (local executor).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import zooql
from zooql.errors import BindError, ExecutionError, ZooQLError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def hub(tmp_path):
    h = zooql.connect(str(tmp_path / "hub"))
    yield h
    h.close()


def test_set_executor_and_explain(hub, tmp_path):
    from zooql.testing.zoo import build_zoo

    zoo = build_zoo(tmp_path / "zoo", n_models=3, n_probes=8)
    hub.execute(f"ADD MODELS FROM '{zoo['models_csv']}'")
    hub.execute(f"CREATE PROBE SET ps FROM '{zoo['probes']}'")
    assert "executor=" not in hub.explain("PROBE MODELS WITH ps")        # local: nothing printed
    res = hub.execute("SET executor = 'ray'")
    assert "this connection" in res.message
    hub.execute("SET ray_workers = 3")
    assert hub.explain("PROBE MODELS WITH ps").splitlines()[0].endswith("executor=ray workers=3")
    hub.execute("SET ray_workers = NULL")
    assert hub.explain("PROBE MODELS WITH ps").splitlines()[0].endswith("executor=ray workers=auto")
    with pytest.raises(BindError, match="setting executor is one of 'local', 'ray'"):
        hub.execute("SET executor = 'spark'")
    with pytest.raises(BindError, match="ray_workers"):
        hub.execute("SET ray_workers = 0")
    other = zooql.connect(str(tmp_path / "hub"))                          # a session setting
    assert "executor=" not in other.explain("PROBE MODELS WITH ps")
    other.close()
    via_api = zooql.connect(str(tmp_path / "hub"), executor="ray", ray_workers=2)
    assert via_api.explain("PROBE MODELS WITH ps").splitlines()[0].endswith("executor=ray workers=2")
    via_api.close()
    with pytest.raises(ZooQLError, match="executor must be one of"):
        zooql.connect(str(tmp_path / "hub"), executor="dask")


def test_explain_imports_no_ray(tmp_path):
    code = textwrap.dedent(f"""
        import sys, zooql
        h = zooql.connect({str(tmp_path / 'h')!r}, executor='ray')
        h.execute("ADD MODEL 'hf:org/x' AS x")
        print(h.explain("PROBE MODELS WITH builtin"))
        assert 'ray' not in sys.modules, 'EXPLAIN imported ray'
        assert 'torch' not in sys.modules, 'EXPLAIN imported torch'
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 0, out.stderr[-2000:]


def test_missing_ray_says_what_to_install(monkeypatch):
    from zooql.runtime import ray_executor as RE

    monkeypatch.setitem(sys.modules, "ray", None)   # import ray -> ImportError
    with pytest.raises(ExecutionError, match=r"pip install 'zooql\[ray\]'"):
        RE.import_ray()


def test_local_executor_runs_in_order_and_reports_failures():
    from zooql.runtime.executors import Job, LocalExecutor

    class FakeRuntime:
        device = "cpu"

    ex = LocalExecutor(FakeRuntime())
    jobs = [Job(i, {"name": f"m{i}"}, fn="os:system") for i in range(3)]
    results = list(ex.map(jobs))
    assert [r.key for r in results] == [0, 1, 2]
    assert all("not a zooql 'module:function'" in r.error for r in results)   # only ZooQL's own functions
    with pytest.raises(ExecutionError, match="not a zooql"):
        results[0].unwrap()
    shared = ex.share(np.arange(10), key="k")
    assert shared.key == "k" and shared.value.tolist() == list(range(10))


# ---- PROBE over many models: kill -9, then resume ------------------------------------------------

_CHILD = """
import sys, zooql
hub = zooql.connect(sys.argv[1])
hub.execute("SET probe_commit_interval = 0.2")
def progress(label, done, total):
    if label == "probe":
        with open(sys.argv[2], "w") as f:
            f.write(str(done))
hub.execute("PROBE MODELS WITH ps", progress=progress)
"""


def _catalog(hub):
    with hub.store.read() as con:
        runs = con.execute("SELECT count(*) FROM probe_runs").fetchone()[0]
        cols = con.execute("SELECT count(*) FROM descriptor_columns").fetchone()[0]
    return runs, cols


def test_probe_resumes_after_kill_9(tmp_path):
    pytest.importorskip("torch")
    from zooql.testing.zoo import build_zoo

    n = 200
    zoo = build_zoo(tmp_path / "zoo", n_models=n, n_probes=24)
    hub_path = str(tmp_path / "hub")
    h = zooql.connect(hub_path)
    h.execute(f"ADD MODELS FROM '{zoo['models_csv']}'")
    h.execute(f"CREATE PROBE SET ps FROM '{zoo['probes']}'")
    h.close()
    marker = tmp_path / "done.txt"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, hub_path, str(marker)], cwd=ROOT,
                             env=dict(os.environ, PYTHONPATH=str(ROOT)), stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and child.poll() is None:
        text = marker.read_text().strip() if marker.exists() else ""
        if text.isdigit() and int(text) >= 60:
            break
        time.sleep(0.05)
    assert child.poll() is None, f"PROBE ended before it could be killed: {child.stderr.read()[-2000:]}"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    h = zooql.connect(hub_path)
    committed, cols = _catalog(h)
    assert 0 < committed < n and cols == committed * 4
    res = h.execute("PROBE MODELS WITH ps")
    status = [r[2] for r in res.rows]
    assert status.count("already probed") == committed             # nothing finished is redone
    assert status.count("probed") == n - committed
    runs, cols = _catalog(h)
    assert runs == n and cols == 4 * n
    # orphan columns of the killed run are gone; the descriptors are those of the models
    from zooql.methods.probelog.kernels import zscore_columns
    from zooql.runtime.models import ModelRuntime

    with h.store.read() as con:
        d = con.execute("SELECT dir FROM probe_sets WHERE name = 'ps'").fetchone()[0]
        picks = con.execute("SELECT m.name, m.source, r.first_col FROM probe_runs r JOIN models m ON m.id = r.model_id "
                            "ORDER BY m.name").fetchall()
    from zooql.methods.probelog.descriptors import DescriptorMatrix

    dm = DescriptorMatrix.open(os.path.join(hub_path, d, "descriptors"), "r")
    assert dm.n_columns == 4 * n
    probes = np.load(zoo["probes"])
    rt = ModelRuntime()
    for name, source, first in picks[::37]:
        loaded = rt.load(name, source, None, {"input_size": 8, "channels": 1, "mean": [0.5], "std": [0.5]})
        want = zscore_columns(rt.run(loaded, probes))
        got = np.asarray(dm.columns(np.arange(first, first + 4)), dtype=np.float32)
        np.testing.assert_allclose(got, want, atol=2e-2)
    h.close()


# ---- model files by value (checkpoint bytes in the object store) -------------------------------

def test_worker_given_bytes_builds_the_same_model(tmp_path):
    torch = pytest.importorskip("torch")
    from zooql.runtime.jobs import materialize, read_files, record_files, unreadable_files
    from zooql.runtime.models import ModelRuntime
    from zooql.testing.zoo import build_zoo

    zoo = build_zoo(tmp_path / "zoo", n_models=1, n_probes=16)
    src = tmp_path / "zoo" / "m00.pt"
    module = torch.jit.load(str(src))
    sd = {k: v * 2 for k, v in module.state_dict().items()}    # a checkpoint the model would not have
    torch.save(sd, str(tmp_path / "ck.pt"))
    opts = {"input_size": 8, "channels": 1, "mean": [0.5], "std": [0.5]}
    record = {"name": "m00", "source": f"torchscript:{src}", "checkpoint": str(tmp_path / "ck.pt"), "options": opts}
    probes = np.load(zoo["probes"])
    rt = ModelRuntime()
    want = rt.run(rt.load("m00", record["source"], record["checkpoint"], opts), probes)
    plain = rt.run(rt.load("plain", record["source"], None, opts), probes)
    assert np.abs(want - plain).max() > 0.1                       # the checkpoint changes the model

    blobs = read_files(record)                                     # the driver: bytes of both files
    assert sorted(blobs) == ["checkpoint", "source"] and unreadable_files(record) == []
    os.rename(src, tmp_path / "elsewhere.pt")                      # a worker that cannot see the paths
    os.rename(tmp_path / "ck.pt", tmp_path / "elsewhere-ck.pt")
    assert sorted(unreadable_files(record)) == ["checkpoint", "source"]
    local = materialize(record, blobs, str(tmp_path / "worker"))
    again = materialize(record, blobs, str(tmp_path / "worker"))   # once per content
    assert local == again and sorted(os.listdir(tmp_path / "worker")) == sorted(
        os.path.basename(p) for p in record_files(local).values())
    assert local["checkpoint"].endswith("-ck.pt") and local["source"].endswith("-m00.pt")
    rt2 = ModelRuntime()
    got = rt2.run(rt2.load("m00", local["source"], local["checkpoint"], opts), probes)
    np.testing.assert_array_equal(got, want)                       # the same model, bit for bit


def test_ray_ship_files_setting(hub):
    with pytest.raises(BindError, match="ray_ship_files is one of 'auto', 'always', 'never'"):
        hub.execute("SET ray_ship_files = 'sometimes'")
    hub.execute("SET ray_ship_files = 'always'")
    from zooql.runtime.executors import executor_config

    assert executor_config(lambda k, d=None: hub.session.get(k, d))["ship"] == "always"


# ---- ADD MODELS' inspection pool through the executor interface ----------------------------------

class _ReversedExecutor:
    """An executor whose results arrive in reverse completion order (like a cluster's)."""

    name = "fake"
    workers = 2

    def __init__(self):
        self.closed = False
        self.submitted = 0

    def map(self, jobs, progress=None):
        from zooql.runtime.jobs import JobResult, call_job

        jobs = list(jobs)
        self.submitted = len(jobs)
        try:
            for job in reversed(jobs):
                value, error, seconds = call_job(None, job.fn, job.model, job.args)
                yield JobResult(job.key, value, error and error[0], seconds)
        finally:
            self.closed = True


def test_inspection_through_an_executor_reports_in_input_order(tmp_path):
    pytest.importorskip("torch")
    from zooql.runtime.inspect_pool import _inspect, inspect_on
    from zooql.testing.zoo import build_zoo

    zoo = build_zoo(tmp_path / "zoo", n_models=4, n_probes=8)
    opts = {"input_size": 8, "channels": 1, "mean": [0.5], "std": [0.5]}
    jobs = [{"source": f"torchscript:{tmp_path / 'zoo' / n}.pt", "checkpoint": None, "labels": None,
             "options": opts, "trust_code": False} for n in zoo["names"]]
    jobs.insert(2, dict(jobs[0], source=f"torchscript:{tmp_path / 'missing.pt'}"))
    seen = []
    ex = _ReversedExecutor()
    inspect_on(ex, jobs, lambda i, info, err: seen.append((i, info, err)))
    assert [s[0] for s in seen] == [0, 1, 2, 3, 4] and ex.closed
    assert seen[2][1] is None and isinstance(seen[2][2], ExecutionError) and "missing.pt" in str(seen[2][2])
    for i, info, err in seen:                                    # the same record as the local pool's
        if i != 2:
            assert err is None and info == _inspect(jobs[i])[1]

    def stop(i, info, err):   # a failed model stops the statement: pending jobs are dropped
        if err is not None:
            raise err
    ex = _ReversedExecutor()
    with pytest.raises(ExecutionError, match="missing.pt"):
        inspect_on(ex, jobs, stop)
    assert ex.closed


def test_add_models_explain_shows_the_executor(tmp_path):
    from zooql.testing.zoo import build_zoo

    pytest.importorskip("torch")
    zoo = build_zoo(tmp_path / "zoo", n_models=2, n_probes=8)
    h = zooql.connect(str(tmp_path / "hub"))
    assert "executor=" not in h.explain(f"ADD MODELS FROM '{zoo['models_csv']}'")
    h.execute("SET executor = 'ray'")
    h.execute("SET ray_workers = 3")
    line = [x for x in h.explain(f"ADD MODELS FROM '{zoo['models_csv']}'").splitlines() if "InspectModels" in x][0]
    assert line.endswith("executor=ray workers=3")
    assert "executor=" not in h.explain("ADD MODEL 'hf:org/x' AS x")      # nothing to instantiate
    h.close()
