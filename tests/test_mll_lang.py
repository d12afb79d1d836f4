"""MLL through the language: CREATE SEMANTIC GRAPH, LABEL MODELS, SELECT MODELS FOR TASK ...
USING LABELS, CLASSIFY ... USING LABELS ENSEMBLE k, on tiny random-init open_clip models
(real forward passes) and on a planted case whose right model is known by construction."""
import json
import os
import re

import numpy as np
import pytest

import zooql
from zooql.methods.mll import labels as mll
from zooql.errors import BindError, ExecutionError
from test_mll import GRAPH, make_graph_folder, write_png

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")

TINY = {"embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
ARCH = "zooql-test-tiny-mll-clip"


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Two seeded random-init tiny open_clip checkpoints (so reloads give the same model)."""
    d = tmp_path_factory.mktemp("clip")
    (d / "cfg").mkdir()
    (d / "cfg" / f"{ARCH}.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(str(d / "cfg"))
    out = {}
    for i, name in enumerate(("a", "b", "c")):
        torch.manual_seed(i)
        model = open_clip.create_model(ARCH)
        torch.save(model.state_dict(), d / f"{name}.pt")
        out[name] = str(d / f"{name}.pt")
    return out


def add(hub, ckpts, name, alias=None):
    hub.execute(f"ADD MODEL 'open_clip:{ARCH}' AS {alias or 'clip' + name} FROM '{ckpts[name]}'")


def rows(res):
    return res.to_dicts()


def label_runs(hub):
    with hub.store.read() as con:
        return con.execute("SELECT m.name, r.n_nodes, r.image_passes FROM mll_label_runs r JOIN models m "
                           "ON m.id = r.model_id ORDER BY 1").fetchall()


def test_language_path_tiny_open_clip(tmp_path, ckpts):
    folder = make_graph_folder(tmp_path / "g", nodes=("dog", "cat", "car"), per_node=3)
    hub = zooql.connect(tmp_path / "hub")
    res = hub.execute(f"CREATE SEMANTIC GRAPH g FROM '{folder}' MAX IMAGES 2")
    assert res.rows == [("g", 3, 6, "graph.json")]
    add(hub, ckpts, "a")
    q = "LABEL MODELS ON GRAPH g"
    assert hub.explain(q) == ("LabelModels: graph=g models=1 nodes=3 image_passes=6 text_passes=3 "
                              "cached_model_nodes=0 new_nodes={clipa: 3}")
    out = rows(hub.execute(q))
    assert [(r["model"], r["nodes"], r["new_nodes"], r["image_passes"]) for r in out] == [("clipa", 3, 3, 6)]

    # the stored label is Eq. 2-5 on the model's own embeddings, computed here directly
    from zooql.runtime.models import ModelRuntime

    rt = ModelRuntime()
    loaded = rt.load("clipa", f"open_clip:{ARCH}", ckpts["a"], None)
    order = ["car", "cat", "dog"]
    caps = [next(g for g in GRAPH if g["id"] == n) for n in order]
    texts = rt.embed_text(loaded, [f"{c['name']} which is {c['definition']}" for c in caps])
    imgs = [rt.embed_images(loaded, [os.path.join(folder, n, f"{j:02d}.png") for j in range(2)]) for n in order]
    with hub.store.read() as con:
        stored = dict(con.execute('SELECT node, "precision" FROM mll_labels').fetchall())
    want = mll.label_model([i.astype(np.float16).astype(np.float32) for i in imgs], texts)
    np.testing.assert_allclose([stored[n] for n in order], want)

    # a second LABEL computes nothing; a new model computes only itself
    assert "image_passes=0" in hub.explain(q) and "new_nodes" not in hub.explain(q)
    assert [r["image_passes"] for r in rows(hub.execute(q))] == [0]
    add(hub, ckpts, "b")
    assert "cached_model_nodes=3 new_nodes={clipb: 3}" in hub.explain(q) and "image_passes=6" in hub.explain(q)
    again = {r["model"]: (r["new_nodes"], r["image_passes"]) for r in rows(hub.execute(q))}
    assert again == {"clipa": (0, 0), "clipb": (3, 6)}

    # selection: r per class, the per-class top model is its argmax, reuse = mean over classes
    sq = "SELECT MODELS FOR TASK 'pets' CLASSES ('dog', 'cat') USING LABELS ON GRAPH g TOP 2 OPTIONS (alpha = 0.5)"
    plan = hub.explain(sq)
    assert "SelectModelsByLabels: task=pets graph=g classes=2" in plan and "labelled_models=2 image_passes=0" in plan
    assert "sentence_texts=5" in plan                     # 2 classes + 3 node captions (not yet cached)
    sel = rows(hub.execute(sq))
    assert {r["model"] for r in sel} == {"clipa", "clipb"} and [r["rank"] for r in sel] == [1, 2]
    for r in sel:
        assert r["reuse"] == pytest.approx((r["r_dog"] + r["r_cat"]) / 2, abs=1e-5)
    assert sel[0]["reuse"] >= sel[1]["reuse"]
    assert "sentence_texts=2" in hub.explain(sq)          # node captions now cached in the hub

    # CLASSIFY = Eq. 8-10 on the selected ensembles, recomputed here from the models directly
    test_dir = tmp_path / "test"
    for cls, v in (("dog", 30), ("cat", 200)):
        for j in range(2):
            write_png(str(test_dir / cls / f"{j}.png"), v + j)
    cq = f"CLASSIFY '{test_dir}' FOR TASK 'pets' USING LABELS ENSEMBLE 2"
    cplan = hub.explain(cq)
    assert "ClassifyByLabels: folder=test task=pets graph=g classes=2 ensemble=2" in cplan
    assert "images=4 models_at_most=2 image_passes_at_most=8 text_passes_at_most=4" in cplan
    res = hub.execute(cq)
    paths = [str(test_dir / p) for p in ("cat/0.png", "cat/1.png", "dog/0.png", "dog/1.png")]
    probs = [mll.zero_shot(rt, rt.load(n, f"open_clip:{ARCH}", ckpts[n[-1]], None), paths, ["dog", "cat"])
             for n in ("clipa", "clipb")]
    conf, pred = mll.ensemble_predict(probs, np.array([[0, 1], [0, 1]]))
    assert [r[1] for r in res.rows] == [["dog", "cat"][p] for p in pred]
    np.testing.assert_allclose([r[2] for r in res.rows], conf[np.arange(4), pred], atol=1e-5)
    assert [r[4] for r in res.rows] == ["cat", "cat", "dog", "dog"] and "accuracy" in res.message

    # persistence: a reopened hub computes nothing and selects the same models
    hub.close()
    hub = zooql.connect(tmp_path / "hub")
    assert [r["image_passes"] for r in rows(hub.execute(q))] == [0, 0]
    assert rows(hub.execute(sq)) == sel
    # CLASSIFY by task name alone reuses the stored classes
    assert hub.execute(f"CLASSIFY '{test_dir}' FOR TASK pets USING LABELS ENSEMBLE 2").rows == res.rows

    # new nodes: OR REPLACE rescans; old labels go stale; LABEL embeds only the new node
    for j in range(2):
        write_png(os.path.join(folder, "truck", f"{j:02d}.png"), 90 + j)
    assert hub.execute(f"CREATE OR REPLACE SEMANTIC GRAPH g FROM '{folder}' MAX IMAGES 2").rows[0][1] == 4
    with pytest.raises(BindError, match="no models are labelled.*older version"):
        hub.execute(sq)
    assert "new_nodes={clipa: 1, clipb: 1}" in hub.explain(q) and "image_passes=4" in hub.explain(q)
    assert {r["model"]: r["image_passes"] for r in rows(hub.execute(q))} == {"clipa": 2, "clipb": 2}
    assert label_runs(hub) == [("clipa", 4, 2), ("clipb", 4, 2)]

    # a failed LABEL changes nothing: a missing image file stops it before anything is stored
    add(hub, ckpts, "c")
    os.remove(os.path.join(folder, "truck", "01.png"))
    with pytest.raises(ExecutionError, match="node truck: cannot read its images"):
        hub.execute("LABEL MODELS WHERE name = 'clipc' ON GRAPH g")
    assert label_runs(hub) == [("clipa", 4, 2), ("clipb", 4, 2)]
    with hub.store.read() as con:
        assert con.execute("SELECT count(*) FROM mll_embeddings e JOIN models m ON m.id = e.model_id "
                           "WHERE m.name = 'clipc'").fetchone()[0] == 0

    described = dict(hub.execute("DESCRIBE MODEL clipa").rows)
    assert described["mll_labels"].startswith("g (4 nodes, mean precision ")
    # DROP MODEL drops its labels
    hub.execute("DROP MODEL clipb")
    assert label_runs(hub) == [("clipa", 4, 2)]
    assert [r["model"] for r in rows(hub.execute(sq))] == ["clipa"]
    hub.close()


def test_errors(tmp_path, ckpts):
    hub = zooql.connect(tmp_path / "hub")
    with pytest.raises(BindError, match="no semantic graphs in this hub"):
        hub.execute("SELECT MODELS FOR TASK t CLASSES ('dog') USING LABELS")
    folder = make_graph_folder(tmp_path / "g", nodes=("dog", "cat"), per_node=1)
    hub.execute(f"CREATE SEMANTIC GRAPH g FROM '{folder}'")
    with pytest.raises(BindError, match="already exists; CREATE OR REPLACE"):
        hub.execute(f"CREATE SEMANTIC GRAPH g FROM '{folder}'")
    with pytest.raises(BindError, match="unknown semantic graph 'gg' \\(did you mean 'g'"):
        hub.execute("LABEL MODELS ON GRAPH gg")
    with pytest.raises(BindError, match="no vision-language models"):
        hub.execute("LABEL MODELS ON GRAPH g")
    with pytest.raises(BindError, match="no models are labelled on graph 'g'; run LABEL MODELS"):
        hub.execute("SELECT MODELS FOR TASK t CLASSES ('dog') USING LABELS")
    with pytest.raises(BindError, match="needs a method: add USING LABELS"):
        hub.execute("SELECT MODELS FOR TASK t CLASSES ('dog')")
    empty = tmp_path / "empty"
    os.makedirs(empty / "dog")
    (empty / "graph.json").write_text(json.dumps(GRAPH))
    with pytest.raises(ExecutionError, match="no node images"):
        hub.execute(f"CREATE SEMANTIC GRAPH e FROM '{empty}'")
    assert hub.execute("SHOW MODELS").rows == []
    add(hub, ckpts, "a")
    hub.execute("LABEL MODELS ON GRAPH g")
    with pytest.raises(BindError, match="no images"):
        hub.execute(f"CLASSIFY '{empty}' FOR TASK t CLASSES ('dog') USING LABELS ENSEMBLE 1")
    with pytest.raises(BindError, match="task 'nope' has no classes"):
        hub.execute(f"CLASSIFY '{folder}' FOR TASK nope USING LABELS ENSEMBLE 1")
    with pytest.raises(BindError, match="option alpha must be a number in \\[0, 1\\]"):
        hub.execute("SELECT MODELS FOR TASK t CLASSES ('dog') USING LABELS OPTIONS (alpha = 2)")
    with pytest.raises(BindError, match="unknown option 'k'"):
        hub.execute("SELECT MODELS FOR TASK t CLASSES ('dog') USING LABELS OPTIONS (k = 2)")
    with pytest.raises(BindError, match="class 'dog' appears twice"):
        hub.execute("SELECT MODELS FOR TASK t CLASSES ('dog', 'dog') USING LABELS")
    hub.close()


# ---- planted: model "animals" sees animals right, model "vehicles" sees vehicles right ----------

NODES = ["car", "cat", "dog", "truck"]          # graph order (sorted ids)
GOOD = {"animals": {"dog", "cat"}, "vehicles": {"car", "truck"}}
SWAP = {"dog": "cat", "cat": "dog", "car": "truck", "truck": "car"}


def _onehot(node):
    e = np.zeros(len(NODES), dtype=np.float32)
    e[NODES.index(node)] = 1.0
    return e


def _fake_images(runtime, loaded, paths, **kw):
    out = []
    for p in paths:
        node = os.path.basename(os.path.dirname(p))
        out.append(_onehot(node if node in GOOD[loaded.name] else SWAP[node]))
    return np.stack(out)


def _fake_text(runtime, loaded, texts):
    return np.stack([_onehot(next(w for w in re.findall(r"[a-z]+", t.lower()) if w in NODES)) for t in texts])


@pytest.fixture
def planted(tmp_path, ckpts, monkeypatch):
    monkeypatch.setattr(mll, "embed_node_images", _fake_images)
    monkeypatch.setattr(mll, "embed_captions", _fake_text)
    folder = make_graph_folder(tmp_path / "g", nodes=NODES, per_node=2)
    hub = zooql.connect(tmp_path / "hub")
    hub.execute(f"CREATE SEMANTIC GRAPH g FROM '{folder}'")
    add(hub, ckpts, "a", "animals")
    add(hub, ckpts, "b", "vehicles")
    hub.execute("LABEL MODELS ON GRAPH g")
    yield hub, folder
    hub.close()


def test_planted_labels_and_selection(planted):
    hub, _ = planted
    with hub.store.read() as con:
        labels = {(m, n): p for m, n, p in con.execute(
            'SELECT m.name, l.node, l."precision" FROM mll_labels l JOIN models m ON m.id = l.model_id').fetchall()}
    for model, good in GOOD.items():
        for n in NODES:
            assert labels[(model, n)] == (1.0 if n in good else 0.0)

    def top(classes, extra=""):
        res = hub.execute(f"SELECT MODELS FOR TASK t CLASSES ({classes}) USING LABELS TOP 1 {extra}")
        return {c: r["model"] for r in res.to_dicts() for c in r["selected_for"].split(", ")}

    assert top("'dog', 'cat'") == {"dog": "animals", "cat": "animals"}
    assert top("'car', 'truck'") == {"car": "vehicles", "truck": "vehicles"}
    assert top("'dog', 'truck'", "OPTIONS (nodes_per_class = 1)") == {"dog": "animals", "truck": "vehicles"}
    # a classes file with captions: the captions, not the names, are matched against the nodes
    path = os.path.join(hub.path, "..", "classes.txt")
    with open(path, "w") as f:
        f.write("# class | caption\npuppy | a domesticated canine that barks\nlorry | a large motor vehicle for carrying loads\n")
    res = hub.execute(f"SELECT MODELS FOR TASK t2 CLASSES FROM '{path}' USING LABELS OPTIONS (nodes_per_class = 1)")
    assert {c: r["model"] for r in res.to_dicts() for c in r["selected_for"].split(", ")} == \
        {"puppy": "animals", "lorry": "vehicles"}
    with hub.store.read() as con:
        caps = json.loads(con.execute("SELECT captions FROM mll_tasks WHERE name = 't2'").fetchone()[0])
    assert caps == ["a domesticated canine that barks", "a large motor vehicle for carrying loads"]
    # alpha = 0: every class gets the model that is best on average over the task's classes
    assert set(top("'dog', 'cat', 'car'", "OPTIONS (alpha = 0)").values()) == {"animals"}


def test_planted_classify_ensemble_beats_each_single_model(planted, tmp_path):
    hub, folder = planted
    test_dir = tmp_path / "test"
    for n in NODES:
        write_png(str(test_dir / n / "x.png"), 100)
    q = f"CLASSIFY '{test_dir}' FOR TASK zoo CLASSES ('dog', 'cat', 'car', 'truck') USING LABELS ENSEMBLE 1"
    res = hub.execute(q)
    assert all(r[1] == r[4] for r in res.rows) and "accuracy 1.000 on 4 images" in res.message
    assert {r[1]: r[3] for r in res.rows} == {"dog": "animals", "cat": "animals", "car": "vehicles",
                                              "truck": "vehicles"}
    # each model alone gets half right (it swaps the classes it is bad at)
    paths = [str(test_dir / n / "x.png") for n in NODES]
    classes = ["dog", "cat", "car", "truck"]
    for model in GOOD:
        fake = type("Loaded", (), {"name": model})()
        q1 = mll.zero_shot_probs(_fake_images(None, fake, paths), _fake_text(None, fake, classes))
        assert sum(classes[i] == n for i, n in zip(q1.argmax(1), NODES)) == 2


def test_wordnet_graph_through_language(tmp_path):
    from zooql.methods.mll.semantic_graph import try_wordnet

    if try_wordnet() is None:
        pytest.skip("WordNet 3.0 is not installed (apt-get install wordnet-base, or set $ZOOQL_WORDNET)")
    for d in ("n02084071", "n02121620", "n02958343"):               # dog, cat, car
        write_png(str(tmp_path / "imgs" / d / "a.png"), 10)
    hub = zooql.connect(tmp_path / "hub")
    res = hub.execute(f"CREATE SEMANTIC GRAPH wn FROM '{tmp_path / 'imgs'}' ROOT 'animal.n.01' MAX IMAGES 1")
    assert res.rows[0][:3] == ("wn", 2, 2) and res.rows[0][3].startswith("wordnet:")
    with hub.store.read() as con:
        caps = [r[0] for r in con.execute("SELECT caption FROM mll_nodes ORDER BY idx").fetchall()]
    assert caps[0].startswith("dog which is a member of the genus Canis") and caps[1].startswith("cat which is")
    hub.close()


def test_benchmark_protocol_runs_end_to_end_on_tiny_models(tmp_path, ckpts):
    import sys

    from conftest import ROOT

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from mll_protocol import ROW_KEYS, run_mll_protocol

    graph = make_graph_folder(tmp_path / "g", nodes=("dog", "cat"), per_node=2)
    data = tmp_path / "pets"
    for cls, v in (("dog", 20), ("cat", 220)):
        for j in range(3):
            write_png(str(data / cls / f"{j}.png"), v + j)
    src = f"open_clip:{ARCH}"
    evaluations = {("m-a", "ImageNet 1k"): 0.5, ("m-b", "ImageNet 1k"): 0.6, ("m-a", "pets"): 0.9, ("m-b", "pets"): 0.4}
    log = []
    rows = run_mll_protocol([("m-a", src, ckpts["a"]), ("m-b", src, ckpts["b"])],
                            [{"name": "pets", "folder": str(data)}], str(graph), evaluations=evaluations,
                            hub_path=str(tmp_path / "hub"), log=log.append)
    assert len(rows) == 1 and tuple(rows[0]) == ROW_KEYS
    r = rows[0]
    assert (r["dataset"], r["classes"], r["images"], r["models"], r["imagenet_model"]) == ("pets", 2, 6, 2, "m-b")
    assert r["mll_top_model"] in ("m-a", "m-b") and r["oracle_table"] == 0.9 and r["imagenet_table"] == 0.4
    assert r["mll_top_table"] == evaluations[(r["mll_top_model"], "pets")]
    assert r["mll_accuracy"] in {i / 6 for i in range(7)} and r["imagenet_accuracy"] in {i / 6 for i in range(7)}
    assert any("LabelModels: graph=mll_graph models=2" in line for line in log)
