"""DCD through the language: CREATE TASK ... FROM IMAGES (unlabelled folder), IMPORT
EVALUATIONS, RANK MODELS ... USING CONDUCTANCE, EXPLAIN, the (model, task) vector cache
across statements and hub reopen, a planted ranking and the errors."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import zooql
from zooql.methods.dcd import conductance as D
from zooql.methods.dcd import estimate as E
from zooql.errors import BindError

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")
pytest.importorskip("captum")
Image = pytest.importorskip("PIL.Image")

from test_dcd import _captum_direct, register_tiny_configs, tiny_model  # noqa: E402

VIT, RN = "zooql-test-dcd-vit", "zooql-test-dcd-rn"
Q = "RANK MODELS FOR TASK tgt USING CONDUCTANCE TOP 3 OPTIONS (steps = 8)"


def _images(folder, kind, n, seed):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        if kind == "noise":
            a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        else:  # smooth colour ramps
            ramp = np.linspace(0, 1, 32)
            a = (np.stack([np.outer(ramp, ramp) * rng.uniform(0.5, 1)] * 3, -1) * 255).astype(np.uint8)
        Image.fromarray(a).save(folder / f"img{i}.png")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("dcd")
    register_tiny_configs(d / "cfg")
    for name, arch, seed in (("v1", VIT, 1), ("v2", VIT, 2), ("r1", RN, 3)):
        torch.save(tiny_model(arch, seed).state_dict(), d / f"{name}.pt")
    _images(d / "tgt", "noise", 3, 0)
    _images(d / "s1", "noise", 3, 1)
    _images(d / "s2", "smooth", 3, 2)
    _images(d / "s3", "smooth", 2, 3)
    (d / "ev.csv").write_text("model,dataset,metric,score\n"
                              "v1,s1,acc1,0.5\nv2,s1,acc1,0.7\nr1,s1,acc1,0.6\n"
                              "v1,s2,acc1,0.9\nv2,s2,acc1,0.1\nr1,s2,acc1,0.3\n")
    return d


def _setup(hub, d):
    for name, arch in (("v1", VIT), ("v2", VIT), ("r1", RN)):
        hub.execute(f"ADD MODEL 'open_clip:{arch}' AS {name} FROM '{d}/{name}.pt'")
    res = hub.execute(f"CREATE TASK tgt FROM IMAGES '{d}/tgt' LIMIT 2")
    assert "2 unlabelled images" in res.message
    hub.execute(f"CREATE TASK s1 FROM IMAGES '{d}/s1'")
    hub.execute(f"CREATE TASK s2 FROM IMAGES '{d}/s2'")
    hub.execute(f"IMPORT EVALUATIONS FROM '{d}/ev.csv'")


def _vectors(hub):
    with hub.store.read() as con:
        return {(m, t): np.asarray(v) for m, t, v in
                con.execute("SELECT model, task, vector FROM dcd_vectors").fetchall()}


def test_rank_models_using_conductance(tmp_path, files):
    d = files
    hub = zooql.connect(tmp_path / "hub")
    _setup(hub, d)
    plan = hub.explain(Q)
    lines = plan.splitlines()
    assert lines[0] == "RankModels: task=tgt method=conductance models=3 sources=[s1, s2] metric=acc1 eta=2 gamma=5 top=3"
    # passes and their estimated time (no conductance computed on this hub yet: the CPU prior)
    prior = sum(E.PRIOR_SECONDS_PER_PARAM * (r["params"] or E.PRIOR_PARAMS) for r in hub.execute("SHOW MODELS").to_dicts())
    for line, (task, role, n, passes) in zip(lines[1:], [("tgt", "target", 2, 48), ("s1", "source", 3, 72),
                                                         ("s2", "source", 3, 72)]):
        assert line == (f"  Conductance: task={task} role={role} images={n} steps=8 models=3 cached=0 new=3 "
                        f"passes={passes} est_time={E.fmt_duration(prior * n * 8)} est_basis=prior")
    res = hub.execute(Q)
    assert res.columns == ["rank", "model", "predicted_rank", "nearest_source", "weight", "divergence", "sources"]
    assert "9 computed, 0 cached" in res.message
    assert [r[0] for r in res.rows] == [1, 2, 3] and sorted(r[1] for r in res.rows) == ["r1", "v1", "v2"]

    # the cached vector is captum's LayerConductance on the model's preprocessed images
    vecs = _vectors(hub)
    assert len(vecs) == 9
    model = tiny_model(VIT, 0)
    model.load_state_dict(torch.load(d / "v1.pt", weights_only=True))
    rt_pre = hub.runtime().load("v1", f"open_clip:{VIT}", str(d / "v1.pt"), None).preprocess
    with hub.store.read() as con:   # LIMIT 2 draws 2 of the 3 images at random (seed 0)
        tgt_images = [json.loads(q)["image"] for (q,) in
                      con.execute("SELECT query FROM task_queries WHERE task = 'tgt' ORDER BY idx").fetchall()]
    assert len(tgt_images) == 2
    x = rt_pre(tgt_images)
    direct, _, _ = _captum_direct(model.eval(), x, steps=8)
    np.testing.assert_allclose(vecs[("v1", "tgt")], direct.mean(0), rtol=1e-5, atol=1e-9)
    assert len(vecs[("r1", "s1")]) == 4 and len(vecs[("v1", "s1")]) == 3   # RN stages, ViT blocks

    # the ranking is Eq. 5-11 over the stored vectors and the imported scores
    scores = {"s1": {"v1": 0.5, "v2": 0.7, "r1": 0.6}, "s2": {"v1": 0.9, "v2": 0.1, "r1": 0.3}}
    ms = ["r1", "v1", "v2"]
    expect = D.rank_models({m: vecs[(m, "tgt")] for m in ms},
                           {s: {m: vecs[(m, s)] for m in ms} for s in ("s1", "s2")}, scores)
    assert [r[1] for r in res.rows] == [e["model"] for e in expect]
    np.testing.assert_allclose([r[2] for r in res.rows], [e["predicted_rank"] for e in expect], atol=1e-4)
    for row, e in zip(res.rows, expect):
        best = max(e["weights"], key=e["weights"].get)
        assert row[3] == best and row[4] == pytest.approx(e["weights"][best], abs=1e-4)

    # a second RANK computes no new conductance and runs read-only
    again = hub.execute(Q)
    assert again.rows == res.rows and "0 computed, 9 cached" in again.message
    assert "cached=3 new=0 passes=0" in hub.explain(Q)
    assert not hub._bind_and_plan(zooql.methods.registry.parse_one(Q), None, str(tmp_path))[1].any_writes()
    analyzed = [r[0] for r in hub.execute("EXPLAIN ANALYZE " + Q).rows]
    assert all("computed=0 cached=3" in line for line in analyzed[1:])

    # ... also after the hub is closed and reopened
    hub.close()
    hub = zooql.connect(tmp_path / "hub")
    assert hub.explain(Q).count("new=0 passes=0") == 3
    assert hub.execute(Q).rows == res.rows
    # other captum steps are another representation: everything is recomputed
    assert hub.explain(Q.replace("steps = 8", "steps = 4")).count("new=3") == 3
    # changing a task's images recomputes that task only
    hub.execute(f"CREATE TASK s2 FROM IMAGES '{d}/s3'")
    lines = hub.explain(Q).splitlines()
    assert "cached=3 new=0" in lines[1] and "cached=3 new=0" in lines[2] and "cached=0 new=3 passes=48" in lines[3]
    # the estimate now comes from the seconds this hub measured for each model
    with hub.store.read() as con:
        per_pass = {m: s / n for m, s, n in con.execute(
            "SELECT model, sum(seconds), sum(n_images * steps) FROM dcd_vectors GROUP BY model").fetchall()}
    assert lines[3].endswith(f"est_time={E.fmt_duration(sum(per_pass.values()) * 2 * 8)} est_basis=measured")
    assert "est_time" not in lines[1]
    # DROP MODEL removes the model's conductance vectors (DCD's on_drop hook)
    hub.execute("DROP MODEL v2")
    assert {m for m, _ in _vectors(hub)} == {"r1", "v1"}
    hub.close()


def test_planted_ranking_through_the_language(tmp_path, files):
    """The target's images are a copy of source 'near': every model's target vector equals
    its 'near' vector (D = 0), while 'far' (other images) diverges. With a large gamma the
    predicted ranking must be the true ranking on 'near' (v2 > r1 > v1), not on 'far'."""
    d = files
    shutil.copytree(d / "s1", tmp_path / "copy")
    hub = zooql.connect(tmp_path / "hub")
    for name, arch in (("v1", VIT), ("v2", VIT), ("r1", RN)):
        hub.execute(f"ADD MODEL 'open_clip:{arch}' AS {name} FROM '{d}/{name}.pt'")
    hub.execute(f"CREATE TASK target FROM IMAGES '{tmp_path}/copy'")
    hub.execute(f"CREATE TASK near FROM IMAGES '{d}/s1'")
    hub.execute(f"CREATE TASK far FROM IMAGES '{d}/s2'")
    (tmp_path / "ev.csv").write_text("model,dataset,metric,score\n"
                                     "v1,near,acc1,0.2\nv2,near,acc1,0.8\nr1,near,acc1,0.5\n"
                                     "v1,far,acc1,0.9\nv2,far,acc1,0.1\nr1,far,acc1,0.3\n")
    hub.execute(f"IMPORT EVALUATIONS FROM '{tmp_path}/ev.csv'")
    res = hub.execute("RANK MODELS FOR TASK target USING CONDUCTANCE SOURCES (near, far) "
                      "OPTIONS (gamma = 1000, steps = 8)")
    assert [r[1] for r in res.rows] == ["v2", "r1", "v1"]
    np.testing.assert_allclose([r[2] for r in res.rows], [1.0, 2.0, 3.0], atol=1e-6)
    assert all(r[3] == "near" and r[5] == 0.0 for r in res.rows)
    vecs = _vectors(hub)
    assert all(D.divergence(vecs[(m, "target")], vecs[(m, "far")]) > 0.02 for m in ("v1", "v2", "r1"))
    # with gamma = 0 the sources weigh the same: predicted rank = mean of the two true ranks
    flat = hub.execute("RANK MODELS FOR TASK target SOURCES (near, far) OPTIONS (gamma = 0, steps = 8)")
    assert {r[1]: r[2] for r in flat.rows} == {"v2": 2.0, "r1": 2.0, "v1": 2.0}
    hub.close()
    # planning and EXPLAIN stay torch-free (and so does a RANK whose vectors are all cached)
    code = ("import sys, zooql; h = zooql.connect(sys.argv[1]); "
            "print(h.explain('RANK MODELS FOR TASK target SOURCES (near, far) OPTIONS (steps = 8)')); "
            "r = h.execute('RANK MODELS FOR TASK target SOURCES (near, far) OPTIONS (steps = 8, gamma = 1000)'); "
            "print([x[1] for x in r.rows], 'torch' in sys.modules, 'captum' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "hub")], capture_output=True, text=True,
                         check=True).stdout
    assert "cached=3 new=0 passes=0" in out and out.strip().endswith("['v2', 'r1', 'v1'] False False")


def test_parse_rank_statement():
    from zooql.errors import ParseError
    from zooql.methods.registry import parse_one

    tree = parse_one("RANK MODELS FOR TASK t USING CONDUCTANCE SOURCES (a, 'b c') WHERE name LIKE 'x%' "
                     "TOP 3 OPTIONS (eta = 2.0)").to_tree()
    assert tree["node"] == "RankModels" and tree["method"]["value"] == "CONDUCTANCE"
    assert [x["value"] for x in tree["sources"]] == ["a", "b c"] and tree["top"]["value"] == 3
    assert parse_one("RANK MODELS FOR TASK t").sources is None
    with pytest.raises(ParseError, match="TOP given twice"):
        parse_one("RANK MODELS FOR TASK t TOP 1 TOP 2")


def test_rank_errors(tmp_path, files):
    d = files
    hub = zooql.connect(tmp_path / "hub")
    with pytest.raises(BindError, match="no open_clip VLM is registered"):
        hub.execute(f"CREATE TASK tgt FROM IMAGES '{d}/tgt'; RANK MODELS FOR TASK tgt USING CONDUCTANCE")
    _setup(hub, d)
    with pytest.raises(BindError, match=r"unknown target task 'tgtt' \(did you mean 'tgt'"):
        hub.execute("RANK MODELS FOR TASK tgtt USING CONDUCTANCE")
    hub.execute(f"CREATE TASK s3 FROM IMAGES '{d}/s3'")
    with pytest.raises(BindError, match="no evaluations for source task 's3'"):
        hub.execute("RANK MODELS FOR TASK tgt USING CONDUCTANCE SOURCES (s1, s3)")
    with pytest.raises(BindError, match="unknown source task 'nope'"):
        hub.execute("RANK MODELS FOR TASK tgt SOURCES (nope)")
    with pytest.raises(BindError, match="is the target"):
        hub.execute("RANK MODELS FOR TASK tgt SOURCES (tgt)")
    hub.execute("ADD MODEL 'hf:org/text-only' AS named WITH (tree = 'grp')")
    with pytest.raises(BindError, match=r"open_clip VLMs only; model\(s\) named \(hf:org/text-only\)"):
        hub.execute("RANK MODELS FOR TASK tgt USING CONDUCTANCE WHERE name IN ('v1', 'named')")
    # without WHERE, models that are not VLMs are simply not ranked
    assert "models=3" in hub.explain("RANK MODELS FOR TASK tgt USING CONDUCTANCE")
    with pytest.raises(BindError, match="unknown ranking method 'conductanse'.*did you mean 'conductance'"):
        hub.execute("RANK MODELS FOR TASK tgt USING conductanse")
    with pytest.raises(BindError, match="unknown option 'etaa'.*did you mean 'eta'"):
        hub.execute("RANK MODELS FOR TASK tgt OPTIONS (etaa = 1)")
    with pytest.raises(BindError, match="gamma must be a number >= 0, got 'high'"):
        hub.execute("RANK MODELS FOR TASK tgt OPTIONS (gamma = 'high')")
    with pytest.raises(BindError, match="steps must be an integer >= 1, got 0"):
        hub.execute("RANK MODELS FOR TASK tgt OPTIONS (steps = 0)")
    with pytest.raises(BindError, match="TOP must be an integer"):
        hub.execute("RANK MODELS FOR TASK tgt TOP 0")
    (tmp_path / "ev2.csv").write_text("model,dataset,metric,score\nv1,s1,top5,0.9\nv9,s3,acc1,0.5\n")
    hub.execute(f"IMPORT EVALUATIONS FROM '{tmp_path}/ev2.csv'")
    with pytest.raises(BindError, match=r"several metrics \(acc1, top5\)"):
        hub.execute("RANK MODELS FOR TASK tgt SOURCES (s1, s2)")
    assert "metric=acc1" in hub.explain("RANK MODELS FOR TASK tgt SOURCES (s1, s2) OPTIONS (metric = 'acc1')")
    with pytest.raises(BindError, match="no evaluations for source task 's3' of the ranked models"):
        hub.execute("RANK MODELS FOR TASK tgt SOURCES (s3)")
    # DISCOVER needs labels: an unlabelled image task is refused with a clear message
    with pytest.raises(BindError, match="unlabelled images"):
        hub.execute("DISCOVER BEST IN TREE grp ON tgt BUDGET 2")
    # none of the failed statements computed anything
    assert _vectors(hub) == {}
    hub.close()


def test_no_evaluations_for_any_source(tmp_path, files):
    d = files
    hub = zooql.connect(tmp_path / "hub")
    hub.execute(f"ADD MODEL 'open_clip:{VIT}' AS v1 FROM '{d}/v1.pt'")
    hub.execute(f"CREATE TASK tgt FROM IMAGES '{d}/tgt'")
    hub.execute(f"CREATE TASK s1 FROM IMAGES '{d}/s1'")
    with pytest.raises(BindError, match="no source task: none of the other image tasks \\(s1\\) has evaluations"):
        hub.execute("RANK MODELS FOR TASK tgt USING CONDUCTANCE")
    (tmp_path / "ev.csv").write_text("model,dataset,metric,score\nother,s1,acc1,0.5\n")
    hub.execute(f"IMPORT EVALUATIONS FROM '{tmp_path}/ev.csv'")
    with pytest.raises(BindError, match="no evaluations for source task 's1' of the ranked models"):
        hub.execute("RANK MODELS FOR TASK tgt USING CONDUCTANCE")
    hub.close()
