"""DISCOVER and CREATE TASK through the language: recorded outcomes as an oracle, live
exact-match and python-evaluator tasks, a live TorchScript classifier task, the outcome
cache, EXPLAIN schedules, budgets and bind errors."""
import json
import re
import shutil

import numpy as np
import pytest

import zooql
from conftest import ROOT
from zooql.methods.hidden_gems.ops import RESULT_COLUMNS
from zooql.errors import BindError, ExecutionError, SecurityError

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")

# planted accuracies: 'gem' is clearly best and little downloaded; 'base' is the popular root
ACC = {"base": 0.60, "gem": 0.92, "ft1": 0.30, "ft2": 0.40, "ft3": 0.45, "ft4": 0.50, "ft5": 0.55, "ft6": 0.35}
DOWNLOADS = {"base": 90000, "gem": 12, "ft1": 300, "ft2": 40, "ft3": 800, "ft4": 5, "ft5": 61, "ft6": 7}
N_QUERIES = 200


def _planted(hub, folder):
    rows = ["name,source,tree,parent,downloads"]
    rows += [f"{n},hf:org/{n},llama,{'' if n == 'base' else 'base'},{DOWNLOADS[n]}" for n in ACC]
    rows.append("lonely,hf:org/lonely,mistral,,1")
    (folder / "models.csv").write_text("\n".join(rows) + "\n")
    hub.execute("ADD MODELS FROM 'models.csv'", base_dir=str(folder))
    rng = np.random.default_rng(7)
    lines = ["model,dataset,query_id,score"]
    for name, acc in ACC.items():
        correct = set(rng.permutation(N_QUERIES)[: round(acc * N_QUERIES)].tolist())
        lines += [f"{name},gsm8k,q{q:03d},{1.0 if q in correct else 0.0}" for q in range(N_QUERIES)]
    (folder / "outcomes.csv").write_text("\n".join(lines) + "\n")
    hub.execute("IMPORT OUTCOMES FROM 'outcomes.csv'", base_dir=str(folder))
    return hub


@pytest.fixture(scope="module")
def planted_template(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted")
    h = zooql.connect(folder / "hub")
    _planted(h, folder)
    h.close()
    return folder / "hub"


@pytest.fixture
def planted(planted_template, tmp_path):
    """A fresh copy of a hub with tree 'llama' (8 models, planted outcomes on gsm8k) and an
    unrelated tree 'mistral' (one model without outcomes)."""
    shutil.copytree(planted_template, tmp_path / "hub")
    h = zooql.connect(tmp_path / "hub")
    yield h
    h.close()


def _spend(message):
    m = re.search(r"spent (\d+) of budget (\d+) \((\d+) new evaluations, (\d+) cached\)", message)
    assert m, message
    return tuple(int(x) for x in m.groups())


# ---- recorded outcomes -------------------------------------------------------------------

def test_recorded_outcomes_find_the_planted_best(planted):
    res = planted.execute("DISCOVER BEST IN TREE llama ON gsm8k BUDGET 40")
    assert res.columns == list(RESULT_COLUMNS)
    assert len(res.rows) == 1
    rank, model, score, queries, elim, gem = res.rows[0]
    assert (rank, model, elim) == (1, "gem", None)
    assert 0.7 < score <= 1.0 and 0 < queries <= N_QUERIES
    assert gem is True                      # full scores are known from the recorded outcomes
    spent, budget, new, cached = _spend(res.message)
    assert budget == 40 * len(ACC) and 0 < spent <= budget and (new, cached) == (spent, 0)

    top3 = planted.execute("DISCOVER BEST 3 IN TREE llama ON gsm8k BUDGET 60 SEED 3").to_dicts()
    assert [r["rank"] for r in top3] == [1, 2, 3] and top3[0]["model"] == "gem"
    assert all(r["hidden_gem"] is False for r in top3[1:])
    every = planted.execute("DISCOVER BEST IN TREE llama ON gsm8k BUDGET 40 OPTIONS (show_all = true)").rows
    assert sorted(r[1] for r in every) == sorted(ACC) and every[0][1] == "gem"
    assert sum(r[3] for r in every) == _spend(planted.execute(
        "DISCOVER BEST IN TREE llama ON gsm8k BUDGET 40").message)[0]
    assert {r[4] for r in every[1:]} <= {1, 2, 3, 4, 5} and every[0][4] is None


def test_every_strategy_stays_within_budget(planted):
    from zooql.methods.hidden_gems.discover import STRATEGIES

    for strategy in STRATEGIES:
        res = planted.execute(f"DISCOVER BEST IN TREE llama ON gsm8k BUDGET 25 USING {strategy} SEED 1")
        spent, budget, new, cached = _spend(res.message)
        assert spent <= budget == 25 * len(ACC) and new + cached == spent, strategy
        assert res.rows[0][3] <= N_QUERIES


def test_budget_per_model_versus_total(planted):
    per = planted.execute("DISCOVER BEST IN TREE llama ON gsm8k BUDGET 10 PER MODEL USING uniform "
                          "OPTIONS (show_all = true)")
    assert {r[3] for r in per.rows} == {10} and _spend(per.message)[:2] == (80, 80)
    same = planted.execute("DISCOVER BEST IN TREE llama ON gsm8k BUDGET 10 USING uniform")
    assert _spend(same.message)[:2] == (80, 80)           # PER MODEL is the default
    total = planted.execute("DISCOVER BEST IN TREE llama ON gsm8k BUDGET 40 TOTAL USING uniform "
                            "OPTIONS (show_all = true)")
    assert {r[3] for r in total.rows} == {5} and _spend(total.message)[:2] == (40, 40)
    assert "budget=40 models=8" in planted.explain("DISCOVER BEST IN TREE llama ON gsm8k BUDGET 40 TOTAL")
    # a budget larger than the pool is capped at models x queries
    big = planted.execute("DISCOVER BEST IN TREE llama ON gsm8k BUDGET 1000 USING uniform")
    assert _spend(big.message)[:2] == (8 * N_QUERIES, 8 * N_QUERIES) and "capped" in big.message


def test_explain_shows_the_schedule_without_spending(planted):
    text = planted.explain("DISCOVER BEST 2 IN TREE llama ON gsm8k BUDGET 10 USING gems SEED 4")
    assert text == (
        "Discover: tree=llama task=gsm8k source=recorded strategy=gems k=2 budget=80 per_model=10 models=8 "
        "queries=200 planned=80 seed=4\n"
        "  Round: index=1 survivors=8 queries_per_model=6 cost=48\n"
        "  Round: index=2 survivors=8 queries_per_model=2 cost=16\n"
        "  Round: index=3 survivors=4 queries_per_model=4 cost=16")
    text = planted.explain("DISCOVER BEST IN TREE llama ON gsm8k BUDGET 100 TOTAL USING sequential_halving "
                           "WHERE downloads < 1000")
    assert text == (
        "Discover: tree=llama task=gsm8k source=recorded strategy=sequential_halving k=1 budget=100 models=7 "
        "queries=200 planned=92 seed=0 filter=(downloads < 1000)\n"
        "  Round: index=1 survivors=7 queries_per_model=4 cost=28\n"
        "  Round: index=2 survivors=4 queries_per_model=8 cost=32\n"
        "  Round: index=3 survivors=2 queries_per_model=16 cost=32")
    assert planted.explain("DISCOVER BEST IN TREE llama ON gsm8k BUDGET 10 USING ucb").splitlines()[1] == \
        "  Adaptive: strategy=ucb description='UCB1, batched'"
    # nothing was spent by EXPLAIN: the first real search pays for everything
    spent, _, new, cached = _spend(planted.execute("DISCOVER BEST 2 IN TREE llama ON gsm8k BUDGET 10 USING gems "
                                                   "SEED 4").message)
    assert (new, cached) == (spent, 0) and spent == 80


def test_explain_analyze_reports_actual_rounds(planted):
    lines = [r[0] for r in planted.execute("EXPLAIN ANALYZE DISCOVER BEST 2 IN TREE llama ON gsm8k BUDGET 10 "
                                           "USING gems SEED 4")]
    assert lines[0].startswith("Discover: tree=llama") and " spent=80 new=80 cached=0 best=[" in lines[0]
    assert re.fullmatch(r"  Round: index=1 survivors=8 queries_per_model=6 cost=48 rows=8 elapsed=\S+ "
                        r"actual=8x6 spent=48 new=48 cached=0", lines[1]), lines[1]
    assert len(lines) == 4 and all("actual=" in line for line in lines[1:])
    again = [r[0] for r in planted.execute("EXPLAIN ANALYZE DISCOVER BEST 2 IN TREE llama ON gsm8k BUDGET 10 "
                                           "USING gems SEED 4")]
    assert " spent=80 new=0 cached=80 " in again[0]


def test_cache_makes_a_repeated_search_free(planted):
    q = "DISCOVER BEST 2 IN TREE llama ON gsm8k BUDGET 30 SEED 11"
    first = planted.execute(q)
    second = planted.execute(q)
    s1, _, new1, c1 = _spend(first.message)
    s2, _, new2, c2 = _spend(second.message)
    assert (new1, c1) == (s1, 0) and (s2, new2, c2) == (s1, 0, s1)
    assert first.rows == second.rows
    # a continued (bigger) search pays only for what it has not seen
    s3, _, new3, c3 = _spend(planted.execute("DISCOVER BEST 2 IN TREE llama ON gsm8k BUDGET 60 SEED 11").message)
    assert s3 > s1 and 0 < new3 < s3 and c3 == s3 - new3
    # a separate hub handle sees the same cache (it is stored in the hub)
    other = zooql.connect(planted.path)
    assert _spend(other.execute(q).message)[2] == 0
    # dropping a model drops its cached evaluations
    count = "SELECT count(*) FROM discover_cache WHERE model = 'gem'"
    with planted.store.read() as con:
        assert con.execute(count).fetchone()[0] > 0
    planted.execute("DROP MODEL gem")
    with planted.store.read() as con:
        assert con.execute(count).fetchone()[0] == 0


def test_where_filters_the_tree(planted):
    res = planted.execute("DISCOVER BEST 2 IN TREE llama ON gsm8k BUDGET 200 WHERE downloads < 1000 AND name <> 'gem' "
                          "OPTIONS (show_all = true)")
    names = [r[1] for r in res.rows]
    assert sorted(names) == sorted(set(ACC) - {"base", "gem"})
    assert names[0] == "ft5"                              # best of the rest, full pool seen
    with pytest.raises(BindError, match="no model of tree 'llama' matches WHERE"):
        planted.execute("DISCOVER BEST IN TREE llama ON gsm8k BUDGET 5 WHERE downloads > 10000000")


def test_missing_outcomes_restrict_the_pool(planted, tmp_path):
    planted.execute("ADD MODEL 'hf:org/late' AS late WITH (tree = 'llama', parent = 'base', downloads = 3)")
    with pytest.raises(BindError, match="late of tree 'llama' have no recorded outcomes"):
        planted.execute("DISCOVER BEST IN TREE llama ON gsm8k BUDGET 5")
    # 'late' answered only half of the queries: the pool is the queries every model has
    (tmp_path / "late.csv").write_text("model,dataset,query_id,score\n" + "".join(
        f"late,gsm8k,q{q:03d},1.0\n" for q in range(0, N_QUERIES, 2)))
    planted.execute("IMPORT OUTCOMES FROM 'late.csv'", base_dir=str(tmp_path))
    assert "queries=100" in planted.explain("DISCOVER BEST IN TREE llama ON gsm8k BUDGET 5")
    res = planted.execute("DISCOVER BEST IN TREE llama ON gsm8k BUDGET 100 USING uniform")
    assert res.rows[0][1] == "late" and res.rows[0][2] == 1.0
    assert "100 left out" in res.message
    res = planted.execute("DISCOVER BEST IN TREE llama ON gsm8k BUDGET 30 WHERE name <> 'late'")
    assert "queries=200" in planted.explain("DISCOVER BEST IN TREE llama ON gsm8k BUDGET 30 WHERE name <> 'late'")


# ---- CREATE TASK: exact match and python evaluators ----------------------------------------

def _text_task(tmp_path, n=30):
    """gsm8k-like queries; recorded responses: 'good' is right on 90%, 'ok' 60%, 'bad' 20%."""
    lines = []
    for i in range(n):
        ans = str(i * 3)
        resp = {"good": ans if i % 10 != 0 else "x", "ok": ans if i % 10 < 6 else "y",
                "bad": ans if i % 10 < 2 else "z"}
        lines.append(json.dumps({"id": f"p{i}", "question": f"what is {i} * 3?", "answer": ans,
                                 "difficulty": i / n, "responses": resp}))
    (tmp_path / "queries.jsonl").write_text("\n".join(lines) + "\n")


def _text_models(hub, tree="gpt"):
    for name, dl in [("ok", 5000), ("good", 10), ("bad", 70)]:
        hub.execute(f"ADD MODEL 'hf:org/{name}' AS {name} WITH (tree = '{tree}', downloads = {dl})")


def test_create_task_exact_match_from_jsonl(hub, tmp_path):
    _text_task(tmp_path)
    _text_models(hub)
    res = hub.execute("CREATE TASK arith FROM 'queries.jsonl' EVALUATOR 'exact_match'", base_dir=str(tmp_path))
    assert res.rows == [("arith", "queries", 30, "exact_match")] and "created task arith" in res.message
    assert hub.execute("CREATE TASK arith10 FROM 'queries.jsonl' LIMIT 10", base_dir=str(tmp_path)).rows[0][2] == 10
    assert "source=live" in hub.explain("DISCOVER BEST IN TREE gpt ON arith BUDGET 10")
    res = hub.execute("DISCOVER BEST IN TREE gpt ON arith BUDGET 30 USING uniform OPTIONS (show_all = true)")
    assert [(r[1], r[2]) for r in res.rows] == [("good", 0.9), ("ok", 0.6), ("bad", 0.2)]
    assert [r[5] for r in res.rows] == [True, False, False]   # the cache now covers the full pool
    assert _spend(hub.execute("DISCOVER BEST IN TREE gpt ON arith BUDGET 30").message)[2] == 0
    # a model without responses cannot take part in an exact_match task
    hub.execute("ADD MODEL 'hf:org/mute' AS mute WITH (tree = 'gpt')")
    with pytest.raises(BindError, match="mute cannot be evaluated on task 'arith'"):
        hub.execute("DISCOVER BEST IN TREE gpt ON arith BUDGET 10")
    assert hub.execute("DISCOVER BEST IN TREE gpt ON arith BUDGET 10 WHERE name <> 'mute'").rows
    with pytest.raises(ExecutionError, match="task file not found"):
        hub.execute("CREATE TASK nope FROM 'missing.jsonl'", base_dir=str(tmp_path))


EVALUATOR = '''
import json, os
LOG = os.path.join(os.path.dirname(__file__), "calls.log")
SKILL = {"ok": 0.5, "good": 0.8, "bad": 0.25}

def score(model, queries):
    with open(LOG, "a") as f:
        for q in queries:
            f.write(json.dumps([model, q["id"]]) + "\\n")
    return [1.0 if q["difficulty"] < SKILL[model] else 0.0 for q in queries]

def broken(model, queries):
    return [2.0 for q in queries]
'''


def test_python_evaluator_needs_trust(hub, tmp_path):
    _text_task(tmp_path)
    _text_models(hub)
    (tmp_path / "evals.py").write_text(EVALUATOR)
    create = "CREATE TASK skill FROM 'queries.jsonl' EVALUATOR 'python:evals.py:score'"
    with pytest.raises(SecurityError, match=r"SET trust_code = true or --trust"):
        hub.execute(create, base_dir=str(tmp_path))
    assert not (tmp_path / "calls.log").exists()
    hub.execute("SET trust_code = true")
    assert hub.execute(create, base_dir=str(tmp_path)).rows[0][3].endswith("evals.py:score")
    assert "source=python" in hub.explain("DISCOVER BEST IN TREE gpt ON skill BUDGET 10")
    res = hub.execute("DISCOVER BEST IN TREE gpt ON skill BUDGET 12 USING gems")
    assert res.rows[0][1] == "good"
    calls = [tuple(json.loads(x)) for x in (tmp_path / "calls.log").read_text().splitlines()]
    spent, _, new, _ = _spend(res.message)
    assert len(calls) == len(set(calls)) == new == spent       # never the same (model, query) twice
    again = hub.execute("DISCOVER BEST IN TREE gpt ON skill BUDGET 12 USING gems")
    assert _spend(again.message)[2] == 0 and len((tmp_path / "calls.log").read_text().splitlines()) == spent
    # refused again once trust is off, even though the task exists
    hub.execute("SET trust_code = false")
    with pytest.raises(SecurityError, match="trust_code"):
        hub.execute("DISCOVER BEST IN TREE gpt ON skill BUDGET 12")
    trusted = zooql.connect(hub.path, trust_code=True)
    assert trusted.execute("DISCOVER BEST IN TREE gpt ON skill BUDGET 12").rows[0][1] == "good"
    trusted.execute("CREATE TASK bad_eval FROM 'queries.jsonl' EVALUATOR 'python:evals.py:broken'",
                    base_dir=str(tmp_path))
    with pytest.raises(ExecutionError, match=r"scores in \[0, 1\]"):
        trusted.execute("DISCOVER BEST IN TREE gpt ON bad_eval BUDGET 5")
    with pytest.raises(ExecutionError, match="has no function 'nothere'"):
        trusted.execute("CREATE TASK t2 FROM 'queries.jsonl' EVALUATOR 'python:evals.py:nothere'",
                        base_dir=str(tmp_path))


# ---- live classifier task (TorchScript models through the model runtime) ---------------------

def _digits(folder, n=60):
    """8x8 grey images; class c lights pixel c. Model 'acc<r>' is right on classes < r."""
    from zooql.testing.zoo import digits_task

    return digits_task(folder, n=n)


def test_live_classifier_task(hub, tmp_path):
    pytest.importorskip("torch")
    from zooql.runtime import models as runtime  # noqa: F401  (the model runtime must be present)

    paths = _digits(tmp_path)
    for r, path in paths.items():
        parent = "NULL" if r == 3 else "'acc3'"
        hub.execute(f"ADD MODEL 'torchscript:{path}' AS acc{r} WITH (tree = 'digits', parent = {parent}, "
                    f"downloads = {100 * (11 - r)}, input_size = 8, channels = 1, mean = (0.5), std = (0.5))")
    res = hub.execute("CREATE TASK digits FROM 'digits.npz'", base_dir=str(tmp_path))
    assert res.rows == [("digits", "images", 60, "exact_match")]
    res = hub.execute("DISCOVER BEST IN TREE digits ON digits BUDGET 60 USING uniform OPTIONS (show_all = true)")
    assert [(r[1], r[2]) for r in res.rows] == [("acc10", 1.0), ("acc6", 0.6), ("acc3", 0.3)]
    assert res.rows[0][5] is True                        # full pool evaluated: hidden gem known
    assert _spend(res.message)[2] == 180
    hub.execute("SET trust_code = true")                 # (a stored setting must not upset the search)
    res = hub.execute("DISCOVER BEST IN TREE digits ON digits BUDGET 20")
    assert res.rows[0][1] == "acc10" and _spend(res.message)[2] == 0
    # a name-only model cannot be run on a live image task
    hub.execute("ADD MODEL 'hf:org/paper-only' AS paper_only WITH (tree = 'digits')")
    with pytest.raises(BindError, match="paper_only cannot be evaluated on task 'digits' .registered by name only"):
        hub.execute("DISCOVER BEST IN TREE digits ON digits BUDGET 20")
    assert hub.execute("DISCOVER BEST IN TREE digits ON digits BUDGET 20 WHERE loadable").rows[0][1] == "acc10"
    # the same images as a folder of class sub-folders, and as .jsonl queries naming image files
    from PIL import Image

    z = np.load(tmp_path / "digits.npz")
    lines = []
    for i, (img, lab) in enumerate(zip(z["images"][:20], z["labels"][:20])):
        (tmp_path / "imgs" / str(lab)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(tmp_path / "imgs" / str(lab) / f"{i}.png")
        lines.append(json.dumps({"id": f"img{i}", "image": f"imgs/{lab}/{i}.png", "answer": int(lab)}))
    (tmp_path / "imgs.jsonl").write_text("\n".join(lines) + "\n")
    assert hub.execute("CREATE TASK dfolder FROM IMAGES 'imgs'", base_dir=str(tmp_path)).rows[0][:3] == ("dfolder", "images", 20)
    assert hub.execute("CREATE TASK djsonl FROM 'imgs.jsonl'", base_dir=str(tmp_path)).rows[0][:3] == ("djsonl", "queries", 20)
    for task in ("dfolder", "djsonl"):
        res = hub.execute(f"DISCOVER BEST IN TREE digits ON {task} BUDGET 20 USING uniform WHERE loadable "
                          f"OPTIONS (show_all = true)")
        assert [(r[1], r[2]) for r in res.rows] == [("acc10", 1.0), ("acc6", 0.6), ("acc3", 0.3)], task
    # re-creating the task with other content starts a fresh cache
    _digits(tmp_path, n=40)
    res = hub.execute("CREATE TASK digits FROM 'digits.npz'", base_dir=str(tmp_path))
    assert "replaced task digits" in res.message and "cached evaluations dropped" in res.message
    res = hub.execute("DISCOVER BEST IN TREE digits ON digits BUDGET 10 WHERE loadable")
    spent, _, new, _ = _spend(res.message)
    assert new == spent > 0


# ---- the documentation's examples run -----------------------------------------------------

def test_discover_doc_examples_run(tmp_path):
    text = (ROOT / "docs" / "discover.md").read_text()
    blocks = re.findall(r"```zql\n(.*?)```", text, flags=re.S)
    assert blocks
    hub = zooql.connect(tmp_path / "hub")
    _doc_fixtures(tmp_path)
    for block in blocks:
        assert hub.execute(block, base_dir=str(tmp_path)) is not None
    assert hub.execute("DISCOVER BEST IN TREE llama-3-8b ON gsm8k BUDGET 40").rows[0][1] == "llama3-gem"


def _doc_fixtures(folder):
    _digits(folder)
    (folder / "digits-tree.csv").write_text(
        "name,source,tree,parent,downloads,input_size,channels,mean,std\n"
        + "".join(f"digits-acc{r},torchscript:acc{r}.pt,digits,{'' if r == 3 else 'digits-acc3'},{100 * (11 - r)},"
                  f"8,1,0.5,0.5\n" for r in (3, 6, 10)))
    rng = np.random.default_rng(1)
    acc = {"llama3": 0.55, "llama3-math": 0.62, "llama3-chat": 0.45, "llama3-gem": 0.9}
    lines = ["model,dataset,query_id,score"]
    for m, a in acc.items():
        lines += [f"{m},gsm8k,q{i},{float(rng.random() < a)}" for i in range(100)]
    (folder / "gsm8k_outcomes.csv").write_text("\n".join(lines) + "\n")
    (folder / "llama-tree.csv").write_text(
        "name,source,tree,parent,downloads\nllama3,hf:meta/llama3,llama-3-8b,,900000\n"
        "llama3-math,hf:org/llama3-math,llama-3-8b,llama3,5400\n"
        "llama3-chat,hf:org/llama3-chat,llama-3-8b,llama3,120\n"
        "llama3-gem,hf:org/llama3-gem,llama-3-8b,llama3-math,35\n")
    _text_task(folder)
    (folder / "my_evals.py").write_text(
        "def judge(model, queries):\n"
        "    return [1.0 if len(model) > q['difficulty'] * 10 else 0.0 for q in queries]\n")
