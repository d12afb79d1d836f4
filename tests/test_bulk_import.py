"""Issue 14, bulk registration: ADD MODELS FROM and IMPORT read and check whole columns, name
the first bad row and its line, change nothing when they fail, are idempotent (a rerun of
ADD MODELS skips what it registered; IMPORT ... ON CONFLICT), and an interrupted ADD MODELS
of loadable models resumes from its last committed batch."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import zooql
from conftest import ROOT
from zooql.errors import BindError, ExecutionError
from zooql.testing.faults import running


def _state(hub):
    with hub.store.read() as con:
        return (con.execute("SELECT name, source, checkpoint, loadable, tree, parent, downloads, task, family, "
                            "params, num_logits, input_size, CAST(preprocess AS VARCHAR), CAST(tags AS VARCHAR), "
                            "description FROM models ORDER BY name").fetchall(),
                con.execute("SELECT m.name, l.idx, l.label FROM logits l JOIN models m ON m.id = l.model_id "
                            "ORDER BY 1, 2").fetchall())


def _evals(hub):
    with hub.store.read() as con:
        return con.execute("SELECT * FROM evaluations ORDER BY ALL").fetchall()


# ---- ADD MODELS FROM: errors --------------------------------------------------------------

def test_first_bad_row_and_its_line_are_named_and_nothing_changes(hub, tmp_path):
    hub.execute("ADD MODEL 'hf:o/keep' AS keep")
    before = _state(hub)
    # a blank line and a quoted field over two lines come before the bad row: row 3 is line 6
    (tmp_path / "m.csv").write_text('name,source,downloads,description\na,hf:o/a,1,x\n\nb,hf:o/b,2,"two\nlines"\n'
                                    'c,hf:o/c,many,z\nd,hf:o/d,oops,z\n')
    with pytest.raises(ExecutionError) as exc:
        hub.execute("ADD MODELS FROM 'm.csv'", base_dir=str(tmp_path))
    assert str(exc.value) == f"{tmp_path}/m.csv row 3 (line 6): downloads must be an integer, got 'many'"
    assert _state(hub) == before


@pytest.mark.parametrize("body, message", [
    ("name,source\nx,hf:a\ny,hf:b\nx,hf:c\n", "row 3 (line 4): model 'x' appears twice"),
    ("name,source\nok,hf:a\n,\n", "row 2 (line 3): a model needs a 'source' such as 'timm:resnet18'"),
    ("name,source\nok,hf:a\n\"bad\x01\",hf:b\n", "row 2 (line 3): model name 'bad\\x01' contains the control character"),
    ("name,source,labels\nok,hf:a,[\"x\"\n", "row 1 (line 2): labels '[\"x\"' is not a JSON list"),
    ("name,source,checkpoint\nok,hf:a,\"a\x00b\"\n", "row 1 (line 2): path 'a\\x00b' contains a NUL character"),
])
def test_each_check_names_the_row(hub, tmp_path, body, message):
    (tmp_path / "m.csv").write_text(body)
    with pytest.raises(ExecutionError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("\\x", "\\\\x")):
        hub.execute("ADD MODELS FROM 'm.csv'", base_dir=str(tmp_path))
    assert hub.execute("SHOW MODELS").rows == []


def test_jsonl_rows_lines_and_value_types(hub, tmp_path):
    (tmp_path / "m.jsonl").write_text('{"name": "a", "source": "hf:o/a", "stars": 5, "ratio": "0.5", "card": {"k": 1},'
                                      ' "License": "mit", "labels": ["x", "y"], "downloads": "12"}\n\n'
                                      '{"source": "hf:o/b:rev", "mean": 0.5}\n')
    res = hub.execute("ADD MODELS FROM 'm.jsonl'", base_dir=str(tmp_path))
    assert res.message == "added 2 models" and res.rows == [("a",), ("o/b-rev",)]
    models, logits = _state(hub)
    import json
    a = dict(zip(["name", "source", "checkpoint", "loadable", "tree", "parent", "downloads"], models[0]))
    assert a["downloads"] == 12 and json.loads(models[0][13]) == {"stars": 5, "ratio": 0.5, "card": {"k": 1},
                                                                   "license": "mit"}
    assert json.loads(models[1][12]) == {"mean": 0.5} and logits == [("a", 0, "x"), ("a", 1, "y")]
    (tmp_path / "bad.jsonl").write_text('{"name": "c", "source": "hf:o/c"}\n\n{"name": \n')
    with pytest.raises(ExecutionError, match=r"bad.jsonl:3: invalid JSON"):
        hub.execute("ADD MODELS FROM 'bad.jsonl'", base_dir=str(tmp_path))
    assert len(hub.execute("SHOW MODELS").rows) == 2


def test_file_and_inline_registration_store_the_same_row(hub, tmp_path):
    hub.execute("ADD MODEL 'hf:o/one' AS one WITH (tree = 't', parent = 'p', downloads = 7, task = 'cls', "
                "family = 'f', description = 'd', input_size = 32, license = 'mit', stars = 3)")
    inline = _state(hub)
    hub.execute("DROP MODEL one")
    (tmp_path / "m.csv").write_text("name,source,tree,parent,downloads,task,family,description,input_size,license,stars\n"
                                    "one,hf:o/one,t,p,7,cls,f,d,32,mit,3\n")
    hub.execute("ADD MODELS FROM 'm.csv'", base_dir=str(tmp_path))
    import json
    (a, b) = inline[0][0], _state(hub)[0][0]
    assert a[:12] == b[:12] and json.loads(a[12]) == json.loads(b[12]) and json.loads(a[13]) == json.loads(b[13])


# ---- ADD MODELS FROM: idempotent rerun -----------------------------------------------------

def test_rerun_skips_registered_rows_and_refuses_a_changed_source(hub, tmp_path):
    (tmp_path / "m.csv").write_text("name,source,tree\na,hf:o/a,t\nb,hf:o/b,t\n")
    assert hub.execute("ADD MODELS FROM 'm.csv'", base_dir=str(tmp_path)).message == "added 2 models"
    (tmp_path / "m.csv").write_text("name,source,tree\na,hf:o/a,t\nb,hf:o/b,t\nc,hf:o/c,t\n")
    res = hub.execute("ADD MODELS FROM 'm.csv'", base_dir=str(tmp_path))
    assert res.rows == [("c",)] and res.message == "added model c (2 already registered with the same source, skipped)"
    before = _state(hub)
    (tmp_path / "m.csv").write_text("name,source\nd,hf:o/d\nb,hf:elsewhere/b\n")
    with pytest.raises(ExecutionError, match=r"m.csv row 2 \(line 3\): model 'b' already exists \(registered from "
                                             r"'hf:o/b'\)"):
        hub.execute("ADD MODELS FROM 'm.csv'", base_dir=str(tmp_path))
    assert _state(hub) == before


def test_large_name_only_file_registers_in_seconds(hub, tmp_path):
    n = 50_000
    lines = ["name,source,downloads,license"] + [f"m{i},hf:org/m{i},{i * 7 % 1000},mit" for i in range(n)]
    (tmp_path / "big.csv").write_text("\n".join(lines) + "\n")
    t0 = time.perf_counter()
    res = hub.execute("ADD MODELS FROM 'big.csv'", base_dir=str(tmp_path))
    dt = time.perf_counter() - t0
    assert res.message == f"added {n} models" and len(res.rows) == n
    assert dt < 20, f"{n} name-only rows took {dt:.1f} s (one INSERT per row took ~350 s)"
    hits = hub.execute("SHOW MODELS WHERE license = 'mit' AND downloads = 999").rows
    assert sorted(int(r[0][1:]) % 1000 for r in hits) == [857] * (n // 1000)
    with hub.store.read() as con:  # ids follow the file's order
        ids = con.execute("SELECT id FROM models WHERE name IN ('m0', 'm1', 'm49999') ORDER BY id").fetchall()
        names = con.execute("SELECT name FROM models ORDER BY id LIMIT 3").fetchall()
    assert len(ids) == 3 and names == [("m0",), ("m1",), ("m2",)]
    t0 = time.perf_counter()
    assert hub.execute("ADD MODELS FROM 'big.csv'", base_dir=str(tmp_path)).rows == []
    assert time.perf_counter() - t0 < 20


def test_inspect_settings_are_checked(hub):
    with pytest.raises(BindError, match="inspect_workers is a number of processes, 1 to 1024"):
        hub.execute("SET inspect_workers = 0")
    hub.execute("SET inspect_workers = 2")
    hub.execute("SET inspect_batch = 5")


# ---- ADD MODELS FROM loadable models: pool, batches, resume --------------------------------

@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    pytest.importorskip("torch")
    from zooql.testing.zoo import build_zoo

    return build_zoo(tmp_path_factory.mktemp("bulkzoo"), n_models=8)


CHILD = """
import os, zooql
os.environ["ZOOQL_INSPECT_DELAY"] = "0.5"
h = zooql.connect({hub!r})
h.execute("SET inspect_workers = 2; SET inspect_batch = 2")
print("START", flush=True)
h.execute("ADD MODELS FROM {csv!r}")
print("DONE", flush=True)
"""


def _count(hub_path):
    h = zooql.connect(hub_path)
    try:
        with h.store.read() as con:
            return con.execute("SELECT count(*) FROM models").fetchall()[0][0]
    finally:
        h.close()


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc), e.g. a forkserver and its pool workers."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            kids = []
        out += kids
        todo += kids
    return out


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_killed_add_models_resumes_from_its_last_batch(tmp_path, zoo):
    ref = zooql.connect(tmp_path / "ref")
    ref.execute("SET inspect_workers = 2")
    assert ref.execute(f"ADD MODELS FROM '{zoo['models_csv']}'").message.startswith("added 8 models")
    expected = _state(ref)
    hub = tmp_path / "hub"
    zooql.connect(hub).close()
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CHILD.format(hub=str(hub), csv=zoo["models_csv"]))],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "START", child.stderr.read()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        try:
            if _count(hub) >= 2:       # a batch committed: the reader sees it while the rest inspects
                break
        except Exception:  # noqa: BLE001 - the writer's commit window
            pass
        time.sleep(0.1)
    assert child.poll() is None, "the statement finished before a kill could land mid-way"
    pool = _descendants(child.pid)
    assert pool, "the statement runs its inspections in worker processes"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    deadline = time.monotonic() + 10    # its pool workers (and so the forkserver) end by themselves
    while time.monotonic() < deadline and any(running(p) for p in pool):
        time.sleep(0.1)
    assert [p for p in pool if running(p)] == [], "worker processes outlived the killed statement"
    h = zooql.connect(hub)
    models, logits = _state(h)
    assert 2 <= len(models) < 8 and len(models) % 2 == 0    # whole batches only
    assert all(sum(1 for x in logits if x[0] == m[0]) == m[10] for m in models)   # every model complete
    assert models == [m for m in expected[0] if m[0] in {x[0] for x in models}]
    done = len(models)
    res = h.execute(f"ADD MODELS FROM '{zoo['models_csv']}'")
    assert res.message.startswith(f"added {8 - done} models ({done} already registered with the same source, skipped)")
    assert _state(h) == expected
    assert [r for r in h.execute("CHECK HUB").rows if r[0] == "error"] == []


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_a_failing_model_keeps_the_batches_before_it(tmp_path, zoo):
    lines = open(zoo["models_csv"]).read().splitlines()
    lines.insert(4, "broken,torchscript:no_such_file.pt,,zoo,,1,8,1,0.5,0.5")   # row 4, line 5
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    h = zooql.connect(tmp_path / "hub")
    h.execute("SET inspect_workers = 2; SET inspect_batch = 2")
    with pytest.raises(ExecutionError, match=r"m.csv row 4 \(line 5\): model 'broken': .*\(3 model\(s\) before it "
                                             r"were registered; a rerun skips them\)"):
        h.execute("ADD MODELS FROM 'm.csv'", base_dir=str(tmp_path))
    assert [r[0] for r in h.execute("SHOW MODELS").rows] == ["m00", "m01", "m02"]


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_inspect_many_keeps_input_order(zoo):
    from zooql.runtime.inspect_pool import inspect_many

    paths = [line.split(",")[1] for line in open(zoo["models_csv"]).read().splitlines()[1:5]]
    opts = {"input_size": 8, "channels": 1, "mean": 0.5, "std": 0.5}
    jobs = [{"source": p, "options": opts} for p in paths] + [{"source": "torchscript:/nonexistent.pt"}]
    got = []
    inspect_many(jobs, 2, lambda i, info, err: got.append((i, info and info["num_logits"], type(err).__name__)))
    assert [g[0] for g in got] == [0, 1, 2, 3, 4]
    from zooql.testing.zoo import LABELS

    assert got[:4] == [(i, len(LABELS), "NoneType") for i in range(4)] and got[4][1:] == (None, "ExecutionError")


# ---- IMPORT: vectorised checks, idempotence -------------------------------------------------

@pytest.mark.parametrize("body, message", [
    ("model,dataset,metric,score\na,d,acc,0.5\n\nb,d,acc,high\n", "e.csv line 4: score 'high' is not a number"),
    ("model,dataset,metric,score\na,d,acc,0.5\nb,\"two\nlines\",acc,0.1\n ,d,acc,1\n", "e.csv line 5: no model"),
    ("model,dataset,metric,score\na,d,acc,0.5\nb,d,acc,0.5\na,d,acc,0.7\n",
     "e.csv line 4 repeats the key (model='a', dataset='d', metric='acc') of line 2"),
])
def test_import_names_the_first_bad_line_and_imports_nothing(hub, tmp_path, body, message):
    (tmp_path / "ok.csv").write_text("model,dataset,metric,score\nz,d,acc,0.1\n")
    hub.execute("IMPORT EVALUATIONS FROM 'ok.csv'", base_dir=str(tmp_path))
    before = _evals(hub)
    (tmp_path / "e.csv").write_text(body)
    with pytest.raises(ExecutionError) as exc:
        hub.execute("IMPORT EVALUATIONS FROM 'e.csv'", base_dir=str(tmp_path))
    assert str(exc.value).startswith(message) and "nothing imported" in str(exc.value)
    assert _evals(hub) == before


def test_outcomes_need_every_score(hub, tmp_path):
    (tmp_path / "o.tsv").write_text("model\tdataset\tquery_id\tscore\nm\td\t1\t1\nm\td\t2\t\n")
    with pytest.raises(ExecutionError, match=r"o.tsv: outcomes need a score in every row \(none at line 3\)"):
        hub.execute("IMPORT OUTCOMES FROM 'o.tsv'", base_dir=str(tmp_path))
    with hub.store.read() as con:
        assert con.execute("SELECT count(*) FROM outcomes").fetchall() == [(0,)]


def test_imports_are_idempotent_at_size(hub, tmp_path):
    n = 20_000
    rows = [f"m{i % 500},d{i // 500},acc,{(i % 97) / 97}" for i in range(n)]
    (tmp_path / "e.csv").write_text("model,dataset,metric,score,family\n" + "".join(r + ",cnn\n" for r in rows))
    assert hub.execute("IMPORT EVALUATIONS FROM 'e.csv'", base_dir=str(tmp_path)).rows == [(n,)]
    first = _evals(hub)
    with pytest.raises(ExecutionError, match=rf"and {n - 1} more row\(s\); nothing imported"):
        hub.execute("IMPORT EVALUATIONS FROM 'e.csv'", base_dir=str(tmp_path))
    res = hub.execute("IMPORT EVALUATIONS FROM 'e.csv' ON CONFLICT SKIP", base_dir=str(tmp_path))
    assert res.rows == [(0,)] and f"{n} row(s) already stored, skipped" in res.message
    res = hub.execute("IMPORT EVALUATIONS FROM 'e.csv' ON CONFLICT REPLACE", base_dir=str(tmp_path))
    assert res.rows == [(n,)] and f"{n} stored row(s) replaced" in res.message
    assert _evals(hub) == first
    assert len(hub.execute("SHOW DATASETS").rows) == n // 500
