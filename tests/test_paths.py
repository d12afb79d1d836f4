"""Issue 18, defect 2: no statement writes a file outside the hub, whatever the names.

Every statement that writes a file from a user-given name (CREATE TASK copies its .npz,
CREATE PROBE SET stores its probes and descriptor matrix; CREATE SEMANTIC GRAPH only
writes catalog rows) runs with names holding ``..``, ``/``, ``\\``, NUL, very long and
reserved names; afterwards no file outside the hub folder has appeared or changed.
"""
import os

import numpy as np
import pytest

import zooql
from zooql.errors import BindError, ExecutionError, StorageError
from zooql.storage.names import file_stem, inside

NASTY = ["../../../escape", "../../escape2", "/tmp/abs_escape", "a/b/c", "..\\..\\win", "a\\b",
         "..", ".", "CON", "nul", "LPT1.txt", "catalog.duckdb", "hub.lock", "zooql_hub.json",
         "' OR 1=1 --", "ünï©ødé/../x", "x" * 250, "tasks/../../up"]
REFUSED = ["a\x00b", "x" * 300, "tab\there", "   "]


def _files(root, skip):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if os.path.abspath(dirpath).startswith(skip):
            dirnames[:] = []
            continue
        for f in filenames:
            p = os.path.join(dirpath, f)
            st = os.stat(p)
            out[p] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture
def env(tmp_path):
    base = tmp_path / "a" / "b"
    base.mkdir(parents=True)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    np.savez(inputs / "t.npz", images=rng.integers(0, 256, (6, 8, 8), dtype=np.uint8),
             labels=np.arange(6) % 2)
    np.save(inputs / "p.npy", rng.integers(0, 256, (4, 8, 8), dtype=np.uint8))
    hub = zooql.connect(base / "hub")
    yield hub, tmp_path, inputs
    hub.close()


def _quoted(name):
    return '"' + name.replace('"', '""') + '"'


def _statements(name, inputs):
    q = _quoted(name)
    return [f"CREATE TASK {q} FROM '{inputs}/t.npz'",
            f"CREATE PROBE SET {q} FROM '{inputs}/p.npy'"]


def test_no_write_outside_the_hub(env):
    hub, root, inputs = env
    hub_dir = os.path.abspath(hub.path)
    before = _files(root, hub_dir)
    for name in NASTY:
        for stmt in _statements(name, inputs):
            hub.execute(stmt)
    assert _files(root, hub_dir) == before
    with zooql.connect(hub.path) as again:  # the hub still opens; every name kept verbatim
        with again.store.read() as con:
            assert {r[0] for r in con.execute("SELECT name FROM tasks").fetchall()} == set(NASTY)
            assert {r[0] for r in con.execute("SELECT name FROM probe_sets").fetchall()} == set(NASTY)
    for dirpath, _, filenames in os.walk(hub_dir):
        for f in filenames:
            p = os.path.realpath(os.path.join(dirpath, f))
            assert p.startswith(hub_dir + os.sep)
            assert "\\" not in f and f not in ("CON", "nul", "..")
    stored = os.listdir(os.path.join(hub_dir, "tasks"))
    assert len(stored) == len(NASTY)
    assert all(len(f) < 80 for f in stored)


def test_names_are_kept_verbatim_in_the_catalog(env):
    hub, root, inputs = env
    hub.execute(f"CREATE TASK {_quoted('../../../escape_task')} FROM '{inputs}/t.npz'")
    store = hub.store
    with store.read() as con:
        name, path = con.execute("SELECT name, path FROM tasks").fetchone()
    assert name == "../../../escape_task"
    assert os.path.dirname(path) == os.path.join(hub.path, "tasks")
    assert not (root / "escape_task").exists() and not list(root.glob("escape_task*"))


@pytest.mark.parametrize("name", REFUSED)
def test_unusable_names_are_bind_errors(env, name):
    hub, root, inputs = env
    hub_dir = os.path.abspath(hub.path)
    before = _files(root, "/nonexistent")
    for stmt in _statements(name, inputs) + [f"ADD MODEL 'hf:x' AS {_quoted(name)}",
                                             f"CREATE SEMANTIC GRAPH {_quoted(name)} FROM '{inputs}'"]:
        with pytest.raises(BindError, match="name"):
            hub.execute(stmt)
    assert _files(root, "/nonexistent") == before
    assert not os.path.exists(os.path.join(hub_dir, "tasks"))


def test_file_stem_and_inside(tmp_path):
    assert file_stem("../../x") != file_stem("__x")          # same slug, different names
    assert "/" not in file_stem("a/b") and ".." not in file_stem("..")
    assert file_stem("CON").startswith("_CON")
    assert len(file_stem("y" * 250)) <= 51
    with pytest.raises(StorageError, match="outside the hub"):
        inside(tmp_path, tmp_path / ".." / "x")
    with pytest.raises(StorageError, match="outside the hub"):
        inside(tmp_path, "/etc/passwd")
    assert inside(tmp_path, "a/b") == (tmp_path / "a" / "b").resolve()


def test_hubstore_file_refuses_escapes(env):
    hub, root, _ = env
    with pytest.raises(StorageError, match="outside the hub"):
        hub.store.file("..", "..", "x.npy")
    with pytest.raises(StorageError, match="outside the hub"):
        hub.store.named_file("..", "x", ".npz")
    assert not (root / "a" / "x.npy").exists()


def test_nul_in_an_input_path_is_a_bind_error(env):
    """Found by benchmarks/fuzz.py: open() raised ValueError('embedded null byte')."""
    hub, root, inputs = env
    for stmt in ["ADD MODEL 'hf:x' AS x LABELS FROM 'a\x00b'", "CREATE TASK t FROM 'a\x00b.npz'",
                 "CREATE PROBE SET p FROM 'a\x00b.npy'", "IMPORT EVALUATIONS FROM 'a\x00b.csv'",
                 "ADD MODELS FROM 'm\x00.csv'", "ADD MODEL 'torchscript:a\x00b.pt' AS y"]:
        with pytest.raises(BindError, match="NUL character"):
            hub.execute(stmt, base_dir=str(inputs))
    (inputs / "m.csv").write_text("name,source,labels_file\nz,hf:z,\"l\x00.txt\"\n")
    with pytest.raises(ExecutionError, match="NUL character"):
        hub.execute("ADD MODELS FROM 'm.csv'", base_dir=str(inputs))
