"""Corrupted files never give a silent wrong answer (issue 18, defect 3): descriptor segments
and HNSW index files carry checksums in their manifests; a damaged file raises StorageError
naming it; CHECK HUB lists every problem with a fix and the CLI exits with status 3. And
defect 8: the catalog's own format version (meta) is checked."""
from __future__ import annotations

import json
import os
import shutil
import time

import duckdb
import numpy as np
import pytest

import zooql
from zooql.errors import StorageError

pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")

FIND = "FIND LOGITS LIKE m00.logit['x'] WITH PROBES ps TOP 3"


@pytest.fixture(scope="module")
def probed_template(tmp_path_factory):
    from zooql.testing.zoo import build_zoo

    folder = tmp_path_factory.mktemp("integrity")
    zoo = build_zoo(folder / "zoo", n_models=4)
    h = zooql.connect(folder / "hub")
    h.execute(f"ADD MODELS FROM '{zoo['models_csv']}'")
    h.execute(f"CREATE PROBE SET ps FROM '{zoo['probes']}'")
    h.execute("PROBE WITH ps")
    expected = h.execute(FIND).rows
    h.close()
    return folder / "hub", expected


@pytest.fixture
def probed(probed_template, tmp_path):
    src, expected = probed_template
    shutil.copytree(src, tmp_path / "hub")
    return tmp_path / "hub", expected


def _segment(hub):
    (d,) = [p for p in (hub / "probesets").iterdir()]
    desc = d / "descriptors"
    manifest = json.loads((desc / "MANIFEST.json").read_text())
    seg = manifest["segments"][-1]
    assert set(seg["files"]) == {"data", "ids"} and len(seg["files"]["data"]["sha256"]) == 64
    return desc / (seg["name"] + ".npy"), desc / (seg["name"] + ".ids.npy")


def _header_len(path):
    with open(path, "rb") as f:
        np.lib.format.read_magic(f)
        np.lib.format.read_array_header_1_0(f)
        return f.tell()


def _overwrite_data(path, fill):
    time.sleep(0.02)  # a later write than the segment's
    off = _header_len(path)
    n = os.path.getsize(path) - off
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(fill(n))


def _garbage(n):
    return np.random.default_rng(1).integers(0, 256, n, dtype=np.uint8).tobytes()


def _nans(n):
    return np.full(n // 2, np.nan, np.float16).tobytes()


def test_clean_hub_checks_clean(probed):
    hub, expected = probed
    h = zooql.connect(hub)
    res = h.execute("CHECK HUB")
    assert res.columns == ["severity", "object", "file", "problem", "fix"]
    assert res.rows == [] and "consistent" in res.message
    assert h.execute(FIND).rows == expected


@pytest.mark.parametrize("damage", ["garbage_behind_header", "nan_filled", "random_bytes", "zero_length",
                                    "truncated_ids"])
def test_damaged_segment_raises_storage_error_naming_the_file(probed, damage):
    hub, expected = probed
    h = zooql.connect(hub)
    assert h.execute(FIND).rows == expected      # the matrix is cached in this process now
    data, ids = _segment(hub)
    target = ids if damage == "truncated_ids" else data
    if damage == "garbage_behind_header":
        _overwrite_data(data, _garbage)
    elif damage == "nan_filled":
        _overwrite_data(data, _nans)
    elif damage == "random_bytes":
        data.write_bytes(_garbage(os.path.getsize(data)))
    elif damage == "zero_length":
        data.write_bytes(b"")
    else:
        ids.write_bytes(ids.read_bytes()[:-5])
    for hub_handle in (h, zooql.connect(hub)):   # the same process's cached matrix, and a fresh open
        with pytest.raises(StorageError, match=str(target)):
            hub_handle.execute(FIND)
    res = h.execute("CHECK HUB")
    errors = [r for r in res.rows if r[0] == "error"]
    assert len(errors) == 1 and str(target) in errors[0][3] and "PROBE" in errors[0][4], res.rows


def test_cli_check_hub_exit_status(probed, capsys):
    from zooql.repl.cli import EXIT_OK, EXIT_PROBLEMS, main

    hub, _ = probed
    assert main(["--hub", str(hub), "-c", "CHECK HUB"]) == EXIT_OK
    data, _ = _segment(hub)
    _overwrite_data(data, _nans)
    assert main(["--hub", str(hub), "-c", "CHECK HUB"]) == EXIT_PROBLEMS == 3
    out = capsys.readouterr().out
    assert "1 error(s)" in out


def test_damaged_hnsw_index(probed):
    from zooql.methods.probelog import store as S
    from zooql.methods.probelog.ann import HnswIndex

    hub, _ = probed
    h = zooql.connect(hub)
    with h.store.read() as con:
        ps = S.probe_set_row(con, "ps")
    files = S.ProbeSetFiles(h.store, ps)
    dm = S.open_matrix(files)
    HnswIndex(dm.n_probes).build_from_store(dm, num_threads=1).save(files.hnsw)
    assert h.execute("CHECK HUB").rows == []
    cur = json.loads(open(os.path.join(files.hnsw, "CURRENT.json")).read())
    index_file = os.path.join(files.hnsw, cur["index"])
    with open(index_file, "r+b") as f:
        f.seek(100)
        f.write(b"\xff" * 64)
    with pytest.raises(StorageError, match=f"{index_file} fails its checksum"):
        HnswIndex.load(files.hnsw)
    rows = h.execute("CHECK HUB").rows
    assert [r[0] for r in rows] == ["error"] and index_file in rows[0][3] and "rebuilds the index" in rows[0][4]


def test_damaged_reduced_index(probed):
    """CHECK HUB verifies the reduced index's folder (the postings file) like the HNSW one."""
    from zooql.methods.probelog import store as S
    from zooql.methods.probelog.postings import PostingsIndex

    hub, _ = probed
    h = zooql.connect(hub)
    with h.store.read() as con:
        ps = S.probe_set_row(con, "ps")
    files = S.ProbeSetFiles(h.store, ps)
    folder = files.index_dir("hnsw_reduced")
    dm = S.open_matrix(files)
    PostingsIndex(dm.n_probes).build_from_store(dm).save(folder)
    assert h.execute("CHECK HUB").rows == []
    cur = json.loads(open(os.path.join(folder, "CURRENT.json")).read())
    index_file = os.path.join(folder, cur["meta"])
    with open(index_file, "r+b") as f:
        f.seek(100)
        f.write(b"\xff" * 64)
    rows = h.execute("CHECK HUB").rows
    assert [r[0] for r in rows] == ["error"] and rows[0][2] == folder
    assert index_file in rows[0][3] and "checksum" in rows[0][3] and "rebuilds the index" in rows[0][4]


def test_interrupted_probe_leftovers_are_warnings_until_the_rerun(probed):
    hub, _ = probed
    h = zooql.connect(hub)
    (d,) = [p for p in (hub / "probesets").iterdir()]
    stray = d / "raw" / "m999.npy"
    np.save(stray, np.zeros((2, 2), np.float32))
    (d / "descriptors" / ".tmp-abc.npy").write_bytes(b"x")
    rows = h.execute("CHECK HUB").rows
    assert sorted((r[0], r[2]) for r in rows) == sorted([("warning", str(stray)),
                                                         ("warning", str(d / "descriptors" / ".tmp-abc.npy"))])


def test_catalog_meta_format_version_is_checked(tmp_path):
    path = tmp_path / "hub"
    zooql.connect(path).close()
    con = duckdb.connect(str(path / "catalog.duckdb"))
    con.execute("UPDATE meta SET value = '7' WHERE key = 'format_version'")
    con.close()
    with pytest.raises(StorageError, match=r"catalog .*catalog.duckdb has format version 7; this ZooQL reads "
                                           r"version 2; upgrade ZooQL to open it"):
        zooql.connect(path)


def test_format_1_hub_opens_and_is_upgraded_by_its_first_write(tmp_path):
    import json

    path = tmp_path / "hub"
    with zooql.connect(path) as h:
        h.execute("ADD MODEL 'hf:org/a' AS a")
    con = duckdb.connect(str(path / "catalog.duckdb"))
    con.execute("UPDATE meta SET value = '1' WHERE key = 'format_version'")
    con.close()
    (path / "zooql_hub.json").write_text(json.dumps({"format_version": 1}))
    with zooql.connect(path) as h:   # reads leave the old format as it is
        assert [r[0] for r in h.execute("SHOW MODELS").rows] == ["a"]
        assert not [r for r in h.execute("CHECK HUB").rows if r[0] == "error"]
        assert json.loads((path / "zooql_hub.json").read_text())["format_version"] == 1
        h.execute("ADD MODEL 'hf:org/b' AS b")
    assert json.loads((path / "zooql_hub.json").read_text())["format_version"] == 2
    con = duckdb.connect(str(path / "catalog.duckdb"), read_only=True)
    assert con.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()[0] == "2"
    con.close()
