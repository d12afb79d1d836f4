"""The standing fuzz suite (issue 18): a short, fixed-seed run of zooql.testing.fuzz.

Asserts that only ZooQLError subclasses escape, that no statement runs over 10 s, and that
no failed statement changes a catalog table (row counts and content hash) or a file of
the hub. The long run is ``benchmarks/fuzz.py --n 100000``. ``ZOOQL_FUZZ_N`` changes the
size of the short run (default 700 generated texts: about 50 s on the shared 2-core
machine under load, where 2000 took over 110 s).
"""
import os
from pathlib import Path

import pytest

from zooql.errors import BindError
from zooql.testing import fuzz

ROOT = Path(__file__).resolve().parents[2]
N = int(os.environ.get("ZOOQL_FUZZ_N", "700"))


def test_seeds_cover_goldens_and_docs():
    seeds = fuzz.seed_statements(ROOT)
    assert len(seeds) > 60
    text = "\n".join(seeds)
    for kw in ("IMPORT EVALUATIONS", "CREATE TASK", "FIND", "DISCOVER", "RECOMMEND", "RANK MODELS",
               "CREATE SEMANTIC GRAPH", "EXPLAIN", "SHOW MODELS WHERE"):
        assert kw in text


def test_mutator_is_deterministic_and_mutates():
    seeds = fuzz.seed_statements(ROOT)
    m1, m2 = fuzz.Mutator(seeds, 7), fuzz.Mutator(seeds, 7)
    texts1 = [m1.case().text for _ in range(200)]
    texts2 = [m2.case().text for _ in range(200)]
    assert texts1 == texts2
    assert sum(t not in seeds for t in texts1) > 150


def test_checks_catch_a_crash_and_a_change(tmp_path):
    """The harness itself: a planted non-ZooQL exception is a crash, a changed table shows."""
    import zooql

    rep = fuzz.Report()
    fuzz._record(rep, ValueError("boom"), 0.1, False, [fuzz.Case("SHOW MODELS")], 10.0)
    fuzz._record(rep, BindError("fine"), 11.0, False, [fuzz.Case("SHOW TREES")], 10.0)
    assert [c[0] for c in rep.crashes] == ["ValueError"] and len(rep.hangs) == 1
    with zooql.connect(tmp_path / "hub") as hub:
        before = fuzz.snapshot(hub)
        hub.execute("ADD MODEL 'hf:x' AS x")
        after = fuzz.snapshot(hub)
        assert before != after and "models" in fuzz._diff(before, after)
        (Path(hub.path) / "stray.bin").write_bytes(b"x")
        assert "stray.bin" in fuzz._diff(after, fuzz.snapshot(hub))


def test_short_fuzz_run(tmp_path):
    rep = fuzz.run(N, seed=18, root=ROOT, workdir=str(tmp_path))
    assert rep.texts == N and rep.n >= N
    assert rep.outcomes["ParseError"] and rep.outcomes["BindError"] and rep.outcomes["ok"]
    assert not rep.crashes, f"non-ZooQL exceptions: {rep.crashes[:5]}"
    assert not rep.hangs, f"statements over 10 s: {rep.hangs[:5]}"
    assert not rep.changes, f"failed statements that changed the hub: {rep.changes[:5]}"
