"""FIND as a relation of a SELECT (tiny TorchScript models; the issue's FIND + models +
evaluations example): the FIND sub-plan runs first (probing the teacher on demand, a
write), its rows join the catalog relations, EXPLAIN shows both parts."""
import numpy as np
import pytest

import zooql
from zooql.testing.zoo import save_linear as _save

torch = pytest.importorskip("torch")

GREY = "input_size = 8, channels = 1, mean = (0.5), std = (0.5)"
PERM = [3, 1, 0, 2]   # student logit i = teacher logit PERM[i]


@pytest.fixture()
def hub(tmp_path):
    rng = np.random.default_rng(0)
    wt, bt = rng.normal(size=(4, 64)) / 8, rng.normal(size=4) / 10
    teacher = _save(wt, bt, tmp_path / "teacher.pt")
    student = _save(wt[PERM], bt[PERM], tmp_path / "student.pt")
    other = _save(rng.normal(size=(5, 64)) / 8, np.zeros(5), tmp_path / "other.pt")
    np.save(tmp_path / "probes.npy", rng.integers(0, 256, (40, 8, 8), dtype=np.uint8))
    (tmp_path / "evals.csv").write_text("model,dataset,metric,score\nstudent,imagenet,top1,0.61\n"
                                        "student,imagenet,top5,0.9\nother,imagenet,top1,0.5\n")
    h = zooql.connect(tmp_path / "hub")
    h.execute(f"ADD MODEL 'torchscript:{teacher}' AS teacher LABELS ('cat', 'dog', 'car', 'tree') "
              f"WITH ({GREY}, downloads = 90000, license = 'apache-2.0')")
    h.execute(f"ADD MODEL 'torchscript:{student}' AS student WITH ({GREY}, downloads = 5, license = 'apache-2.0')")
    h.execute(f"ADD MODEL 'torchscript:{other}' AS other WITH ({GREY}, downloads = 7, license = 'mit')")
    h.execute(f"CREATE PROBE SET ps FROM '{tmp_path}/probes.npy'; IMPORT EVALUATIONS FROM 'evals.csv'",
              base_dir=str(tmp_path))
    return h


QUERY = """SELECT f.model, f.logit, f.score, m.downloads, e.score AS imagenet_top1
  FROM (FIND MODELS RECOGNIZING 'dog' USING ALIGNER teacher TOP 20) AS f
  JOIN models m ON m.name = f.model
  LEFT JOIN evaluations e ON e.model = f.model AND e.dataset = 'imagenet' AND e.metric = 'top1'
  WHERE m.tags.license = 'apache-2.0' ORDER BY f.score DESC"""


def test_find_joined_with_models_and_evaluations(hub):
    plan = hub.explain(QUERY).splitlines()
    assert plan[0].startswith("DuckDBQuery: relations=[models, evaluations, __sub1] sql=(SELECT f.model")
    assert plan[1] == "  StatementRelation: relation=__sub1"
    assert any("TextQuery: aligner=teacher model=teacher" in x for x in plan[2:])
    assert any("models=3" in x for x in plan[2:])      # the FIND plan's probing cost shows under the query
    res = hub.execute(QUERY)
    rows = res.to_dicts()
    assert res.columns == ["model", "logit", "score", "downloads", "imagenet_top1"]
    # the student's logit PERM.index(1) is the teacher's 'dog'; 'other' is filtered out by its license
    assert rows[0] == {**rows[0], "model": "student", "logit": PERM.index(1), "downloads": 5, "imagenet_top1": 0.61}
    assert {r["model"] for r in rows} == {"student"}
    again = hub.execute(QUERY).to_dicts()      # the teacher is probed now: a read-only run, same rows
    assert again == rows
