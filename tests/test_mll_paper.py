"""MLL paper fidelity (issue 17): Eq. 5 over V^Selected computed at SELECT time, Eq. 6 with
the raw top-k caption similarities, Eq. 9 entropy weights ``H_m / sum H`` (default) and
``exp(-H)`` (``weights = 'confidence'``), each against values computed by hand."""
import math
import os
import re

import numpy as np
import pytest

import zooql
from zooql.methods.mll import labels as mll
from zooql.errors import BindError
from test_mll import make_graph_folder, write_png

pytest.importorskip("open_clip")
pytest.importorskip("torch")
from test_mll_lang import add, ckpts  # noqa: E402,F401  (module fixture: tiny checkpoints)


# ---- Eq. 5 on arrays -------------------------------------------------------------------------

def test_eq5_argmax_over_selected_nodes_hand_computed():
    # nodes: 0 dog, 1 hound (a hypernym-like neighbour), 2 car; captions are the unit axes
    captions = {0: np.array([1.0, 0, 0]), 1: np.array([0, 1.0, 0]), 2: np.array([0, 0, 1.0])}
    images = {0: np.array([[0.6, 0.8, 0.0],      # nearer "hound" than "dog"
                           [0.9, 0.1, 0.3]]),    # dog
              1: np.array([[0.0, 1.0, 0.0]]),
              2: np.array([[0.5, 0.0, 0.7],      # car
                           [0.1, 0.9, 0.0]])}    # nearest hound; among {dog, car}: dog
    all_nodes = mll.label_model([images[v] for v in range(3)], np.stack([captions[v] for v in range(3)]))
    np.testing.assert_allclose(all_nodes, [1 / 2, 1.0, 1 / 2])          # argmax over V
    sel = {v: images[v] for v in (0, 2)}
    p = mll.selected_node_precision(sel, {v: captions[v] for v in (0, 2)}, 3)
    # V^Selected = {dog, car}: dog images -> dog, dog (2/2); car images -> car, dog (1/2)
    np.testing.assert_allclose(p[[0, 2]], [1.0, 1 / 2])
    assert np.isnan(p[1])                                                # not selected: no value
    # ties among the selected nodes share the hit: an image at (0, 0, 0)-like similarity
    tie = mll.selected_node_precision({0: np.array([[0.0, 1.0, 0.0]])}, {0: captions[0], 2: captions[2]}, 3)
    assert tie[0] == pytest.approx(1 / 2)
    sim = np.array([[0.5, 0.5, 0.1], [0.2, 0.2, 0.2]])
    np.testing.assert_allclose(mll.node_precision(sim, np.array([1, 2]), ties="share"), [np.nan, 1 / 2, 1 / 3])
    np.testing.assert_allclose(mll.node_precision(sim, np.array([1, 2])), [np.nan, 0.0, 0.0])  # lower index


# ---- Eq. 5-7 through the language: a planted hypernym case -------------------------------------

GRAPH = [
    {"id": "dog", "name": "dog", "definition": "a domesticated canine that barks", "parent": None},
    {"id": "hound", "name": "hound", "definition": "a dog used for hunting by scent", "parent": "dog"},
    {"id": "car", "name": "car", "definition": "a motor vehicle with four wheels", "parent": None},
]
NODES = ["car", "dog", "hound"]                  # graph order (sorted ids)
AXIS = {n: i for i, n in enumerate(NODES)}


def _vec(**kw):
    e = np.zeros(len(NODES), dtype=np.float32)
    for k, v in kw.items():
        e[AXIS[k]] = v
    return e


# model "a" confuses dog with its hypernym-like neighbour hound but never with car;
# model "b" gets one dog image right and mistakes the other for a car
FAKE = {"a": {"dog": [_vec(dog=0.6, hound=0.8), _vec(dog=0.6, hound=0.8)]},
        "b": {"dog": [_vec(dog=1.0), _vec(car=1.0)]}}


def _fake_images(runtime, loaded, paths, **kw):
    out = []
    for p in paths:
        node = os.path.basename(os.path.dirname(p))
        j = int(os.path.basename(p)[:2])
        out.append(FAKE[loaded.name].get(node, [_vec(**{node: 1.0})] * 2)[j])
    return np.stack(out)


def _fake_text(runtime, loaded, texts):
    return np.stack([_vec(**{next(w for w in re.findall(r"[a-z]+", t.lower()) if w in NODES): 1.0}) for t in texts])


@pytest.fixture
def hypernym_hub(tmp_path, ckpts, monkeypatch):  # noqa: F811
    monkeypatch.setattr(mll, "embed_node_images", _fake_images)
    monkeypatch.setattr(mll, "embed_captions", _fake_text)
    folder = make_graph_folder(tmp_path / "g", nodes=NODES, per_node=2, graph=GRAPH)
    hub = zooql.connect(tmp_path / "hub")
    hub.execute(f"CREATE SEMANTIC GRAPH g FROM '{folder}'")
    add(hub, ckpts, "a", "a")
    add(hub, ckpts, "b", "b")
    hub.execute("LABEL MODELS ON GRAPH g")
    yield hub
    hub.close()


def test_select_uses_eq5_over_matched_nodes(hypernym_hub):
    hub = hypernym_hub
    with hub.store.read() as con:
        stored = {(m, n): p for m, n, p in con.execute(
            'SELECT m.name, l.node, l."precision" FROM mll_labels l JOIN models m ON m.id = l.model_id').fetchall()}
    # LABEL's task-independent summary (argmax over all nodes): hound swallows a's dog images
    assert stored[("a", "dog")] == 0.0 and stored[("b", "dog")] == 0.5

    res = hub.execute("SELECT MODELS FOR TASK t CLASSES ('dog', 'car') USING LABELS TOP 2 "
                      "OPTIONS (nodes_per_class = 1, alpha = 0.7)")
    assert "precision over the 2 matched nodes" in res.message
    got = {r["model"]: (r["r_dog"], r["r_car"]) for r in res.to_dicts()}
    # V^Selected = {dog, car}: each class caption is its node's caption, so the top-1 node has
    # raw similarity z = 1 (Eq. 6). Eq. 5 over {dog, car}:
    # a: p_dog = 1 (cos 0.6 to dog vs 0 to car), p_car = 1;  b: p_dog = 1/2, p_car = 1
    for model, (pd, pc) in {"a": (1.0, 1.0), "b": (0.5, 1.0)}.items():
        mean = (pd + pc) / 2
        assert got[model] == pytest.approx((0.7 * pd + 0.3 * mean, 0.7 * pc + 0.3 * mean), abs=1e-5)  # Eq. 7
    # with the all-node argmax b would win dog (r 0.575 vs 0.15); over V^Selected a does
    assert res.to_dicts()[0]["model"] == "a" and got["a"][0] > got["b"][0]


# ---- Eq. 9 through the language: both weightings against hand-computed confidences ------------

Q = {"a": np.array([[0.5, 0.5], [0.9, 0.1]]), "b": np.array([[0.8, 0.2], [0.3, 0.7]])}


def _H(q):
    return [-sum(x * math.log(x) for x in row) for row in q]


def test_classify_weights_entropy_default_and_confidence(hypernym_hub, tmp_path, monkeypatch):
    hub = hypernym_hub
    test_dir = tmp_path / "test"
    for n in ("dog", "car"):
        write_png(str(test_dir / n / "x.png"), 100)
    monkeypatch.setattr(mll, "zero_shot", lambda rt, loaded, paths, classes, **kw: Q[loaded.name])
    q = f"CLASSIFY '{test_dir}' FOR TASK t CLASSES ('dog', 'car') USING LABELS ENSEMBLE 2"
    assert "weights" not in hub.explain(q)
    assert "weights=confidence" in hub.explain(q + " OPTIONS (weights = 'confidence')")
    Ha, Hb = _H(Q["a"]), _H(Q["b"])
    for opt, wa in (("", [Ha[i] / (Ha[i] + Hb[i]) for i in range(2)]),
                    (" OPTIONS (weights = 'entropy')", [Ha[i] / (Ha[i] + Hb[i]) for i in range(2)]),
                    (" OPTIONS (weights = 'confidence')",
                     [math.exp(-Ha[i]) / (math.exp(-Ha[i]) + math.exp(-Hb[i])) for i in range(2)])):
        res = hub.execute(q + opt)
        # both classes' ensembles are {a, b}; images in file order: car/x.png, dog/x.png
        conf = np.array([[wa[i] * Q["a"][i, y] + (1 - wa[i]) * Q["b"][i, y] for y in range(2)] for i in range(2)])
        assert [r[1] for r in res.rows] == [["dog", "car"][int(k)] for k in conf.argmax(1)]
        np.testing.assert_allclose([r[2] for r in res.rows], conf.max(1), atol=1e-6)
    with pytest.raises(BindError, match="option weights must be one of 'entropy', 'confidence'"):
        hub.execute(q + " OPTIONS (weights = 'softmax')")
    with pytest.raises(BindError, match="unknown option 'weights' for SELECT MODELS"):
        hub.execute("SELECT MODELS FOR TASK t CLASSES ('dog') USING LABELS OPTIONS (weights = 'entropy')")


def test_eq9_entropy_weights_zero_entropy_is_uniform():
    w = mll.entropy_weights(np.array([[0.0, 0.2], [0.0, 0.6]]))
    np.testing.assert_allclose(w, [[0.5, 0.25], [0.5, 0.75]])
    with pytest.raises(ValueError, match="unknown ensemble weights"):
        mll.entropy_weights(np.zeros((2, 1)), "x")
