"""PROBE on the local executor's worker processes (zooql/runtime/process_pool.py): the same
logits and descriptors as in this process, a failing model fails alone, the auto rule, and a
kill -9 of the statement's process mid-way ends the workers and a rerun resumes."""
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
from zooql.errors import BindError
from zooql.runtime import process_pool as P
from zooql.testing.faults import running

pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    from zooql.testing.zoo import build_zoo

    return build_zoo(tmp_path_factory.mktemp("poolzoo"), n_models=12)


def _hub(path, zoo, workers):
    h = zooql.connect(path)
    h.execute(f"ADD MODELS FROM '{zoo['models_csv']}'")
    h.execute(f"CREATE PROBE SET ps FROM '{zoo['probes']}'")
    h.execute(f"SET local_workers = {workers}")
    return h


def _raw(h):
    from zooql.methods.probelog.store import load_raw

    with h.store.read() as con:
        runs = con.execute("SELECT m.name, r.raw_file, r.raw_col, r.n_cols FROM probe_runs r "
                           "JOIN models m ON m.id = r.model_id ORDER BY m.name").fetchall()
    return {name: load_raw(str(h.path), f, c, n) for name, f, c, n in runs}


def _worker_pids() -> list[int]:
    pool = P._POOL["pool"]
    return [p.pid for p in (getattr(pool, "_processes", None) or {}).values()] if pool else []


def test_pool_gives_the_same_logits_descriptors_and_results_as_one_process(tmp_path, zoo):
    one = _hub(tmp_path / "one", zoo, 1)
    res1 = one.execute("PROBE WITH ps")
    two = _hub(tmp_path / "two", zoo, 2)
    res2 = two.execute("PROBE WITH ps")
    assert sorted(r[2] for r in res2.rows) == ["probed"] * 12 == sorted(r[2] for r in res1.rows)
    assert "on 2 worker processes" in res2.message and "worker processes" not in res1.message
    pids = _worker_pids()
    assert len(pids) == 2 and os.getpid() not in pids          # the jobs ran on two worker processes
    a, b = _raw(one), _raw(two)
    assert a.keys() == b.keys() and len(a) == 12
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    for q in ("FIND MODELS LIKE m00 TOP 11", "FIND LOGITS LIKE m03.logit[1] WITH PROBES ps TOP 20"):
        assert one.execute(q).rows == two.execute(q).rows
    assert two.execute("CHECK HUB").rows == []
    again = two.execute("PROBE WITH ps")                        # the pool is kept for the next statement
    assert {r[2] for r in again.rows} == {"already probed"} and _worker_pids() == pids


def test_a_model_that_fails_in_a_worker_fails_alone(tmp_path, zoo):
    import shutil

    src = Path(zoo["probes"]).parent
    copy = tmp_path / "zoo"
    shutil.copytree(src, copy)
    csv = (copy / "models.csv").read_text().replace(str(src), str(copy))
    (copy / "models.csv").write_text(csv)
    h = zooql.connect(tmp_path / "hub")
    h.execute(f"ADD MODELS FROM '{copy / 'models.csv'}'")
    h.execute(f"CREATE PROBE SET ps FROM '{copy / 'probes.npy'}'")
    (copy / "m05.pt").write_bytes(b"not a TorchScript file any more")
    h.execute("SET local_workers = 2")
    status = {r[0]: r[2] for r in h.execute("PROBE WITH ps").rows}
    assert status["m05"].startswith("failed:") and "not a loadable TorchScript file" in status["m05"]
    assert sorted(s for n, s in status.items() if n != "m05") == ["probed"] * 11
    assert h.execute("CHECK HUB").rows == []


def test_auto_rule_and_setting_checks(tmp_path):
    assert P.pool_workers(None, "cpu", None) == 1                   # a caller that says nothing: no pool
    assert P.pool_workers(None, "cpu", P.POOL_MIN_JOBS - 1) == 1    # few models: this process
    many = P.pool_workers(None, "cpu", 10_000)
    assert many == max(1, min(P.cores(), P.MAX_AUTO_WORKERS))
    assert P.pool_workers(0, "cuda", 10_000) == 1                    # a GPU: one process owns it
    assert P.pool_workers(3, "cpu", 2) == 2 and P.pool_workers(1, "cpu", 10_000) == 1
    h = zooql.connect(tmp_path / "hub")
    with pytest.raises(BindError, match="local_workers is a number of worker processes"):
        h.execute("SET local_workers = 300")
    h.execute("SET local_workers = 3")                               # a setting of this connection only
    with h.store.read() as con:
        assert con.execute("SELECT count(*) FROM settings WHERE key = 'local_workers'").fetchone()[0] == 0


CHILD = """
import json, zooql
from zooql.testing.zoo import slow_down
from zooql.runtime import process_pool as P
slow_down("forward", 0.6)
h = zooql.connect({hub!r})
h.execute("SET local_workers = 2")
h.execute("SET probe_commit_interval = 0.2")
h.execute("PROBE MODELS WHERE name < 'm02' WITH ps")       # starts the pool
print(json.dumps([p.pid for p in P._POOL["pool"]._processes.values()]), flush=True)
h.execute("PROBE WITH ps")
print("DONE", flush=True)
"""


def test_kill_9_mid_pool_probe_ends_the_workers_and_resumes(tmp_path, zoo):
    import json

    ref = _hub(tmp_path / "ref", zoo, 1)
    ref.execute("PROBE WITH ps")
    h = _hub(tmp_path / "hub", zoo, 1)
    h.close()
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CHILD.format(hub=str(tmp_path / "hub")))],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()
        assert line.startswith("["), child.stderr.read()[-2000:]
        workers = json.loads(line)
        assert len(workers) == 2 and all(running(p) for p in workers)
        reader = zooql.connect(tmp_path / "hub")
        deadline, committed = time.time() + 60, 0
        while time.time() < deadline:
            with reader.store.read() as con:
                committed = con.execute("SELECT count(*) FROM probe_runs").fetchone()[0]
            if committed >= 3:     # one group of the second PROBE (the first committed two)
                break
            time.sleep(0.05)
        assert child.poll() is None and 3 <= committed < 12, committed
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
    reader.close()
    deadline = time.time() + 20
    while any(running(p) for p in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(running(p) for p in workers), "the pool's workers outlived their killed owner"
    h = zooql.connect(tmp_path / "hub")
    assert [r for r in h.execute("CHECK HUB").rows if r[0] == "error"] == []
    kept = set(_raw(h))
    assert committed <= len(kept) < 12
    status = {r[0]: r[2] for r in h.execute("PROBE WITH ps").rows}
    assert {n for n, s in status.items() if s == "already probed"} == kept
    assert h.execute("CHECK HUB").rows == []
    a, b = _raw(ref), _raw(h)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_an_interrupt_keeps_the_finished_models_ends_the_workers_and_resumes(tmp_path, zoo):
    """Ctrl-C (here: the progress callback raising KeyboardInterrupt after 5 models) during a
    PROBE on the pool: the finished models are committed, the workers are ended (the models in
    flight are dropped, not left running), and the rerun probes only the rest."""
    h = _hub(tmp_path / "hub", zoo, 2)
    h.execute("PROBE MODELS WHERE name < 'm02' WITH ps")      # starts the pool
    before = _worker_pids()
    assert len(before) == 2

    def progress(task, done, total):
        if task == "probe" and done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        h.execute("PROBE WITH ps", progress=progress)
    deadline = time.time() + 10
    while any(running(p) for p in before) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(running(p) for p in before)
    kept = set(_raw(h))
    assert 2 + 5 <= len(kept) < 12                  # the two earlier models and the five finished ones
    status = {r[0]: r[2] for r in h.execute("PROBE WITH ps").rows}
    assert {n for n, s in status.items() if s == "already probed"} == kept
    assert sorted(s for n, s in status.items() if n not in kept) == ["probed"] * (12 - len(kept))
    assert h.execute("CHECK HUB").rows == []
    assert set(_worker_pids()).isdisjoint(before)    # a fresh pool for the rerun


NETS = """
import os
import torch

FLAG = {flag!r}


class Net(torch.nn.Module):
    def __init__(self, seed, crash=False):
        super().__init__()
        torch.manual_seed(seed)
        self.lin = torch.nn.Linear(64, 4)
        self.crash = crash
        self.zooql_preprocess = {{"input_size": 8, "channels": 1, "mean": [0.5], "std": [0.5]}}

    def forward(self, x):
        if self.crash and os.path.exists(FLAG):
            os._exit(3)          # the worker process dies (as if killed for memory)
        return self.lin(x.flatten(1))


def crash():
    return Net(99, crash=True)
""" + "".join(f"\n\ndef net{i}():\n    return Net({i})\n" for i in range(10))


def test_a_worker_that_dies_fails_its_models_the_rest_go_on_and_the_rerun_resumes(tmp_path, zoo):
    flag = tmp_path / "crash-now"
    (tmp_path / "nets.py").write_text(NETS.format(flag=str(flag)))
    h = zooql.connect(tmp_path / "hub")
    h.execute("SET trust_code = true")
    names = ["crash"] + [f"net{i}" for i in range(10)]
    for n in names:
        h.execute(f"ADD MODEL 'python:{tmp_path / 'nets.py'}:{n}' AS {n}")
    h.execute(f"CREATE PROBE SET ps FROM '{zoo['probes']}'")
    h.execute("SET local_workers = 2")
    flag.write_text("")
    status = {r[0]: r[2] for r in h.execute("PROBE WITH ps").rows}
    died = {n for n, s in status.items() if s.startswith("failed: the worker process running it died")}
    assert "crash" in died and len(died) <= 4                       # it and at most the jobs in flight with it
    assert {n for n, s in status.items() if s == "probed"} == set(names) - died   # the rest, on a fresh pool
    assert h.execute("CHECK HUB").rows == []
    flag.unlink()
    again = {r[0]: r[2] for r in h.execute("PROBE WITH ps").rows}
    assert {n for n, s in again.items() if s == "probed"} == died and len(again) == len(names)
