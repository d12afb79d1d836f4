"""MLL (Model Label Learning): the equations on hand-computed arrays, the semantic graph
reader (graph file and WordNet), and a planted case whose right model is known."""
import json
import math
import os

import numpy as np
import pytest

from zooql.methods.mll import labels as mll
from zooql.methods.mll.semantic_graph import caption, read_graph_folder, try_wordnet
from zooql.errors import ExecutionError

PNG_SIZE = 8


# ---- Eq. 2-5: model labels -------------------------------------------------------------------

def test_node_precision_hand_computed():
    # 6 images, 3 nodes; image i belongs to node owner[i]
    sim = np.array([[0.9, 0.1, 0.0],    # node 0 -> 0 (hit)
                    [0.2, 0.8, 0.1],    # node 0 -> 1 (miss)
                    [0.1, 0.7, 0.2],    # node 1 -> 1 (hit)
                    [0.3, 0.6, 0.5],    # node 1 -> 1 (hit)
                    [0.5, 0.5, 0.1],    # node 1 -> tie 0/1 -> lower index 0 (miss)
                    [0.0, 0.2, 0.3]])   # node 2 -> 2 (hit)
    owner = np.array([0, 0, 1, 1, 1, 2])
    p = mll.node_precision(sim, owner)
    np.testing.assert_allclose(p, [1 / 2, 2 / 3, 1.0])
    # a node without images has no label
    p4 = mll.node_precision(np.hstack([sim, np.zeros((6, 1))]), owner)
    assert np.isnan(p4[3]) and p4[0] == 0.5


def test_label_model_from_embeddings_uses_cosine_over_all_nodes():
    captions = np.array([[1.0, 0.0], [0.0, 1.0]])
    # node 0 images: (2, 1) -> cos .89 vs .45: node 0 (hit); (1, 3) -> node 1 (miss)
    # node 1 images: (0, 5) hit; (4, 1) miss; (1, 1.01) hit (cos to node 1 slightly higher)
    imgs = [np.array([[2.0, 1.0], [1.0, 3.0]]), np.array([[0.0, 5.0], [4.0, 1.0], [1.0, 1.01]])]
    np.testing.assert_allclose(mll.label_model(imgs, captions), [0.5, 2 / 3])
    s = mll.node_similarity(np.array([[3.0, 4.0]]), captions)
    np.testing.assert_allclose(s, [[0.6, 0.8]])


# ---- Eq. 6-7: transfer matrix and reuse metric --------------------------------------------------

def test_transfer_matrix_top_k_and_weights_hand_computed():
    # node embeddings are unit vectors at angles; class 0 = (1, 0), class 1 = (0, 1)
    nodes = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]])
    classes = np.array([[1.0, 0.0], [0.0, 2.0]])
    Z = mll.transfer_matrix(classes, nodes, k=2)
    # Eq. 6 (paper): the raw top-k caption similarities, neither clipped nor normalised
    # class 0: cosines 1, .6, 0, -1 -> top 2 = nodes 0, 1 with weights 1, .6
    # class 1: cosines 0, .8, 1, 0 -> top 2 = nodes 2, 1 with weights 1, .8
    expect = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.0, 0.0]])
    np.testing.assert_allclose(Z, expect)
    top, _ = mll.matched_nodes(classes, nodes, k=2)
    assert top.tolist() == [[0, 1], [2, 1]]
    # a negative similarity among the top k stays negative (no clipping)
    Zn = mll.transfer_matrix(np.array([[-1.0, 0.2]]), np.array([[1.0, 0.0], [0.0, 1.0]]), k=2)
    c = 1 / math.hypot(1.0, 0.2)
    np.testing.assert_allclose(Zn, [[-1.0 * c], [0.2 * c]])


def test_class_performance_and_reuse_metric_hand_computed():
    P = np.array([[0.9, 0.5, 0.1, 0.0],
                  [0.2, 0.4, 0.8, np.nan]])          # NaN: unlabelled node, counted as 0
    Z = np.array([[0.625, 0.0], [0.375, 0.8 / 1.8], [0.0, 1 / 1.8], [0.0, 0.0]])
    PY = mll.class_performance(P, Z)
    p00 = 0.9 * 0.625 + 0.5 * 0.375                    # 0.75
    p01 = 0.5 * 0.8 / 1.8 + 0.1 / 1.8                  # 0.277...
    p10 = 0.2 * 0.625 + 0.4 * 0.375                    # 0.275
    p11 = 0.4 * 0.8 / 1.8 + 0.8 / 1.8                  # 0.622...
    np.testing.assert_allclose(PY, [[p00, p01], [p10, p11]])
    R = mll.reuse_metric(PY, alpha=0.7)
    m0, m1 = (p00 + p01) / 2, (p10 + p11) / 2
    np.testing.assert_allclose(R, [[0.7 * p00 + 0.3 * m0, 0.7 * p01 + 0.3 * m0],
                                   [0.7 * p10 + 0.3 * m1, 0.7 * p11 + 0.3 * m1]])
    np.testing.assert_allclose(mll.reuse_metric(PY, alpha=1.0), PY)
    np.testing.assert_allclose(mll.reuse_metric(PY, alpha=0.0), [[m0, m0], [m1, m1]])
    sel = mll.select_per_class(R, k=1)
    assert sel.tolist() == [[0], [1]]
    # ties go to the lower model index; k is capped at the number of models
    assert mll.select_per_class(np.array([[0.5], [0.5], [0.1]]), k=5).tolist() == [[0, 1, 2]]


# ---- Eq. 8-10: entropy weights and the ensemble ------------------------------------------------

def test_entropy_weights_and_ensemble_hand_computed():
    qa = np.array([[0.5, 0.5], [0.9, 0.1]])           # model 0
    qb = np.array([[0.8, 0.2], [0.3, 0.7]])           # model 1
    Ha = [math.log(2), -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))]
    Hb = [-(0.8 * math.log(0.8) + 0.2 * math.log(0.2)), -(0.3 * math.log(0.3) + 0.7 * math.log(0.7))]
    np.testing.assert_allclose(mll.entropy(qa), Ha)
    # Eq. 9 (paper, the default): w_m = H_m / sum_m' H_m'
    w = mll.entropy_weights(np.array([Ha, Hb]))
    wa = [Ha[i] / (Ha[i] + Hb[i]) for i in range(2)]
    np.testing.assert_allclose(w[0], wa)
    np.testing.assert_allclose(w.sum(axis=0), 1.0)
    # 'confidence': w_m = exp(-H_m) / sum exp(-H_m')
    wc = mll.entropy_weights(np.array([Ha, Hb]), "confidence")
    np.testing.assert_allclose(wc[0], [math.exp(-Ha[i]) / (math.exp(-Ha[i]) + math.exp(-Hb[i])) for i in range(2)])
    # class 0's ensemble = {0, 1}; class 1's ensemble = {1}
    conf, pred = mll.ensemble_predict([qa, qb], np.array([[0, 1], [1, 1]]))
    c00 = wa[0] * 0.5 + (1 - wa[0]) * 0.8
    c10 = wa[1] * 0.9 + (1 - wa[1]) * 0.3
    # class 1 with the same model twice: weights 1/2 each -> its own probability
    np.testing.assert_allclose(conf, [[c00, 0.2], [c10, 0.7]])
    assert pred.tolist() == [0, int(c10 < 0.7)]
    # k = 1: each class reads its own model's probability
    conf1, pred1 = mll.ensemble_predict([qa, qb], np.array([[0], [1]]))
    np.testing.assert_allclose(conf1, [[0.5, 0.2], [0.9, 0.7]])
    assert pred1.tolist() == [0, 0]


def test_zero_shot_probs_softmax_with_scale():
    img = np.array([[1.0, 0.0]])
    txt = np.array([[1.0, 0.0], [0.0, 1.0]])
    q = mll.zero_shot_probs(img, txt, scale=2.0)
    np.testing.assert_allclose(q, [[math.exp(2) / (math.exp(2) + 1), 1 / (math.exp(2) + 1)]])


# ---- the semantic graph ------------------------------------------------------------------------

def write_png(path, value):
    from PIL import Image

    rng = np.random.default_rng(abs(hash(str(path))) % (2 ** 32))
    arr = np.clip(np.full((PNG_SIZE, PNG_SIZE, 3), value, dtype=np.int16) + rng.integers(0, 20, (PNG_SIZE, PNG_SIZE, 3)),
                  0, 255).astype(np.uint8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(arr).save(path)


GRAPH = [
    {"id": "animal", "name": "animal", "definition": "a living organism", "parent": None},
    {"id": "dog", "name": "dog", "definition": "a domesticated canine that barks", "parent": "animal"},
    {"id": "cat", "name": "cat", "definition": "a small domesticated feline that meows", "parent": "animal"},
    {"id": "vehicle", "name": "vehicle", "definition": "a conveyance that transports people or objects",
     "parent": None},
    {"id": "car", "name": "car", "definition": "a motor vehicle with four wheels", "parent": "vehicle"},
    {"id": "truck", "name": "truck", "definition": "a large motor vehicle for carrying loads", "parent": "vehicle"},
]


def make_graph_folder(root, nodes=("dog", "cat", "car", "truck"), per_node=3, graph=GRAPH):
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "graph.json"), "w") as f:
        json.dump(graph, f)
    for i, n in enumerate(nodes):
        for j in range(per_node):
            write_png(os.path.join(root, n, f"{j:02d}.png"), 40 * i + 5 * j)
    return str(root)


def test_graph_file_root_and_max_images(tmp_path):
    folder = make_graph_folder(tmp_path / "g", per_node=4)
    nodes, origin = read_graph_folder(folder, max_images=2)
    assert origin == "graph.json" and [n.id for n in nodes] == ["car", "cat", "dog", "truck"]
    assert nodes[0].images == ["car/00.png", "car/01.png"]            # sorted, first MAX IMAGES
    assert nodes[2].caption == "dog which is a domesticated canine that barks"
    assert nodes[2].parents == ["animal"]
    under, _ = read_graph_folder(folder, root="vehicle")
    assert [n.id for n in under] == ["car", "truck"] and len(under[0].images) == 4
    assert caption("hot_dog", None) == "hot dog"
    with pytest.raises(ExecutionError, match="ROOT 'nope' is not a node of the graph file"):
        read_graph_folder(folder, root="nope")
    empty = tmp_path / "empty"
    os.makedirs(empty / "dog")
    with open(empty / "graph.json", "w") as f:
        json.dump(GRAPH, f)
    with pytest.raises(ExecutionError, match="no node images"):
        read_graph_folder(str(empty))
    os.makedirs(tmp_path / "g" / "ghost")
    write_png(str(tmp_path / "g" / "ghost" / "a.png"), 1)
    with pytest.raises(ExecutionError, match="ghost.*not nodes"):
        read_graph_folder(folder)


def test_graph_without_graph_file_needs_wordnet(tmp_path, monkeypatch):
    write_png(str(tmp_path / "n02084071" / "a.png"), 10)
    monkeypatch.setenv("ZOOQL_WORDNET", str(tmp_path / "nowhere"))
    with pytest.raises(ExecutionError, match="wordnet-base"):
        read_graph_folder(str(tmp_path))


@pytest.fixture
def wordnet():
    wn = try_wordnet()
    if wn is None:
        pytest.skip("WordNet 3.0 is not installed (apt-get install wordnet-base, or set $ZOOQL_WORDNET)")
    return wn


def test_wordnet_reader(wordnet, tmp_path):
    dog = wordnet.synset("n02084071")
    assert dog.name == "dog.n.01" and dog.definition.startswith("a member of the genus Canis")
    assert wordnet.synset("dog.n.01").wnid == "n02084071"
    assert "n00001740" in wordnet.ancestors("n02084071")               # entity
    assert wordnet.first_sense("cat").name == "cat.n.01"
    for d in ("n02084071", "cat.n.01", "n02958343"):                   # dog, cat (by name), car
        write_png(str(tmp_path / "imgs" / d / "a.png"), 10)
    nodes, origin = read_graph_folder(str(tmp_path / "imgs"))
    assert origin.startswith("wordnet:")
    names = {n.id: n.name for n in nodes}
    assert names == {"n02084071": "dog", "cat.n.01": "cat", "n02958343": "car"}
    animals, _ = read_graph_folder(str(tmp_path / "imgs"), root="animal.n.01")
    assert sorted(n.id for n in animals) == ["cat.n.01", "n02084071"]
    with pytest.raises(ExecutionError, match="not a WordNet noun synset"):
        read_graph_folder(str(tmp_path / "imgs"), root="nothing.n.99")


# ---- the language: parsing, and planning without torch --------------------------------------------

def test_parse_mll_statements():
    from zooql.errors import ParseError
    from zooql.methods.mll import ast as A
    from zooql.methods.registry import parse_one

    s = parse_one("create or replace semantic graph g from 'f' root 'entity.n.01' max images 5 "
                  "options (wordnet = 'wn')")
    assert isinstance(s, A.CreateSemanticGraph) and s.replace and s.root.value == "entity.n.01"
    assert s.max_images.value == 5 and s.options[0].key == "wordnet"
    s = parse_one("LABEL MODELS WHERE tags.org = 'x' ON GRAPH g BATCH 8 DEVICE 'cpu'")
    assert isinstance(s, A.LabelModels) and s.graph.value == "g" and s.batch.value == 8 and s.where is not None
    s = parse_one("SELECT MODELS FOR TASK 'pets' CLASSES ('cat', 'dog') DOMAIN 'photos' USING LABELS "
                  "ON GRAPH g TOP 2 OPTIONS (alpha = 0.5)")
    assert [c.value for c in s.classes] == ["cat", "dog"] and s.using_labels and s.top.value == 2
    assert s.domain.value == "photos" and s.graph.value == "g" and s.classes_file is None
    s = parse_one("SELECT MODELS FOR TASK pets CLASSES FROM 'c.csv' USING LABELS")
    assert s.classes is None and s.classes_file.value == "c.csv" and s.task.value == "pets"
    s = parse_one("CLASSIFY 'imgs' FOR TASK pets USING LABELS ENSEMBLE 3 LIMIT 10")
    assert isinstance(s, A.Classify) and s.ensemble.value == 3 and s.limit.value == 10 and s.classes is None
    with pytest.raises(ParseError, match="clause TOP given twice"):
        parse_one("SELECT MODELS FOR TASK t CLASSES ('a') USING LABELS TOP 1 TOP 2")
    with pytest.raises(ParseError):
        parse_one("SELECT MODELS FOR TASK t USING LABELS")           # CLASSES is required


def test_create_and_explain_do_not_import_torch(tmp_path):
    import subprocess
    import sys

    folder = make_graph_folder(tmp_path / "g", nodes=("dog", "cat"), per_node=1)
    code = (
        "import sys, zooql\n"
        f"hub = zooql.connect({str(tmp_path / 'hub')!r})\n"
        f"print(hub.execute(\"CREATE SEMANTIC GRAPH g FROM '{folder}'\").rows)\n"
        f"print(hub.explain(\"CREATE OR REPLACE SEMANTIC GRAPH g FROM '{folder}' MAX IMAGES 1\"))\n"
        "print(sorted(m for m in ('torch', 'open_clip', 'transformers') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "[('g', 2, 2, 'graph.json')]"
    assert lines[1] == "CreateSemanticGraph: graph=g folder=g max_images=1 replace=true"
    assert lines[-1] == "[]"
