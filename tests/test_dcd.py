"""DCD (Directional Conductance Divergence): Eq. 5-11 by hand, conductance against captum
called directly, and the planted case through the numerical API."""
import math

import numpy as np
import pytest

from zooql.methods.dcd import conductance as D

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")
captum_attr = pytest.importorskip("captum.attr")

VIT = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 3, "width": 32, "patch_size": 16, "head_width": 16},
       "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
RN = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "patch_size": None,
                                      "head_width": 8},
      "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def register_tiny_configs(folder):
    """Register the tiny random-init open_clip architectures used by the DCD tests."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zooql-test-dcd-vit.json").write_text(json.dumps(VIT))
    (folder / "zooql-test-dcd-rn.json").write_text(json.dumps(RN))
    open_clip.add_model_config(str(folder))


def tiny_model(arch, seed):
    torch.manual_seed(seed)
    model, _, _ = open_clip.create_model_and_transforms(arch)
    return model.eval()


@pytest.fixture(scope="module")
def archs(tmp_path_factory):
    register_tiny_configs(tmp_path_factory.mktemp("cfg"))
    return "zooql-test-dcd-vit", "zooql-test-dcd-rn"


# ---- Eq. 5-11 on arrays computed by hand ---------------------------------------------------------

def test_normalisation_eq5():
    np.testing.assert_allclose(D.normalise([3.0, 4.0]), [0.6, 0.8])            # ||(3, 4)|| = 5
    np.testing.assert_allclose(D.normalise([0.0, 0.0]), [0.0, 0.0])            # max(0, eps) keeps zeros
    np.testing.assert_allclose(D.normalise([2e-9, 0.0], eps=1e-8), [0.2, 0.0])  # divided by eps, not by 2e-9


def test_importance_softmax_with_eta_eq6_7():
    # eta * u = (1.2, 1.6): alpha_1 = 1 / (1 + e^0.4) = 0.4013123, alpha_2 = 0.5986877
    np.testing.assert_allclose(D.importance([3.0, 4.0], eta=2.0), [0.4013123, 0.5986877], atol=1e-7)
    np.testing.assert_allclose(D.importance([3.0, 4.0], eta=0.0), [0.5, 0.5])  # eta = 0: uniform
    # a larger eta sharpens towards the largest block: 1 / (1 + e^{-20 * 0.2}) = 0.9820138
    assert D.importance([3.0, 4.0], eta=20.0)[1] == pytest.approx(0.9820138, abs=1e-7)


def test_directional_divergence_eq8_is_asymmetric():
    # tau = (3, 4), sigma = (6, 2): relative gaps |3-6|/3 = 1 and |4-2|/4 = 0.5
    # D = 0.4013123 * 1 + 0.5986877 * 0.5 = 0.7006562
    assert D.divergence([3.0, 4.0], [6.0, 2.0], eta=2.0) == pytest.approx(0.7006562, abs=1e-7)
    # reversed: u = (6, 2)/sqrt(40); alpha_1 = 1/(1 + e^{-2*4/sqrt(40)}) = 0.7798704
    # D = 0.7798704 * |6-3|/6 + 0.2201296 * |2-4|/2 = 0.3899352 + 0.2201296 = 0.6100648
    assert D.divergence([6.0, 2.0], [3.0, 4.0], eta=2.0) == pytest.approx(0.6100648, abs=1e-7)
    assert D.divergence([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 0.0
    with pytest.raises(ValueError):
        D.divergence([1.0, 2.0], [1.0, 2.0, 3.0])


def test_softmin_weights_with_gamma_eq9_10():
    # gamma * D = (0, 1): w = (1, e^-1) / (1 + e^-1) = (0.7310586, 0.2689414)
    np.testing.assert_allclose(D.source_weights([0.0, 0.2], gamma=5.0), [0.7310586, 0.2689414], atol=1e-7)
    np.testing.assert_allclose(D.source_weights([0.0, 0.2], gamma=0.0), [0.5, 0.5])
    # a source the model has no rank on gets no weight; the rest renormalise
    np.testing.assert_allclose(D.source_weights([0.0, math.nan, 0.2], gamma=5.0), [0.7310586, 0.0, 0.2689414],
                               atol=1e-7)


def test_predicted_rank_is_weighted_mean_of_true_ranks_eq11():
    # 0.7310586 * 1 + 0.2689414 * 3 = 1.5378828
    assert D.predicted_rank([0.7310586, 0.2689414], [1.0, 3.0]) == pytest.approx(1.5378828, abs=1e-6)
    assert D.predicted_rank([0.5, 0.5], [2.0, math.nan]) == 2.0
    # true ranks: 1 = best, ties share the mean rank, no score stays NaN
    np.testing.assert_allclose(D.true_ranks([0.5, 0.9, 0.5, math.nan]), [2.5, 1.0, 2.5, math.nan])


def test_rank_models_by_hand():
    # one model per line; target vector (3, 4); sources s (6, 2) and t (3, 4)
    target = {"a": [3.0, 4.0], "b": [3.0, 4.0]}
    sources = {"s": {"a": [6.0, 2.0], "b": [6.0, 2.0]}, "t": {"a": [3.0, 4.0], "b": [3.0, 4.0]}}
    scores = {"s": {"a": 0.9, "b": 0.1}, "t": {"a": 0.2, "b": 0.8}}   # a: ranks (1, 2); b: ranks (2, 1)
    out = D.rank_models(target, sources, scores, eta=2.0, gamma=5.0)
    # D(s) = 0.7006562, D(t) = 0; w = softmin(5 D): w_t = 1 / (1 + e^{-3.503281}) = 0.9707810
    w_t = 1 / (1 + math.exp(-5 * 0.7006562))
    assert out[0]["model"] == "b" and out[1]["model"] == "a"
    assert out[0]["predicted_rank"] == pytest.approx(w_t * 1 + (1 - w_t) * 2, abs=1e-6)   # 1.0292190
    assert out[1]["predicted_rank"] == pytest.approx(w_t * 2 + (1 - w_t) * 1, abs=1e-6)   # 1.9707810
    assert out[1]["weights"]["t"] == pytest.approx(0.9707810, abs=1e-6)


def test_planted_ranking_numeric():
    """Target = source 'near' for every model, source 'far' is very different: with a large
    gamma the predicted ranking is the ranking on 'near' (known by construction)."""
    rng = np.random.default_rng(3)
    models = [f"m{i}" for i in range(6)]
    near = {m: rng.uniform(0.1, 1.0, 5) for m in models}
    far = {m: near[m] * rng.uniform(3, 6, 5) for m in models}
    scores_near = dict(zip(models, [0.2, 0.9, 0.5, 0.7, 0.1, 0.4]))
    scores_far = {m: 1 - s for m, s in scores_near.items()}
    out = D.rank_models({m: near[m].copy() for m in models}, {"near": near, "far": far},
                        {"near": scores_near, "far": scores_far}, gamma=50.0)
    assert [r["model"] for r in out] == sorted(models, key=lambda m: -scores_near[m])
    assert all(r["weights"]["near"] > 0.99 for r in out)


# ---- conductance (captum) on tiny random-init open_clip models ----------------------------------

def _captum_direct(model, x, steps):
    from captum.attr import LayerConductance

    f = lambda inp: model.encode_image(inp, normalize=False).norm(dim=-1)  # noqa: E731
    blocks = ([model.visual.layer1, model.visual.layer2, model.visual.layer3, model.visual.layer4]
              if hasattr(model.visual, "layer1") else list(model.visual.transformer.resblocks))
    cols, sums = [], []
    for b in blocks:
        a = LayerConductance(f, b).attribute(x, baselines=torch.zeros_like(x), n_steps=steps)
        cols.append(a.detach().abs().flatten(1).mean(1).numpy())
        sums.append(a.detach().flatten(1).sum(1).numpy())
    return np.stack(cols, 1), np.stack(sums, 1), (f(x) - f(torch.zeros_like(x))).detach().numpy()


@pytest.mark.parametrize("which", ["vit", "rn"])
def test_conductance_matches_captum_direct(archs, which):
    arch = archs[0] if which == "vit" else archs[1]
    model = tiny_model(arch, seed=1)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    names = [n for n, _ in D.coarse_blocks(model)]
    assert names == (["transformer.resblocks.0", "transformer.resblocks.1", "transformer.resblocks.2"]
                     if which == "vit" else ["layer1", "layer2", "layer3", "layer4"])
    ours = D.conductance_vectors(model, x, steps=16, batch_size=2)   # two batches: 2 + 1 images
    direct, sums, delta = _captum_direct(model, x, steps=16)
    assert ours.shape == (3, len(names))
    np.testing.assert_allclose(ours, direct, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(D.task_vector(model, x, steps=16), direct.mean(0), rtol=1e-5, atol=1e-9)
    assert not model.training
    if which == "rn":
        # completeness: each stage's signed conductance sums to F(x) - F(baseline)
        np.testing.assert_allclose(sums, np.repeat(delta[:, None], 4, 1), rtol=2e-2)


def test_conductance_needs_visual_blocks():
    from zooql.errors import ExecutionError

    with pytest.raises(ExecutionError, match="no visual encoder"):
        D.coarse_blocks(torch.nn.Linear(2, 2))


def test_vector_fingerprint_tracks_inputs(tmp_path):
    base = D.vector_fingerprint("task-fp", "open_clip:x", None, 50)
    assert base == D.vector_fingerprint("task-fp", "open_clip:x", None, 50)
    assert base != D.vector_fingerprint("task-fp2", "open_clip:x", None, 50)
    assert base != D.vector_fingerprint("task-fp", "open_clip:x", None, 49)
    ck = tmp_path / "w.pt"
    ck.write_bytes(b"1")
    a = D.vector_fingerprint("task-fp", "open_clip:x", str(ck), 50)
    ck.write_bytes(b"22")
    assert a != D.vector_fingerprint("task-fp", "open_clip:x", str(ck), 50)
