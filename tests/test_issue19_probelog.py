"""Issue 19 (ProbeLog items): the default probe set, 'no model matches WHERE', the teacher
aligner named unquoted and announced, probe sets from class folders, FIND ... LIKE IMAGES."""
import numpy as np
import pytest

import zooql
from zooql.errors import BindError

torch = pytest.importorskip("torch")
PIL = pytest.importorskip("PIL.Image")

GREY = "WITH (input_size = 8, channels = 1, mean = (0.0), std = (1.0))"


def _quadrants(path, order=(0, 1, 2, 3)):
    """logit i = mean brightness of quadrant order[i] (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right)."""
    w = np.zeros((4, 64), np.float32)
    for q, (r0, c0) in enumerate([(0, 0), (0, 4), (4, 0), (4, 4)]):
        m = np.zeros((8, 8), np.float32)
        m[r0:r0 + 4, c0:c0 + 4] = 1 / 16
        w[q] = m.ravel()
    lin = torch.nn.Linear(64, 4)
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(w[list(order)]))
        lin.bias.zero_()
    torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), lin)).save(str(path))
    return str(path)


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.fromarray(arr.astype(np.uint8), mode="L").save(path)


@pytest.fixture
def qhub(tmp_path):
    rng = np.random.default_rng(0)
    src = _quadrants(tmp_path / "quad.pt")
    perm = [2, 3, 0, 1]   # the same quadrant detectors in another order: logit i of 'perm' = quadrant perm[i]
    shuffled = _quadrants(tmp_path / "quad_perm.pt", perm)
    np.save(tmp_path / "noise.npy", rng.integers(0, 256, (30, 8, 8), dtype=np.uint8))
    hub = zooql.connect(tmp_path / "hub")
    hub.execute(f"ADD MODEL 'torchscript:{src}' AS quad LABELS ('tl', 'tr', 'bl', 'br') {GREY}")
    hub.execute(f"ADD MODEL 'torchscript:{shuffled}' AS perm {GREY}")
    yield hub, tmp_path, perm
    hub.close()


def test_default_probe_set_choice_is_said(qhub):
    hub, d, _ = qhub
    hub.execute(f"CREATE PROBE SET noise FROM '{d}/noise.npy'")
    np.save(d / "noise2.npy", np.random.default_rng(1).integers(0, 256, (20, 8, 8), dtype=np.uint8))
    hub.execute(f"CREATE PROBE SET noise2 FROM '{d}/noise2.npy'")
    hub.execute("PROBE WITH noise2")
    # several sets, no setting: the one the query model is probed with, and the message says why
    res = hub.execute("FIND LOGITS LIKE quad.logit['tl'] TOP 1")
    assert "probes: noise2 (20; quad is probed with it" in res.message
    hub.execute("SET probe_set = 'noise'")
    res = hub.execute("FIND LOGITS LIKE quad.logit['tl'] TOP 1")
    assert "probes: noise (30; the hub's probe_set setting)" in res.message
    assert res.rows[0][1:3] == ("perm", 2)


def test_no_model_matches_where(qhub):
    hub, d, _ = qhub
    hub.execute(f"CREATE PROBE SET noise FROM '{d}/noise.npy'")
    res = hub.execute("PROBE MODELS WHERE tree = 'mine' AND downloads > 1000 WITH noise")
    assert res.message == "nothing to probe: no model matches WHERE tree = 'mine' AND downloads > 1000"
    hub.execute("PROBE WITH noise")
    res = hub.execute("PROBE MODELS WHERE name = 'quad' WITH noise")
    assert "all selected models are probed" in res.message
    res = hub.execute("FIND LOGITS LIKE quad.logit[0] WHERE tree = 'mine' TOP 3")
    assert len(res) == 0 and "no model matches WHERE tree = 'mine'" in res.message
    assert "no model in the gallery is probed" not in res.message
    res = hub.execute("FIND LOGITS LIKE IMAGES :p WHERE tree = 'mine'", {"p": str(d / "noise.npy")})
    assert len(res) == 0 and "no model matches WHERE tree = 'mine'" in res.message


def test_teacher_named_unquoted_and_announced(qhub):
    hub, d, _ = qhub
    hub.execute(f"CREATE PROBE SET noise FROM '{d}/noise.npy'")
    res = hub.execute("FIND LOGITS RECOGNIZING 'top left' USING ALIGNER teacher:quad TOP 2")
    assert "teacher quad chosen by USING ALIGNER; its own logits are excluded from the results" in res.message
    assert {r[1] for r in res.rows} == {"perm"}
    res = hub.execute("FIND LOGITS RECOGNIZING 'top left' USING ALIGNER teacher TOP 2")
    assert ("teacher quad chosen by USING ALIGNER teacher (quad is the labelled classifier with the most "
            "classes, already probed ones first; name another with USING ALIGNER teacher:<model>)") in res.message
    assert "excluded from the results" in res.message
    with pytest.raises(BindError, match="cannot be a teacher"):
        hub.execute("FIND LOGITS RECOGNIZING 'x' USING ALIGNER teacher:perm")


def test_probe_set_from_class_folders_has_captions(qhub):
    hub, d, perm = qhub
    rng = np.random.default_rng(2)
    for cls, (r0, c0) in {"top_left": (0, 0), "bottom-right": (4, 4)}.items():
        for i in range(6):
            a = rng.integers(0, 40, (8, 8))
            a[r0:r0 + 4, c0:c0 + 4] = 250
            _png(d / "classes" / cls / f"{i}.png", a)
    res = hub.execute(f"CREATE PROBE SET cls FROM '{d}/classes/'")
    assert "captions from the 2 class folder names" in res.message and res.rows[0][3] is True
    desc = dict(hub.execute("DESCRIBE PROBE SET cls").rows)
    assert desc["captions"] == "12 of 12 (from the class folder names)" and desc["caption_values"] == "bottom right, top left"
    # RECOGNIZING works through the captions, no captions.csv needed
    res = hub.execute("FIND LOGITS RECOGNIZING 'top left' USING ALIGNER captions WITH PROBES cls TOP 2")
    assert "captions" in res.message and {(r[1], r[2]) for r in res.rows} == {("quad", 0), ("perm", perm.index(0))}


def test_find_like_images_planted(qhub):
    """Example images bright in the top-right quadrant: quad.tr and perm's logit for quadrant 1 come first."""
    hub, d, perm = qhub
    hub.execute(f"CREATE PROBE SET noise FROM '{d}/noise.npy'")
    rng = np.random.default_rng(3)
    for i in range(5):
        a = rng.integers(0, 60, (8, 8))
        a[0:4, 4:8] = 255
        _png(d / "examples" / f"e{i}.png", a)
    plan = hub.explain(f"FIND LOGITS LIKE IMAGES '{d}/examples/' TOP 2")
    assert "ExampleSearch: target=logits" in plan and "n_examples=5" in plan and "forward_passes=10" in plan
    assert "ProbeModels: probe_set=noise models=2" in plan
    res = hub.execute(f"FIND LOGITS LIKE IMAGES '{d}/examples/' TOP 2")
    assert res.columns[:6] == ["rank", "model", "logit", "label", "score", "hit_rate"]
    assert {(r[1], r[2]) for r in res.rows} == {("quad", 1), ("perm", perm.index(1))}
    assert all(r[4] > 1.0 and r[5] == 1.0 for r in res.rows)
    assert "responding to 5 example images" in res.message
    res = hub.execute(f"FIND MODELS LIKE IMAGES '{d}/examples/' TOP 5")
    assert [r[1] for r in res.rows] == sorted([r[1] for r in res.rows], key=lambda n: -dict(
        (x[1], x[4]) for x in res.rows)[n]) and {r[1] for r in res.rows} == {"quad", "perm"}
    with pytest.raises(BindError, match="example images not found"):
        hub.execute("FIND LOGITS LIKE IMAGES 'nope/'")
