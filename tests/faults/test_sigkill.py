"""The fault suite (issue 18): SIGKILL at random points of ADD MODELS, IMPORT, PROBE, DISCOVER,
REFRESH DESCRIPTORS, TRAIN RECOMMENDER and VACUUM, two kills each (fixed seeds); after each: the hub opens, no half rows,
no catalog row points to a missing or damaged file (CHECK HUB), the rerun resumes and ends
where an uninterrupted run does, and leaves no orphan or temporary file.
``benchmarks/faults.py --kills 10`` is the long run."""
from __future__ import annotations

import pytest

from zooql.testing import faults as F

pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")

KILLS = 2


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    from zooql.testing.zoo import build_zoo

    return build_zoo(tmp_path_factory.mktemp("faultzoo"), n_models=8, n_eval_rows=100_000)


@pytest.mark.parametrize("name", list(F.SCENARIOS))
def test_sigkill_mid_statement(name, zoo, tmp_path):
    sc = F.SCENARIOS[name]
    t = F.make_template(sc, tmp_path, zoo)
    assert t.expected != F._start_state(t), "the statement must write something"
    results = [F.run_kill_mid_way(t, tmp_path, d) for d in F.delays(sc, KILLS, seed=list(F.SCENARIOS).index(name))]
    for r in results:
        assert r.problems == [], (r.delay, r.problems)
    assert all(r.killed for r in results), [(r.delay, r.killed) for r in results]
