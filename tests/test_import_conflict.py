"""Issue 18, defect 7: IMPORT EVALUATIONS / OUTCOMES are idempotent by key, with
ON CONFLICT ERROR (default) | REPLACE | SKIP; a key twice in one file names its lines."""
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from zooql.errors import ExecutionError


def _csv(path, header, rows):
    path.write_text("\n".join([header] + rows) + "\n")
    return path.name


def _evals(hub):
    with hub.store.read() as con:
        return con.execute("SELECT model, dataset, metric, score, split, source FROM evaluations "
                           "ORDER BY ALL").fetchall()


def _run(hub, tmp_path, q):
    return hub.execute(q, base_dir=str(tmp_path))


def test_reimport_is_refused_and_changes_nothing(hub, tmp_path):
    f = _csv(tmp_path / "e.csv", "model,dataset,metric,score", ["a,d,acc,0.5", "b,d,acc,0.6"])
    assert _run(hub, tmp_path, f"IMPORT EVALUATIONS FROM '{f}'").rows == [(2,)]
    before = _evals(hub)
    with pytest.raises(ExecutionError) as exc:
        _run(hub, tmp_path, f"IMPORT EVALUATIONS FROM '{f}'")
    assert str(exc.value).startswith("evaluations already hold the key (model='a', dataset='d', "
                                     "metric='acc') of e.csv line 2 and 1 more row(s); nothing imported")
    assert "ON CONFLICT REPLACE" in str(exc.value) and "ON CONFLICT SKIP" in str(exc.value)
    with pytest.raises(ExecutionError):
        _run(hub, tmp_path, f"IMPORT EVALUATIONS FROM '{f}' ON CONFLICT ERROR")
    assert _evals(hub) == before


def test_skip_and_replace(hub, tmp_path):
    _run(hub, tmp_path, f"IMPORT EVALUATIONS FROM '{_csv(tmp_path / 'e.csv', 'model,dataset,metric,score', ['a,d,acc,0.5', 'b,d,acc,0.6'])}'")
    g = _csv(tmp_path / "g.csv", "model,dataset,metric,score", ["a,d,acc,0.9", "c,d,acc,0.1"])
    res = _run(hub, tmp_path, f"IMPORT EVALUATIONS FROM '{g}' ON CONFLICT SKIP")
    assert res.rows == [(1,)] and "1 row(s) already stored, skipped" in res.message
    assert [r[:4] for r in _evals(hub)] == [("a", "d", "acc", 0.5), ("b", "d", "acc", 0.6), ("c", "d", "acc", 0.1)]
    assert _run(hub, tmp_path, f"IMPORT EVALUATIONS FROM '{g}' ON CONFLICT SKIP").rows == [(0,)]
    res = _run(hub, tmp_path, f"IMPORT EVALUATIONS FROM '{g}' AS SOURCE lb ON CONFLICT REPLACE")
    assert res.rows == [(2,)] and "2 stored row(s) replaced" in res.message
    assert _evals(hub) == [("a", "d", "acc", 0.9, None, "lb"), ("b", "d", "acc", 0.6, None, None),
                           ("c", "d", "acc", 0.1, None, "lb")]
    # replaying the same REPLACE is a no-op on the table's content
    _run(hub, tmp_path, f"IMPORT EVALUATIONS FROM '{g}' AS SOURCE lb ON CONFLICT REPLACE")
    assert len(_evals(hub)) == 3


def test_split_is_part_of_the_key(hub, tmp_path):
    f = _csv(tmp_path / "s.csv", "model,dataset,metric,score,split", ["a,d,acc,0.9,val", "a,d,acc,0.1,test",
                                                                      "a,d,acc,0.5,"])
    assert _run(hub, tmp_path, f"IMPORT EVALUATIONS FROM '{f}'").rows == [(3,)]
    with pytest.raises(ExecutionError, match=r"key \(model='a', dataset='d', metric='acc', split='val'\)"):
        _run(hub, tmp_path, f"IMPORT EVALUATIONS FROM '{f}'")


def test_duplicate_inside_the_file_names_the_lines(hub, tmp_path):
    f = _csv(tmp_path / "dup.csv", "model,dataset,metric,score", ["a,d,acc,0.9", "c,d,acc,0.1", "a,d,acc,0.3"])
    for action in ("", " ON CONFLICT REPLACE", " ON CONFLICT SKIP"):
        with pytest.raises(ExecutionError) as exc:
            _run(hub, tmp_path, f"IMPORT EVALUATIONS FROM '{f}'{action}")
        assert str(exc.value) == ("dup.csv line 4 repeats the key (model='a', dataset='d', metric='acc') "
                                  "of line 2; each key may appear once per file; nothing imported")
    assert _evals(hub) == []
    pq.write_table(pa.table({"model": ["m", "m"], "dataset": ["d", "d"], "query_id": ["q1", "q1"],
                             "score": [1.0, 0.0]}), tmp_path / "o.parquet")
    with pytest.raises(ExecutionError, match="o.parquet row 2 repeats the key .* of row 1"):
        _run(hub, tmp_path, "IMPORT OUTCOMES FROM 'o.parquet'")


def test_missing_key_part_names_the_line(hub, tmp_path):
    f = _csv(tmp_path / "n.csv", "model,dataset,metric,score", ["a,d,acc,0.9", ",d,acc,0.1"])
    with pytest.raises(ExecutionError, match="n.csv line 3: no model"):
        _run(hub, tmp_path, f"IMPORT EVALUATIONS FROM '{f}'")


def test_outcomes_by_query(hub, tmp_path):
    f = _csv(tmp_path / "o.csv", "model,dataset,query_id,score", ["m,d,1,1", "m,d,2,0"])
    _run(hub, tmp_path, f"IMPORT OUTCOMES FROM '{f}'")
    with pytest.raises(ExecutionError, match=r"outcomes already hold the key \(model='m', dataset='d', query_id='1'\)"):
        _run(hub, tmp_path, f"IMPORT OUTCOMES FROM '{f}'")
    g = _csv(tmp_path / "p.csv", "model,dataset,query_id,score", ["m,d,2,1", "m,d,3,1"])
    _run(hub, tmp_path, f"IMPORT OUTCOMES FROM '{g}' ON CONFLICT REPLACE")
    with hub.store.read() as con:
        assert con.execute("SELECT query_id, score FROM outcomes ORDER BY 1").fetchall() == \
            [("1", 1.0), ("2", 1.0), ("3", 1.0)]
