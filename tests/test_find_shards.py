"""Sharded FIND without Ray: the shard plan, the exact merge of per-shard top-k (ties
included), tombstones, and FIND with ``SET find_shards`` on the local executor returning
exactly the unsharded exact result (Ray: tests/test_ray.py)."""
from __future__ import annotations

import numpy as np
import pytest

import zooql
from zooql.methods.probelog import find_shards as FS
from zooql.methods.probelog import kernels as PL
from zooql.methods.probelog.descriptors import DescriptorMatrix
from zooql.runtime import shards as SH


class _Ctx:
    def __init__(self, **settings):
        self.settings = settings

    def setting(self, key, default=None):
        return self.settings.get(key, default)


def test_plan_shards_covers_every_column_once():
    sizes = [7, 0, 3, 12, 1]
    for n in (1, 2, 3, 5, 23, 40):
        shards = SH.plan_shards(sizes, n)
        assert len(shards) == min(n, sum(sizes))
        cols = [(s, c) for sh in shards for s, a, b in sh for c in range(a, b)]
        assert cols == [(s, c) for s, L in enumerate(sizes) for c in range(L)]
        lens = [sum(b - a for _, a, b in sh) for sh in shards]
        assert max(lens) - min(lens) <= 1


def test_merge_topk_breaks_ties_by_id():
    parts = [(np.array([9, 4]), np.array([1.0, 2.0])), (np.array([3, 8, 5]), np.array([1.0, 2.0, 2.0])),
             (np.array([], np.int64), np.array([]))]
    ids, d = SH.merge_topk(parts, 4)
    assert ids.tolist() == [3, 9, 4, 5] and d.tolist() == [1.0, 1.0, 2.0, 2.0]
    assert SH.merge_topk([], 3)[0].size == 0


def test_shard_count_rule():
    mb = 1 << 20
    assert SH.shard_count(10 * mb, executor="local", workers=1, forced=None, limit_mb=1) == 0   # local: never auto
    assert SH.shard_count(10 * mb, executor="ray", workers=2, forced=None, limit_mb=20) == 0    # fits one worker
    assert SH.shard_count(10 * mb, executor="ray", workers=2, forced=None, limit_mb=3) == 4     # ceil(10/3)
    assert SH.shard_count(10 * mb, executor="ray", workers=8, forced=None, limit_mb=3) == 8     # every worker
    assert SH.shard_count(1, executor="local", workers=1, forced=3, limit_mb=None) == 3
    assert SH.shard_count(10 * mb, executor="ray", workers=2, forced=0, limit_mb=1) == 0


DEAD = [3, 210, 235, 241]


def _store(tmp_path, rng):
    """Three segments with duplicated columns (exact ties across shards) and tombstones."""
    n = 24
    dm = DescriptorMatrix.create(str(tmp_path / "d"), n_probes=n)
    base = PL.zscore_columns(rng.normal(size=(n, 200)))
    dm.append_columns(base)                                    # sizes 200, 40, 8: not merged
    dm.append_columns(np.concatenate([base[:, :30], PL.zscore_columns(rng.normal(size=(n, 10)))], axis=1))
    dm.append_columns(base[:, 5:13])
    dm.delete_columns(DEAD)
    return dm, base


@pytest.mark.parametrize("n_shards", [1, 2, 3, 7])
def test_sharded_scan_equals_the_exact_scan(tmp_path, n_shards):
    rng = np.random.default_rng(1)
    dm, base = _store(tmp_path, rng)
    assert dm.n_segments == 3
    q = base[:, 7] + 0.01 * rng.normal(size=base.shape[0]).astype(np.float32)
    gallery = np.setdiff1d(dm.column_ids(), [11, 206])
    for kp, top in ((8, 30), (None, 55), (24, 200)):
        want = (PL.full_search(q, dm, top, candidates=gallery) if kp is None
                else PL.asymmetric_search(q, dm, kp, top, candidates=gallery))
        (ids, d), info = FS.search(_Ctx(), dm, q, kp, top, gallery, forced=n_shards, limit_mb=None)
        assert info == {"executor": "local", "shards": n_shards, "workers": 1}
        assert ids.tolist() == want[0].tolist()                 # same ids, same order (ties by id)
        assert d.tolist() == want[1].tolist()                   # bit-identical distances
        assert len(set(np.round(d, 9))) < len(d)                # the store has ties
        assert not set(ids.tolist()) & (set(DEAD) | {11, 206})  # tombstoned and filtered out


def test_held_pieces_are_kept_and_replaced(tmp_path):
    dm, _ = _store(tmp_path, np.random.default_rng(2))
    SH.HELD.clear()
    seg = list(dm.segment_files())[0]
    args = {"q": np.ones(dm.n_probes, np.float32), "kp": 4, "top": 3, "n_probes": dm.n_probes, "dtype": "float16",
            "keep_bytes": 1 << 20, "plan": [seg[0].path],
            "pieces": [{"path": seg[0].path, "header": seg[1], "n_cols": seg[2], "start": 0, "stop": 10}]}
    loads = SH.HELD.loads
    a = FS.scan_shard(None, {}, args)
    b = FS.scan_shard(None, {}, args)
    assert SH.HELD.loads == loads + 1 and len(SH.HELD.keys()) == 1   # loaded once, kept
    assert [x.tolist() for x in a[0]] == [x.tolist() for x in b[0]]
    FS.scan_shard(None, {}, dict(args, plan=["elsewhere/seg.npy"], keep_bytes=1 << 20,
                                 pieces=[dict(args["pieces"][0], stop=5)]))
    assert len(SH.HELD.keys()) == 2           # another matrix's plan does not drop this one's pieces
    FS.scan_shard(None, {}, dict(args, plan=[seg[0].path + ".new"]))
    assert all(k[0] != seg[0].path or k[4] == 10 for k in SH.HELD.keys())
    SH.HELD.clear()


@pytest.fixture(scope="module")
def probed_hub(tmp_path_factory):
    pytest.importorskip("torch")
    from zooql.testing.zoo import build_zoo

    tmp = tmp_path_factory.mktemp("shards")
    zoo = build_zoo(tmp / "zoo", n_models=24, n_probes=32)
    h = zooql.connect(str(tmp / "hub"))
    h.execute("SET inspect_workers = 1")
    h.execute(f"ADD MODELS FROM '{zoo['models_csv']}'")
    h.execute(f"CREATE PROBE SET ps FROM '{zoo['probes']}'")
    h.execute("PROBE MODELS WHERE name < 'm12' WITH ps")
    h.execute("PROBE MODELS WITH ps")      # two segments
    yield h
    h.close()


def test_find_with_find_shards_equals_local_exact(probed_hub):
    h = probed_hub
    queries = ["FIND LOGITS LIKE m00.logit[1] WITH PROBES ps TOP 30",
               "FIND LOGITS LIKE m05.logit[0] WITH PROBES ps TOP 7 WHERE name > 'm03'",
               "FIND LOGITS LIKE m02.logit[2] WITH PROBES ps TOP 12 OPTIONS (method = 'full')"]
    h.execute("SET find_shards = 0")
    want = [h.execute(q).rows for q in queries]
    h.execute("SET find_shards = 3")
    try:
        plan = h.explain(queries[0]).splitlines()[0]
        assert plan.endswith("executor=local shards=3 workers=1"), plan
        for q, w in zip(queries, want):
            res = h.execute(q)
            assert res.rows == w
            assert "exact scan over 3 shards on the local executor" in res.message
        h.execute("DROP MODEL m07")          # tombstoned columns: excluded as in the local path
        h.execute("SET find_shards = 0")
        want = h.execute(queries[0]).rows
        h.execute("SET find_shards = 5")
        got = h.execute(queries[0]).rows
        assert got == want and "m07" not in {r[1] for r in got}
    finally:
        h.execute("SET find_shards = NULL")
    assert "shards=" not in h.explain(queries[0])       # local executor, no setting: unsharded
