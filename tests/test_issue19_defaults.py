"""Issue 19 item 11: honest defaults (random-init weights, assumed TorchScript preprocessing, --trust help)."""
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from conftest import ROOT


def test_random_init_timm_is_said(hub):
    pytest.importorskip("timm")
    res = hub.execute("ADD MODEL 'timm:resnet10t' AS r WITH (num_classes = 3, input_size = 32)")
    assert res.message == "added model r: random-init weights (no checkpoint given)"
    desc = dict(hub.execute("DESCRIBE MODEL r").rows)
    assert desc["weights"] == "random-init weights (no checkpoint given)"


def test_torchscript_preprocess_defaults_shown(hub, tmp_path):
    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(12, 3))
    torch.jit.script(net).save(str(tmp_path / "m.pt"))
    res = hub.execute(f"ADD MODEL 'torchscript:{tmp_path}/m.pt' AS m WITH (input_size = 16)")
    assert "added model m: preprocessing defaults applied (channels=3, mean=[0.485, 0.456, 0.406], " \
           "std=[0.229, 0.224, 0.225], interpolation=bilinear;" in res.message
    assert "input_size" not in res.message.split("applied (")[1].split(";")[0]
    desc = dict(hub.execute("DESCRIBE MODEL m").rows)
    assert desc["weights"] == "weights inside the TorchScript file"
    assert desc["preprocess_defaults"].startswith("channels=3, mean=")
    res = hub.execute(f"ADD MODEL 'torchscript:{tmp_path}/m.pt' AS m2 WITH (input_size = 16, channels = 3, "
                      f"mean = (0.5, 0.5, 0.5), std = (0.5, 0.5, 0.5), interpolation = 'bicubic')")
    assert res.message == "added model m2"
    assert "preprocess_defaults" not in dict(hub.execute("DESCRIBE MODEL m2").rows)


def test_trust_help_says_what_it_allows():
    out = subprocess.run([sys.executable, "-m", "zooql", "--help"], capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "COLUMNS": "200"})
    text = " ".join(out.stdout.split())
    assert "--trust run user Python code: 'python:<module>:<factory>' model sources and 'python:...' task " \
           "evaluators (same as SET trust_code = true); checkpoints always load without code" in text
