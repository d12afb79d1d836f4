"""CREATE TASK t FROM IMAGES 'folder' LIMIT n [SEED s]: a random sample, stratified over the
class sub-folders (issue 17: DCD's Eq. 4 averages over i.i.d. task images; the first n
files in sorted order were the first class only)."""
import json
from collections import Counter

import numpy as np
import pytest

import zooql
from zooql.core.sampling import describe_sample, sample_folder, stratified_counts
from zooql.errors import BindError, ExecutionError

Image = pytest.importorskip("PIL.Image")


def _folder(root, sizes):
    for cls, n in sizes.items():
        d = root / cls if cls else root
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(np.full((4, 4, 3), i * 10, dtype=np.uint8)).save(d / f"{i:02d}.png")
    return root


def test_stratified_counts_hand_computed():
    rng = np.random.default_rng(0)
    # quotas 4 * (5, 3, 2) / 10 = 2.0, 1.2, 0.8: floors 2, 1, 0; the one left goes to 0.8
    assert stratified_counts([5, 3, 2], 4, rng) == [2, 1, 1]
    # 10 * (6, 3, 1) / 10: exact
    assert stratified_counts([6, 3, 1], 10, rng) == [6, 3, 1]
    assert stratified_counts([6, 3, 1], 50, rng) == [6, 3, 1]            # capped at the folder
    assert sum(stratified_counts([3, 3, 3], 2, rng)) == 2


def test_sample_is_random_stratified_and_seeded(tmp_path):
    root = _folder(tmp_path / "d", {"a": 5, "b": 3, "c": 2})
    classes, chosen, sample = sample_folder(str(root), 4, 3)
    assert classes == ["a", "b", "c"] and sample["strata"] == {"a": 2, "b": 1, "c": 1}
    assert sample["of"] == 10 and sample["seed"] == 3 and len(set(chosen)) == 4
    assert Counter(p.split("/")[0] for p in chosen) == {"a": 2, "b": 1, "c": 1}
    assert chosen == sorted(chosen) and all((root / p).is_file() for p in chosen)
    assert sample_folder(str(root), 4, 3)[1] == chosen                    # reproducible
    assert len({tuple(sample_folder(str(root), 4, s)[1]) for s in range(10)}) > 1
    assert describe_sample(sample) == "4 of 10 (seed 3; strata a 2, b 1, c 1)"
    # without LIMIT: every image, sorted, no sample
    assert sample_folder(str(root), None)[1:] == ([f"{c}/{i:02d}.png" for c, n in (("a", 5), ("b", 3), ("c", 2))
                                                   for i in range(n)], {})


def test_one_image_of_equal_classes_is_a_uniform_class(tmp_path):
    root = _folder(tmp_path / "d", {"a": 4, "b": 4, "c": 4})
    picks = Counter(sample_folder(str(root), 1, s)[1][0].split("/")[0] for s in range(300))
    assert set(picks) == {"a", "b", "c"}
    assert all(60 <= v <= 140 for v in picks.values()), picks          # 100 expected each
    files = Counter(sample_folder(str(root), 1, s)[1][0] for s in range(300))
    assert len(files) == 12                                             # every image can be drawn


def test_create_task_limit_seed_through_the_language(tmp_path):
    labelled = _folder(tmp_path / "pets", {"cat": 6, "dog": 2})
    flat = _folder(tmp_path / "flat", {"": 5})
    hub = zooql.connect(tmp_path / "hub")
    q = f"CREATE TASK pets FROM IMAGES '{labelled}' LIMIT 4 SEED 5"
    plan = hub.explain(q)
    assert "limit=4 seed=5" in plan and "4 of 8 (seed 5; strata cat 3, dog 1)" in plan
    res = hub.execute(q)
    assert "random sample 4 of 8 (seed 5; strata cat 3, dog 1)" in res.message
    with hub.store.read() as con:
        ids = [r[0] for r in con.execute("SELECT query_id FROM task_queries WHERE task = 'pets' ORDER BY idx").fetchall()]
        info = json.loads(con.execute("SELECT info FROM tasks WHERE name = 'pets'").fetchone()[0])
    assert ids == sample_folder(str(labelled), 4, 5)[1]
    assert info["sample"] == {"limit": 4, "seed": 5, "of": 8, "strata": {"cat": 3, "dog": 1}}
    # LIMIT without SEED: seed 0; an unlabelled folder is sampled too
    hub.execute(f"CREATE TASK f FROM IMAGES '{flat}' LIMIT 2")
    with hub.store.read() as con:
        ids = [r[0] for r in con.execute("SELECT query_id FROM task_queries WHERE task = 'f' ORDER BY idx").fetchall()]
    assert ids == sample_folder(str(flat), 2, 0)[1] and len(ids) == 2
    assert "2 of 5 (seed 0)" in hub.explain(f"CREATE TASK f FROM IMAGES '{flat}' LIMIT 2")
    with pytest.raises(BindError, match="SEED draws the random sample of LIMIT n"):
        hub.execute(f"CREATE TASK g FROM IMAGES '{flat}' SEED 1")
    (tmp_path / "q.jsonl").write_text('{"id": "a", "answer": 1}\n')
    with pytest.raises(ExecutionError, match="SEED draws a random sample of an image folder"):
        hub.execute(f"CREATE TASK j FROM '{tmp_path / 'q.jsonl'}' LIMIT 1 SEED 1")
    hub.close()
