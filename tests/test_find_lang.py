"""ProbeLog through the language: CREATE PROBE SET, PROBE, FIND (tiny TorchScript models)."""
import json
import os

import numpy as np
import pytest

import zooql
from zooql.errors import BindError

torch = pytest.importorskip("torch")

GREY = "WITH (input_size = 8, channels = 1, mean = (0.5), std = (0.5))"
RGB = "WITH (input_size = 8, channels = 3, mean = (0.5, 0.5, 0.5), std = (0.5, 0.5, 0.5))"
LABELS_A = ["w", "x", "y", "z"]
PERM = [2, 0, 3, 1]  # b's logit i is a's logit PERM[i]


def _save(module, path):
    torch.jit.script(module).save(str(path))
    return str(path)


def _linear(weight, bias, channels=1):
    lin = torch.nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        lin.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return torch.nn.Sequential(torch.nn.Flatten(), lin)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """TorchScript files: a; b = a with permuted logits; c random; l = brightness (+, -);
    teacher (labelled cat/dog/car/tree) and student = teacher permuted, unlabelled; rgb."""
    d = tmp_path_factory.mktemp("zoo")
    rng = np.random.default_rng(0)
    wa, ba = rng.normal(size=(4, 64)) / 8, rng.normal(size=4) / 10
    wt, bt = rng.normal(size=(4, 64)) / 8, rng.normal(size=4) / 10
    sp = [3, 1, 0, 2]
    files = {
        "a": _save(_linear(wa, ba), d / "a.pt"),
        "b": _save(_linear(wa[PERM], ba[PERM]), d / "b.pt"),
        "c": _save(_linear(rng.normal(size=(5, 64)) / 8, np.zeros(5)), d / "c.pt"),
        "l": _save(_linear(np.stack([np.full(64, 1 / 64), np.full(64, -1 / 64)]), np.zeros(2)), d / "l.pt"),
        "teacher": _save(_linear(wt, bt), d / "teacher.pt"),
        "student": _save(_linear(wt[sp], bt[sp]), d / "student.pt"),
        "rgb": _save(_linear(rng.normal(size=(3, 192)) / 8, np.zeros(3)), d / "rgb.pt"),
    }
    files["student_perm"] = sp
    np.save(d / "probes.npy", rng.integers(0, 256, (40, 8, 8), dtype=np.uint8))
    return d, files


def add(hub, files, name):
    src = files[name]
    if name == "a":
        return hub.execute(f"ADD MODEL 'torchscript:{src}' AS a LABELS ('w', 'x', 'y', 'z') {GREY}")
    if name == "b":
        labels = ", ".join(repr(LABELS_A[i]) for i in PERM)
        return hub.execute(f"ADD MODEL 'torchscript:{src}' AS b LABELS ({labels}) {GREY}")
    if name == "teacher":
        return hub.execute(f"ADD MODEL 'torchscript:{src}' AS teacher LABELS ('cat', 'dog', 'car', 'tree') {GREY}")
    if name == "rgb":
        return hub.execute(f"ADD MODEL 'torchscript:{src}' AS rgb {RGB}")
    return hub.execute(f"ADD MODEL 'torchscript:{src}' AS {name} WITH (input_size = 8, channels = 1, "
                       f"mean = (0.5), std = (0.5), tree = 'grp-{name}')")


@pytest.fixture
def abc(hub, zoo):
    d, files = zoo
    for n in ("a", "b", "c"):
        add(hub, files, n)
    hub.execute(f"CREATE PROBE SET ps FROM '{d}/probes.npy'")
    return hub


def plan(hub, q):
    return hub.explain(q)


# ---- CREATE PROBE SET -----------------------------------------------------------------------------------

def test_create_probe_set_npy_stores_images_order_and_hashes(hub, zoo, tmp_path):
    d, _ = zoo
    res = hub.execute(f"CREATE PROBE SET ps FROM '{d}/probes.npy' LIMIT 30 SEED 7")
    assert res.rows[0][:2] == ("ps", 30)
    src = np.load(d / "probes.npy")
    chosen = np.sort(np.random.default_rng(7).choice(40, 30, replace=False))
    with hub.store.read() as con:
        ps = con.execute("SELECT id, dir, n_probes, content_hash FROM probe_sets WHERE name = 'ps'").fetchone()
        names = [r[0] for r in con.execute("SELECT name FROM probes WHERE probe_set_id = ? ORDER BY idx",
                                           [ps[0]]).fetchall()]
        hashes = [r[0] for r in con.execute("SELECT sha256 FROM probes WHERE probe_set_id = ? ORDER BY idx",
                                            [ps[0]]).fetchall()]
    assert names == [str(i) for i in chosen]
    stored = np.load(os.path.join(hub.path, ps[1], "probes.npy"))
    np.testing.assert_array_equal(stored, src[chosen])  # the hub keeps its own copy: reproducible
    from zooql.methods.probelog.probesets import probe_hashes
    assert hashes == probe_hashes(src[chosen]) and len(ps[3]) == 64
    with pytest.raises(BindError, match="already exists"):
        hub.execute(f"CREATE PROBE SET ps FROM '{d}/probes.npy'")
    with pytest.raises(BindError, match="not found"):
        hub.execute(f"CREATE PROBE SET q FROM '{tmp_path}/missing.npy'")


def test_create_probe_set_folder_parquet_and_builtin(hub, tmp_path):
    from PIL import Image
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(1)
    blobs = []
    for i in range(6):
        arr = rng.integers(0, 256, (8, 8), dtype=np.uint8)
        Image.fromarray(arr).save(folder / ("sub" if i % 2 else "") / f"im{i}.png")
        blobs.append((folder / ("sub" if i % 2 else "") / f"im{i}.png").read_bytes())
    (folder / "notes.txt").write_text("not an image")
    hub.execute(f"CREATE PROBE SET f FROM '{folder}' LIMIT 4")
    with hub.store.read() as con:
        names = [r[0] for r in con.execute("SELECT p.name FROM probes p JOIN probe_sets s ON s.id = p.probe_set_id "
                                           "WHERE s.name = 'f' ORDER BY idx").fetchall()]
    assert names == ["im0.png", "im2.png", "im4.png", "sub/im1.png"]  # sorted paths, first 4
    pq.write_table(pa.table({"image": blobs, "caption": [f"picture {i}" for i in range(6)]}), tmp_path / "t.parquet")
    res = hub.execute(f"CREATE PROBE SET pq FROM '{tmp_path}/t.parquet'")
    assert res.rows[0][1] == 6 and res.rows[0][3] is True  # the caption column became captions
    res = hub.execute("CREATE PROBE SET builtin FROM 'builtin' LIMIT 12 SEED 0")
    assert res.rows[0][1:3] == (12, "[224, 224, 3]")
    assert "scikit-image" in res.message


# ---- PROBE: storage, persistence, interruption and resume -----------------------------------------------

def test_probe_stores_descriptors_and_permuted_model_matches(abc, zoo):
    hub = abc
    text = plan(hub, "PROBE WITH ps BATCH 16")
    assert "ProbeModels: probe_set=ps models=3 forward_passes=120 batch=16" in text
    res = hub.execute("PROBE WITH ps BATCH 16")
    assert [r[2] for r in res.rows] == ["probed"] * 3
    with hub.store.read() as con:
        ps_id, ps_dir = con.execute("SELECT id, dir FROM probe_sets WHERE name = 'ps'").fetchone()
        runs = con.execute("SELECT m.name, r.first_col, r.n_cols, r.raw_file, r.raw_col FROM probe_runs r JOIN models m "
                           "ON m.id = r.model_id ORDER BY m.name").fetchall()
        ncols = con.execute("SELECT count(*) FROM descriptor_columns WHERE probe_set_id = ?", [ps_id]).fetchone()[0]
    assert [(r[0], r[2]) for r in runs] == [("a", 4), ("b", 4), ("c", 5)] and ncols == 13
    from zooql.methods.probelog.kernels import zscore_columns
    from zooql.methods.probelog.descriptors import DescriptorMatrix
    from zooql.methods.probelog.store import load_raw
    raw_a = load_raw(str(hub.path), runs[0][3], runs[0][4], 4)
    dm = DescriptorMatrix.open(os.path.join(hub.path, ps_dir, "descriptors"), "r")
    np.testing.assert_allclose(dm.columns(np.arange(runs[0][1], runs[0][1] + 4)), zscore_columns(raw_a), atol=2e-3)
    # b = a with permuted logits: each labelled logit finds its twin at distance ~0
    for label in LABELS_A:
        r = hub.execute(f"FIND LOGITS LIKE a.logit['{label}'] TOP 3").to_dicts()
        assert r[0]["model"] == "b" and r[0]["label"] == label and r[0]["distance"] < 1e-3
        assert r[0]["score"] > 0.999 and all(x["model"] != "a" for x in r)  # own model excluded
    r = hub.execute("FIND LOGITS LIKE b.logit[0]").to_dicts()
    assert (r[0]["model"], r[0]["logit"]) == ("a", PERM[0]) and set(r[0]) >= {"rank", "source", "tree"}
    models = hub.execute("FIND MODELS LIKE a").to_dicts()
    assert [m["model"] for m in models] == ["b", "c"] and models[0]["distance"] < 1e-3
    assert hub.execute("FIND MODELS LIKE a.logit['x'] OPTIONS (method = 'full')").rows[0][1] == "b"
    assert "already_probed=3" in plan(hub, "PROBE WITH ps") and hub.execute("PROBE WITH ps").rows[0][2] == "already probed"
    assert "ps (40 probes" in dict(hub.execute("DESCRIBE MODEL a").rows)["probed_with"]


def test_persistence_across_reconnect(abc, tmp_path):
    abc.execute("PROBE WITH ps")
    before = abc.execute("FIND LOGITS LIKE a.logit['y'] TOP 5").rows
    abc.close()
    hub = zooql.connect(tmp_path / "hub")
    assert "ProbeModels" not in hub.explain("FIND LOGITS LIKE a.logit['y'] TOP 5")
    assert hub.execute("FIND LOGITS LIKE a.logit['y'] TOP 5").rows == before
    hub.close()


def test_probe_interrupted_keeps_finished_models_and_resumes(abc):
    hub = abc

    class Stop(Exception):
        pass

    seen = []

    def progress(label, done, total):
        seen.append(label)
        if label == "probe" and done == 1:  # after the first model has been committed
            raise Stop

    with pytest.raises(Stop):
        hub.execute("PROBE WITH ps", progress=progress)
    assert any(s.startswith("probing ") for s in seen)
    with hub.store.read() as con:
        done = con.execute("SELECT count(*) FROM probe_runs").fetchone()[0]
    assert done == 1
    assert "models=2 forward_passes=80 already_probed=1" in plan(hub, "PROBE WITH ps")
    res = hub.execute("PROBE WITH ps")
    assert sorted(r[2] for r in res.rows) == ["already probed", "probed", "probed"]
    assert hub.execute("FIND LOGITS LIKE a.logit['x'] TOP 1").rows[0][1:4] == ("b", 3, "x")


def test_on_demand_probing_in_find(abc):
    hub = abc
    text = plan(hub, "FIND LOGITS LIKE a.logit['z'] TOP 2")
    assert "ProbeModels: probe_set=ps models=3 forward_passes=120" in text and "on_demand=true" in text
    assert text.splitlines()[0].startswith("Search: method=asymmetric topk_probes=20 index=exact reason=")
    res = hub.execute("FIND LOGITS LIKE a.logit['z'] TOP 2")
    assert res.rows[0][1:4] == ("b", 2, "z") and "probed 3 models" in res.message
    assert "ProbeModels" not in plan(hub, "FIND LOGITS LIKE a.logit['z'] TOP 2")
    # a new model is probed on demand, alone
    hub.execute(f"ADD MODEL 'torchscript:{_src(hub, 'c')}' AS c2 WITH (input_size = 8, channels = 1, "
                f"mean = (0.5), std = (0.5))")
    assert "ProbeModels: probe_set=ps models=1 forward_passes=40" in plan(hub, "FIND LOGITS LIKE c.logit[0]")
    r = hub.execute("FIND LOGITS LIKE c.logit[0] TOP 1").rows[0]
    assert r[1:3] == ("c2", 0) and r[4] < 1e-3


def _src(hub, name):
    return hub.execute(f"DESCRIBE MODEL {name}").to_dicts()[1]["value"].split(":", 1)[1]


def test_hnsw_index_follows_probe_and_drop(abc):
    hub = abc
    res = hub.execute("FIND LOGITS LIKE a.logit['x'] TOP 3 OPTIONS (index = 'hnsw')")  # builds the index
    assert res.rows[0][1:4] == ("b", 3, "x") and "index=hnsw" in res.message
    hub.execute(f"ADD MODEL 'torchscript:{_src(hub, 'b')}' AS b2 LABELS ('y', 'w', 'z', 'x') {GREY}")
    hub.execute("PROBE WITH ps")  # adds b2's columns to the index
    res = hub.execute("FIND LOGITS LIKE a.logit['x'] TOP 2 OPTIONS (index = 'hnsw')")
    assert {r[1] for r in res.rows} == {"b", "b2"} and "not yet in the HNSW index" not in res.message
    hub.execute("DROP MODEL b")
    hub.execute("DROP MODEL b2")
    from zooql.methods.probelog import ops_find
    from zooql.methods.probelog import ops_probe
    with hub.store.read() as con:
        ps = ops_probe.probe_set_row(con, "ps")
    assert len(ops_find.load_index(ops_probe.ProbeSetFiles(hub.store, ps))) == 4 + 5  # a and c are left
    for opt in ("", " OPTIONS (index = 'hnsw')", " OPTIONS (method = 'full')"):
        rows = hub.execute(f"FIND LOGITS LIKE a.logit['x'] TOP 20{opt}").rows
        assert {r[1] for r in rows} == {"c"} and len(rows) == 5
    assert [r[1] for r in hub.execute("FIND MODELS LIKE a").rows] == ["c"]


def test_where_and_in_restrict_the_gallery(abc, zoo):
    hub = abc
    add(hub, zoo[1], "l")
    hub.execute("PROBE WITH ps")
    assert {r[1] for r in hub.execute("FIND LOGITS LIKE a.logit['x'] IN (c) TOP 20").rows} == {"c"}
    assert {r[1] for r in hub.execute("FIND LOGITS LIKE a.logit['x'] IN hub TOP 20").rows} == {"b", "c", "l"}
    rows = hub.execute("FIND LOGITS LIKE a.logit['x'] WHERE tree LIKE 'grp-%' TOP 20").rows
    assert {r[1] for r in rows} == {"c", "l"} and rows[0][7] in ("grp-c", "grp-l")
    text = plan(hub, "FIND LOGITS LIKE a.logit['x'] WHERE name != 'b' TOP 3")
    assert "gallery_models=2 gallery_logits=7 filter=(name != 'b')" in text
    # HNSW with a selective filter still returns k results
    rows = hub.execute("FIND LOGITS LIKE a.logit['x'] WHERE name = 'c' TOP 5 OPTIONS (index = 'hnsw')").rows
    assert len(rows) == 5 and {r[1] for r in rows} == {"c"}
    assert "index=hnsw reason='OPTIONS (index = ''hnsw'')'" in plan(
        hub, "FIND LOGITS LIKE a.logit['x'] OPTIONS (index = 'hnsw')")


def test_find_errors(abc):
    hub = abc
    with pytest.raises(BindError, match="no logit labelled 'q'"):
        hub.execute("FIND LOGITS LIKE a.logit['q']")
    with pytest.raises(BindError, match="logit\\[9\\] does not exist"):
        hub.execute("FIND LOGITS LIKE a.logit[9]")
    with pytest.raises(BindError, match="unknown probe set"):
        hub.execute("FIND LOGITS LIKE a.logit[0] WITH PROBES nope")
    with pytest.raises(BindError, match="unknown FIND option"):
        hub.execute("FIND LOGITS LIKE a.logit[0] OPTIONS (topk = 3)")
    with pytest.raises(BindError, match="FIND MODELS"):
        hub.execute("FIND LOGITS LIKE a.logit[0] OPTIONS (method = 'model')")
    with pytest.raises(BindError, match="no aligner"):
        hub.execute("FIND LOGITS RECOGNIZING 'dog'")


# ---- aligners --------------------------------------------------------------------------------------------

def test_captions_aligner(hub, zoo, tmp_path):
    from PIL import Image

    d, files = zoo
    for n in ("l", "c"):
        add(hub, files, n)
    rng = np.random.default_rng(3)
    folder = tmp_path / "caps"
    folder.mkdir()
    rows = ["file,caption"]
    for i in range(24):
        bright = i % 2 == 0
        lo, hi = (150, 256) if bright else (0, 100)
        Image.fromarray(rng.integers(lo, hi, (8, 8), dtype=np.uint8)).save(folder / f"p{i:02d}.png")
        rows.append(f"p{i:02d}.png,{'a bright white square' if bright else 'a dark black square'}")
    (tmp_path / "caps.csv").write_text("\n".join(rows) + "\n")
    hub.execute(f"CREATE PROBE SET capset FROM '{folder}' CAPTIONS FROM '{tmp_path}/caps.csv'")
    q = "FIND LOGITS RECOGNIZING 'white' WITH PROBES capset TOP 7"
    assert "TextQuery: aligner=captions" in plan(hub, q) and "chosen_by='default: probe set capset has captions'" in plan(hub, q)
    res = hub.execute(q)
    r = res.to_dicts()
    assert (r[0]["model"], r[0]["logit"]) == ("l", 0) and (r[-1]["model"], r[-1]["logit"]) == ("l", 1)
    assert r[0]["aligner"].startswith("captions") and "aligner: captions" in res.message
    assert "clip" not in res.message.lower()
    r = hub.execute("FIND MODELS RECOGNIZING 'black' USING ALIGNER captions WITH PROBES capset").to_dicts()
    assert r[0]["model"] == "l" and r[0]["logit"] == 1


def test_teacher_aligner(hub, zoo):
    d, files = zoo
    for n in ("teacher", "student", "c"):
        add(hub, files, n)
    hub.execute(f"CREATE PROBE SET ps FROM '{d}/probes.npy'")
    q = "FIND LOGITS RECOGNIZING 'dog' USING ALIGNER teacher TOP 3"
    text = plan(hub, q)
    assert "TextQuery: aligner=teacher model=teacher" in text and "models=3" in text  # teacher probed on demand
    res = hub.execute(q)
    top = res.to_dicts()[0]
    # student logit i = teacher logit perm[i]; 'dog' is teacher logit 1
    assert (top["model"], top["logit"]) == ("student", files["student_perm"].index(1)) and top["distance"] < 1e-3
    assert all(r["model"] != "teacher" for r in res.to_dicts())
    assert top["aligner"].startswith("teacher teacher") and "matched 'dog'" in res.message
    hub.execute("SET aligner = 'teacher'")
    assert hub.execute("FIND LOGITS RECOGNIZING 'dog' TOP 1").rows[0][1] == "student"


def test_clip_aligner_tiny_random_open_clip(hub, zoo, tmp_path):
    open_clip = pytest.importorskip("open_clip")
    cfg = {"embed_dim": 16,
           "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "zooql-test-tiny-clip.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(str(tmp_path / "cfg"))
    hub.execute("ADD MODEL 'open_clip:zooql-test-tiny-clip' AS tinyclip")
    add(hub, zoo[1], "rgb")
    np.save(tmp_path / "rgb.npy", np.random.default_rng(5).integers(0, 256, (12, 16, 16, 3), dtype=np.uint8))
    hub.execute(f"CREATE PROBE SET colour FROM '{tmp_path}/rgb.npy'")
    q = "FIND LOGITS RECOGNIZING 'dog' USING ALIGNER clip TOP 2"
    assert "TextQuery: aligner=clip model=tinyclip" in plan(hub, q)
    res = hub.execute(q)
    assert len(res.rows) == 2 and {r[1] for r in res.rows} == {"rgb"}
    assert res.to_dicts()[0]["aligner"] == "clip tinyclip" and "random-init" in res.message
    hub.execute("SET aligner = 'tinyclip'")
    assert "aligner=clip model=tinyclip" in plan(hub, "FIND MODELS RECOGNIZING 'a red car'")
    assert hub.execute("FIND MODELS RECOGNIZING 'a red car'").rows[0][1] == "rgb"


def test_builtin_probe_set_created_on_first_use(hub, zoo, monkeypatch):
    from zooql.methods.probelog import ops_probe

    monkeypatch.setattr(ops_probe, "BUILTIN_DEFAULT_N", 10)
    add(hub, zoo[1], "a")
    add(hub, zoo[1], "b")
    text = plan(hub, "FIND LOGITS LIKE a.logit['w'] TOP 1")  # no probe set yet: the built-in one
    assert "CreateProbeSet: name=builtin source=builtin limit=10 auto=true" in text
    assert hub.execute("FIND LOGITS LIKE a.logit['w'] TOP 1").rows[0][1:4] == ("b", 1, "w")
    assert "CreateProbeSet" not in plan(hub, "PROBE WITH builtin")


def test_default_topk_probes_grows_with_the_probe_set(abc, tmp_path):
    from zooql.methods.probelog.kernels import default_k_probes

    assert [default_k_probes(n) for n in (5, 40, 256, 1000, 4000)] == [5, 20, 25, 100, 400]
    hub = abc
    np.save(tmp_path / "big.npy", np.random.default_rng(1).integers(0, 256, (300, 8, 8), dtype=np.uint8))
    hub.execute(f"CREATE PROBE SET big FROM '{tmp_path}/big.npy'")
    text = plan(hub, "FIND LOGITS LIKE a.logit['z'] WITH PROBES big TOP 2")
    assert text.splitlines()[0].startswith("Search: method=asymmetric topk_probes=30 ")
    text = plan(hub, "FIND LOGITS LIKE a.logit['z'] WITH PROBES big TOP 2 OPTIONS (topk_probes = 7)")
    assert text.splitlines()[0].startswith("Search: method=asymmetric topk_probes=7 ")
