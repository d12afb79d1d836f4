"""PROBE's commit groups (zooql/methods/probelog/probe_commit.py): one raw logits file per
group, the catalog's pointers into it, CHECK HUB on it, DROP MODEL, the files an interrupted
PROBE leaves, and a kill -9 in the middle of a PROBE over many models, resumed."""
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

pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    from zooql.testing.zoo import build_zoo

    return build_zoo(tmp_path_factory.mktemp("groupzoo"), n_models=12)


def _hub(tmp_path, zoo, interval):
    h = zooql.connect(tmp_path / "hub")
    h.execute(f"ADD MODELS FROM '{zoo['models_csv']}'")
    h.execute(f"CREATE PROBE SET ps FROM '{zoo['probes']}'")
    if interval is not None:
        h.execute(f"SET probe_commit_interval = {interval}")
    return h


def _runs(h):
    with h.store.read() as con:
        return con.execute("SELECT m.name, r.first_col, r.n_cols, r.raw_file, r.raw_col FROM probe_runs r "
                           "JOIN models m ON m.id = r.model_id ORDER BY m.name").fetchall()


def _groups(h):
    with h.store.read() as con:
        return con.execute("SELECT file, n_cols, bytes, sha256 FROM probe_raw_files ORDER BY file").fetchall()


def _direct(zoo, name):
    """The model's logits on the probes, run here without ZooQL's PROBE."""
    import torch

    probes = np.load(zoo["probes"]).astype(np.float32) / 255.0
    x = torch.from_numpy((probes - 0.5) / 0.5)[:, None]
    with torch.inference_mode():
        return torch.jit.load(str(Path(zoo["probes"]).parent / f"{name}.pt"))(x).numpy()


def test_one_group_file_round_trip(tmp_path, zoo):
    from zooql.methods.probelog.descriptors import DescriptorMatrix
    from zooql.methods.probelog.kernels import zscore_columns
    from zooql.methods.probelog.store import load_raw
    from zooql.storage.hub import sha256_file

    h = _hub(tmp_path, zoo, 1000)        # everything finishes within one interval: one group
    assert [r[2] for r in h.execute("PROBE WITH ps").rows] == ["probed"] * 12
    runs, groups = _runs(h), _groups(h)
    assert len(groups) == 1 and {r[3] for r in runs} == {groups[0][0]}
    file, ncols, size, sha = groups[0]
    assert file.endswith(f"/raw/g{min(r[1] for r in runs):012d}.npy")
    assert ncols == sum(r[2] for r in runs) and sorted(r[4] for r in runs) == [4 * i for i in range(12)]
    path = os.path.join(h.path, file)
    assert os.path.getsize(path) == size and sha256_file(path) == sha
    with h.store.read() as con:
        ps_dir = con.execute("SELECT dir FROM probe_sets").fetchone()[0]
    dm = DescriptorMatrix.open(os.path.join(h.path, ps_dir, "descriptors"), "r")
    for name, first, n, raw_file, raw_col in runs:
        raw = load_raw(str(h.path), raw_file, raw_col, n)
        np.testing.assert_allclose(raw, _direct(zoo, name), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(dm.columns(np.arange(first, first + n)), zscore_columns(raw), atol=2e-3)
    assert h.execute("CHECK HUB").rows == []
    # the runs survive a reconnect and FIND reads them
    h.close()
    h = zooql.connect(tmp_path / "hub")
    assert h.execute("FIND MODELS LIKE m00 TOP 3").rows and h.execute("PROBE WITH ps").rows[0][2] == "already probed"


def test_interval_zero_commits_every_model_alone(tmp_path, zoo):
    h = _hub(tmp_path, zoo, 0)
    h.execute("PROBE MODELS WHERE name < 'm04' WITH ps")
    runs, groups = _runs(h), _groups(h)
    assert len(groups) == 4 and [r[4] for r in runs] == [0] * 4 and len({r[3] for r in runs}) == 4


def test_check_hub_finds_a_corrupt_or_missing_group_file(tmp_path, zoo):
    h = _hub(tmp_path, zoo, 1000)
    h.execute("PROBE WITH ps")
    (file, *_), = _groups(h)
    path = os.path.join(h.path, file)
    data = bytearray(Path(path).read_bytes())
    data[-7] ^= 0xFF                     # one flipped byte in the logits, same size
    Path(path).write_bytes(bytes(data))
    rows = h.execute("CHECK HUB").rows
    assert [(r[0], r[2]) for r in rows] == [("error", path)] and "fails its checksum" in rows[0][3]
    assert "PROBE them again" in rows[0][4]
    os.unlink(path)
    rows = h.execute("CHECK HUB").rows
    assert [(r[0], r[2]) for r in rows] == [("error", path)] and "is missing" in rows[0][3]


def test_drop_keeps_a_shared_group_file_until_its_last_model(tmp_path, zoo):
    h = _hub(tmp_path, zoo, 0)
    h.execute("SET probe_commit_interval = 1000")
    h.execute("PROBE MODELS WHERE name < 'm03' WITH ps")      # one group of three
    h.execute("PROBE MODELS WHERE name = 'm05' WITH ps")      # a group of one
    groups = {g[0] for g in _groups(h)}
    by_model = {r[0]: r[3] for r in _runs(h)}
    shared, alone = by_model["m00"], by_model["m05"]
    assert groups == {shared, alone}
    h.execute("DROP MODEL m05")
    assert not os.path.exists(os.path.join(h.path, alone)) and {g[0] for g in _groups(h)} == {shared}
    h.execute("DROP MODEL m00")
    h.execute("DROP MODEL m01")
    assert os.path.exists(os.path.join(h.path, shared))      # m02 still reads its columns from it
    assert h.execute("CHECK HUB").rows == []
    from zooql.methods.probelog.store import load_raw
    (_, _, n, raw_file, raw_col), = _runs(h)
    np.testing.assert_allclose(load_raw(str(h.path), raw_file, raw_col, n), _direct(zoo, "m02"), atol=1e-5)
    h.execute("DROP MODEL m02")
    assert not os.path.exists(os.path.join(h.path, shared)) and _groups(h) == []
    assert h.execute("CHECK HUB").rows == []


def test_per_model_raw_files_of_older_hubs_still_read(tmp_path, zoo):
    """Runs written before commit groups: a file of their own, raw_col NULL."""
    from zooql.methods.probelog.store import load_raw, save_npy

    h = _hub(tmp_path, zoo, 1000)
    h.execute("PROBE MODELS WHERE name < 'm02' WITH ps")
    (file, *_), = _groups(h)
    runs = _runs(h)
    with h.store.write() as con:      # rewrite the hub as the old layout had it
        for name, _, n, raw_file, raw_col in runs:
            rel = os.path.join(os.path.dirname(raw_file), f"m{name}.npy")
            save_npy(os.path.join(h.path, rel), load_raw(str(h.path), raw_file, raw_col, n))
            con.execute("UPDATE probe_runs SET raw_file = ?, raw_col = NULL WHERE model_id = "
                        "(SELECT id FROM models WHERE name = ?)", [rel, name])
        con.execute("DELETE FROM probe_raw_files")
    os.unlink(os.path.join(h.path, file))
    assert h.execute("CHECK HUB").rows == []
    for name, _, n, raw_file, raw_col in _runs(h):
        assert raw_col is None
        np.testing.assert_allclose(load_raw(str(h.path), raw_file, None, n), _direct(zoo, name), atol=1e-5)
    h.execute("PROBE WITH ps")        # new runs go to a group file beside the old files
    assert len(_groups(h)) == 1 and h.execute("CHECK HUB").rows == []
    h.execute("DROP MODEL m00")       # an old run's own file goes with it
    assert not os.path.exists(os.path.join(h.path, os.path.dirname(runs[0][3]), "mm00.npy"))


def test_files_of_an_uncommitted_group_are_warned_then_deleted(tmp_path, zoo):
    h = _hub(tmp_path, zoo, 1000)
    h.execute("PROBE MODELS WHERE name < 'm02' WITH ps")
    (file, *_), = _groups(h)
    stray = Path(h.path) / Path(file).parent / "g000000099999.npy"
    np.save(stray, np.zeros((40, 5), np.float32))
    rows = h.execute("CHECK HUB").rows
    assert [(r[0], r[2]) for r in rows] == [("warning", str(stray))]
    h.execute("PROBE MODELS WHERE name = 'm03' WITH ps")
    assert not stray.exists() and h.execute("CHECK HUB").rows == []


CHILD = """
import zooql
from zooql.testing.zoo import slow_down
slow_down("forward", 0.25)
h = zooql.connect({hub!r})
h.execute("SET probe_commit_interval = 0.3")
print("START", flush=True)
h.execute("PROBE WITH ps")
print("DONE", flush=True)
"""


def test_kill_9_mid_probe_loses_only_the_uncommitted_group_and_resumes(tmp_path, zoo):
    ref = _hub(tmp_path / "ref", zoo, None)
    ref.execute("PROBE WITH ps")
    expected = {r[0]: r for r in _runs(ref)}
    h = _hub(tmp_path, zoo, None)
    h.close()
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CHILD.format(hub=str(tmp_path / "hub")))],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "START", child.stderr.read()[-2000:]
        reader = zooql.connect(tmp_path / "hub")
        deadline = time.time() + 60
        committed = 0
        while time.time() < deadline:    # readers are never blocked while PROBE runs
            with reader.store.read() as con:
                committed = con.execute("SELECT count(*) FROM probe_runs").fetchone()[0]
            if committed >= 3:
                break
            time.sleep(0.05)
        assert child.poll() is None and 3 <= committed < 12, committed
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
    reader.close()
    h = zooql.connect(tmp_path / "hub")
    kept = {r[0] for r in _runs(h)}
    assert committed <= len(kept) < 12
    assert [r for r in h.execute("CHECK HUB").rows if r[0] == "error"] == []
    res = h.execute("PROBE WITH ps")
    status = {r[0]: r[2] for r in res.rows}
    assert {n for n, s in status.items() if s == "already probed"} == kept
    assert {n for n, s in status.items() if s == "probed"} == set(expected) - kept
    assert h.execute("CHECK HUB").rows == []        # no orphan or temporary file is left
    from zooql.methods.probelog.store import load_raw
    for name, _, n, raw_file, raw_col in _runs(h):
        e = expected[name]
        np.testing.assert_array_equal(load_raw(str(h.path), raw_file, raw_col, n),
                                      load_raw(str(ref.path), e[3], e[4], e[2]))
    assert h.execute("FIND MODELS LIKE m00 TOP 11").rows == ref.execute("FIND MODELS LIKE m00 TOP 11").rows


def test_a_failed_group_commit_keeps_the_earlier_groups_and_nothing_half(tmp_path, zoo, monkeypatch):
    from zooql.errors import StorageError
    from zooql.methods.probelog import probe_commit

    h = _hub(tmp_path, zoo, 0)          # a group per model
    real = probe_commit.GroupWriter._insert
    calls = []

    def failing(self, runs, masks, group_row):
        calls.append(runs[0][0])
        if len(calls) == 3:
            con = self.ctx.begin_write()   # half a group's rows, then the disk fails
            con.execute("INSERT INTO probe_raw_files VALUES (?, 'x', 1, 1, 'x')", [self.ps["id"]])
            raise StorageError("disk full")
        return real(self, runs, masks, group_row)

    monkeypatch.setattr(probe_commit.GroupWriter, "_insert", failing)
    with pytest.raises(StorageError, match="disk full"):
        h.execute("PROBE WITH ps")
    assert len(calls) == 3                 # nothing was committed after the failure
    assert [r[0] for r in _runs(h)] == ["m00", "m01"] and len(_groups(h)) == 2
    monkeypatch.setattr(probe_commit.GroupWriter, "_insert", real)
    res = h.execute("PROBE WITH ps")
    assert [r[2] for r in res.rows].count("already probed") == 2 and len(_runs(h)) == 12
    assert h.execute("CHECK HUB").rows == []


def test_a_model_whose_width_changed_since_add_models_fails_clearly(tmp_path):
    """PROBE loads models with their recorded width (no blank forward pass); a model file
    replaced after ADD MODELS by one with another width fails with a clear message on its
    first batch, and the other models are probed."""
    import torch

    from zooql.testing.zoo import build_zoo

    z = build_zoo(tmp_path / "zoo", n_models=3)
    h = zooql.connect(tmp_path / "hub")
    h.execute(f"ADD MODELS FROM '{z['models_csv']}'")
    h.execute(f"CREATE PROBE SET ps FROM '{z['probes']}'")
    width = h.execute("SHOW MODELS WHERE name = 'm00'").to_dicts()[0]["num_logits"]
    wider = torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, width + 2)))
    wider.save(str(tmp_path / "zoo" / "m00.pt"))
    status = {r[0]: r[2] for r in h.execute("PROBE MODELS WITH ps").rows}
    assert status["m00"].startswith("failed: ") and \
        f"returns {width + 2} logits per image but the catalog records {width}" in status["m00"], status["m00"]
    assert status["m01"] == status["m02"] == "probed"
    with h.store.read() as con:
        assert con.execute("SELECT count(*) FROM probe_runs").fetchone()[0] == 2
    # one that no longer takes the recorded input shape fails on its first batch with the hint
    # that the skipped blank forward pass used to give
    other = torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(100, width)))
    other.save(str(tmp_path / "zoo" / "m00.pt"))
    status = {r[0]: r[2] for r in h.execute("PROBE MODELS WHERE name = 'm00' WITH ps").rows}
    assert status["m00"].startswith("failed: ") and "failed on images 0.." in status["m00"] and \
        "if it expects others, register it again WITH input_size / channels" in status["m00"], status["m00"]
    h.close()


def test_groups_last_ten_commits_when_commits_are_slow():
    """A group lasts the interval, or COMMIT_SPAN times the last commit when that is longer
    (a loaded machine); interval 0 still commits every model alone."""
    from zooql.methods.probelog.probe_commit import COMMIT_SPAN, GroupWriter

    w = GroupWriter(None, {}, None, None, interval=1.0)
    assert w.due() == 1.0
    w.last_commit_seconds = 0.05
    assert w.due() == 1.0
    w.last_commit_seconds = 0.3
    assert w.due() == pytest.approx(COMMIT_SPAN * 0.3) and w.due() > 1.0
    submitted = []
    w._submit = lambda: submitted.append(len(w._pending))
    w._last = time.perf_counter() - 1.5     # past the interval, not past ten commits
    w.add(object())
    assert submitted == []
    w._last = time.perf_counter() - 3.5
    w.add(object())
    assert submitted == [2]
    z = GroupWriter(None, {}, None, None, interval=0)
    z.last_commit_seconds = 5.0
    z._submit = lambda: submitted.append("each")
    z.add(object())
    assert submitted[-1] == "each"
