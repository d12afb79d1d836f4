"""FIND ... LIKE ... OPTIONS (query = 'full'): a sampled query model is probed on its unobserved
probes and searched with its fully probed descriptor (stored: it is fully probed from then on)."""

import numpy as np
import pytest

from zooql.errors import BindError
from zooql.testing.zoo import save_linear as _save_linear

torch = pytest.importorskip("torch")

GREY = "WITH (input_size = 8, channels = 1, mean = (0.5), std = (0.5))"


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    """3 base models (4 logits) x 4 logit-permuted copies; perm[name] = (base, p): logit i = base logit p[i]."""
    d = tmp_path_factory.mktemp("qcopies")
    rng = np.random.default_rng(3)
    files, perm = {}, {}
    for b in range(3):
        w, bias = rng.normal(size=(4, 64)) / 8, rng.normal(size=4) / 10
        for c in range(4):
            p = rng.permutation(4)
            files[f"m{b}_{c}"] = _save_linear(w[p], bias[p], d / f"m{b}_{c}.pt")
            perm[f"m{b}_{c}"] = (b, p)
    np.save(d / "probes.npy", rng.integers(0, 256, (80, 8, 8), dtype=np.uint8))
    return d, files, perm


@pytest.fixture
def sampled_hub(hub, copies):
    d, files, perm = copies
    for n, f in files.items():
        hub.execute(f"ADD MODEL 'torchscript:{f}' AS {n} {GREY}")
    hub.execute(f"CREATE PROBE SET ps FROM '{d}/probes.npy'")
    hub.execute("PROBE MODELS WHERE name IN ('m0_0', 'm1_0', 'm2_0') WITH ps")   # fully probed anchors
    hub.execute("PROBE WITH ps SAMPLE 30 PERCENT SEED 5")                        # the rest: 24 of 80 probes
    return hub, perm


def _raw(hub, model):
    with hub.store.read() as con:
        r = con.execute("SELECT r.raw_file, r.raw_col, r.n_cols FROM probe_runs r JOIN models m ON m.id = r.model_id "
                        "WHERE m.name = ?", [model]).fetchone()
    from zooql.methods.probelog.store import load_raw
    return load_raw(str(hub.path), *r)


def _twin(perm, model, i, other):
    """The logit of ``other`` that is the same base logit as ``model``'s logit ``i``."""
    return int(np.nonzero(perm[other][1] == perm[model][1][i])[0][0])


def _masked(hub, model):
    with hub.store.read() as con:
        return con.execute("SELECT count(*) FROM probe_masks k JOIN models m ON m.id = k.model_id WHERE m.name = ?",
                           [model]).fetchone()[0]


def test_query_full_probes_the_sampled_query_model_once(sampled_hub):
    hub, perm = sampled_hub
    j = _twin(perm, "m1_2", 0, "m1_0")
    before = {(r[1], r[2]): r[4] for r in hub.execute(f"FIND LOGITS LIKE m1_0.logit[{j}] TOP 20").rows}
    # default: the stored (completed) descriptor, nothing to run, read-only plan
    plan = hub.explain("FIND LOGITS LIKE m1_2.logit[0] TOP 3")
    assert "ProbeQueryFully" not in plan and "descriptor=" not in plan
    assert "descriptor=stored" in hub.explain("FIND LOGITS LIKE m1_2.logit[0] OPTIONS (query = 'stored')")
    assert np.isnan(_raw(hub, "m1_2")).sum() == 56 * 4

    q = "FIND LOGITS LIKE m1_2.logit[0] TOP 3 OPTIONS (query = 'full')"
    plan = hub.explain(q)
    assert "ProbeQueryFully: probe_set=ps model=m1_2 observed=24 forward_passes=56" in plan
    assert "LogitQuery: model=m1_2 logit=0 descriptor=full" in plan
    res = hub.execute(q)
    assert "probed on its 56 unobserved probes" in res.message
    # the raw responses are now real on every probe: the same as its fully probed twin's
    raw = _raw(hub, "m1_2")
    assert np.isfinite(raw).all()
    np.testing.assert_allclose(raw[:, 0], _raw(hub, "m1_0")[:, j], rtol=1e-4, atol=1e-4)
    # searched with the full descriptor: the fully probed twin is (nearly) identical
    top = res.rows[0]
    assert (top[1], top[2]) == ("m1_0", j) and top[4] < 0.05, top
    # stored: mask gone, fully probed from then on, no further probing step
    assert _masked(hub, "m1_2") == 0
    assert "observed_fraction" not in dict((r[0], r[1]) for r in hub.execute("DESCRIBE MODEL m1_2").rows)
    assert "ProbeQueryFully" not in hub.explain(q)
    assert "probed on" not in hub.execute(q).message
    # its gallery descriptor is the real one now (it was completed before), observed = 1.0
    res = hub.execute(f"FIND LOGITS LIKE m1_0.logit[{j}] TOP 20")
    after = {(r[1], r[2]): r[4] for r in res.rows}
    assert after[("m1_2", 0)] < 0.05 and after[("m1_2", 0)] <= before[("m1_2", 0)]
    obs = {r[1]: r[-1] for r in res.rows}
    assert obs["m1_2"] == 1.0 and obs.get("m1_1", 0.3) == 0.3
    # the completion anchors on it: its masked neighbours are untouched
    assert _masked(hub, "m1_1") == 1


def test_query_full_find_models_and_unsampled_models(sampled_hub):
    hub, perm = sampled_hub
    q = "FIND MODELS LIKE m2_1 TOP 2 OPTIONS (query = 'full', method = 'model')"
    plan = hub.explain(q)
    assert "ProbeQueryFully: probe_set=ps model=m2_1" in plan and "ModelQuery: model=m2_1 descriptor=full" in plan
    res = hub.execute(q)
    assert res.rows[0][1] == "m2_0" and res.rows[0][4] < 0.05, res.rows
    assert np.isfinite(_raw(hub, "m2_1")).all()
    # a fully probed query model needs no step: 'full' is its stored descriptor
    plan = hub.explain("FIND LOGITS LIKE m0_0.logit[1] OPTIONS (query = 'full')")
    assert "ProbeQueryFully" not in plan and "descriptor=full" in plan
    a = hub.execute("FIND LOGITS LIKE m0_0.logit[1] TOP 5 OPTIONS (query = 'full')").rows
    b = hub.execute("FIND LOGITS LIKE m0_0.logit[1] TOP 5").rows
    assert a == b


def test_query_option_errors(sampled_hub):
    hub, _ = sampled_hub
    with pytest.raises(BindError, match="option query must be one of stored, full"):
        hub.execute("FIND LOGITS LIKE m1_2.logit[0] OPTIONS (query = 'fully')")
    with pytest.raises(BindError, match="option query applies to LIKE queries"):
        hub.execute("FIND LOGITS RECOGNIZING 'a cat' USING ALIGNER captions OPTIONS (query = 'full')")
