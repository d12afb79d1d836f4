"""Issue 18, defects 4 and 5: sizes given by the user (TOP, LIMIT) are clamped to what the
data holds before anything is allocated, and impossible sizes are clear errors."""
import time
import tracemalloc

import numpy as np
import pytest

from zooql.errors import BindError, ParseError

torch = pytest.importorskip("torch")


def _model(path, n_out, seed):
    rng = np.random.default_rng(seed)
    lin = torch.nn.Linear(64, n_out)
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(rng.normal(size=(n_out, 64)) / 8, dtype=torch.float32))
    torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), lin)).save(str(path))
    return str(path)


@pytest.fixture
def probed(hub, tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "probes.npy", rng.integers(0, 256, (20, 8, 8), dtype=np.uint8))
    for name, n_out in (("a", 4), ("b", 3)):
        src = _model(tmp_path / f"{name}.pt", n_out, ord(name))
        hub.execute(f"ADD MODEL 'torchscript:{src}' AS {name} WITH (input_size = 8, channels = 1, "
                    f"mean = (0.5), std = (0.5))")
    hub.execute(f"CREATE PROBE SET ps FROM '{tmp_path}/probes.npy'")
    hub.execute("PROBE MODELS WITH ps")
    return hub


@pytest.mark.parametrize("top", [2147483648, 100000000])
def test_find_top_is_clamped_to_the_gallery(probed, top):
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        logits = probed.execute(f"FIND LOGITS LIKE a.logit[0] TOP {top}")
        models = probed.execute(f"FIND MODELS LIKE a TOP {top}")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(logits) == 3            # every logit of b (a's own are not answers), not TOP rows
    assert len(models) == 1
    assert peak < 64 * 2 ** 20, f"peak traced allocation {peak / 2 ** 20:.0f} MiB"
    assert time.perf_counter() - t0 < 20


def test_find_top_beyond_64_bits_is_a_bind_error(probed):
    with pytest.raises(BindError, match="out of range"):
        probed.execute("FIND LOGITS LIKE a.logit[0] TOP 999999999999999999999999999999")


def test_builtin_probe_set_limit_is_bounded(hub):
    with pytest.raises(BindError, match="at most 4096"):
        hub.execute("CREATE PROBE SET big FROM 'builtin' LIMIT 1000000000")
    assert hub.execute("SHOW MODELS").rows == []


def test_file_probe_set_limit_takes_what_the_file_holds(hub, tmp_path):
    np.save(tmp_path / "p.npy", np.zeros((5, 8, 8), np.uint8) + np.arange(5)[:, None, None].astype(np.uint8))
    res = hub.execute(f"CREATE PROBE SET p FROM '{tmp_path}/p.npy' LIMIT 1000000000")
    assert "5" in res.message


def test_number_overflow_and_depth_are_parse_errors(hub):
    with pytest.raises(ParseError, match="out of range"):
        hub.execute("ADD MODEL 'hf:x' AS x WITH (downloads = 1e309)")
    with pytest.raises(ParseError, match="nested too deeply"):
        hub.execute("SHOW MODELS WHERE " + "(" * 300 + "tree = 'x'" + ")" * 300)
    with pytest.raises(ParseError, match="nested too deeply"):
        hub.execute("SHOW MODELS WHERE " + "NOT " * 1000 + "tree = 'x'")
    assert hub.execute("SHOW MODELS WHERE " + "(" * 80 + "tree = 'x'" + ")" * 80).rows == []
    with pytest.raises(ParseError, match="EXPLAIN cannot explain an EXPLAIN"):
        hub.execute("EXPLAIN EXPLAIN SHOW MODELS")
    with pytest.raises(ParseError, match="whole number >= 1"):
        hub.execute("DISCOVER BEST 0.0 IN TREE t ON d BUDGET 3")
    with pytest.raises(BindError, match="out of range"):
        hub.execute("SHOW MODELS LIMIT 99999999999999999999999")
