"""Result types (issue 19, item 12): declared column types reach Arrow whatever the values,
DESCRIBE writes booleans as the language does, and ``hub.execute("A; B")``."""
from __future__ import annotations

import pyarrow as pa
import pytest

import zooql
from zooql.errors import BindError
from zooql.plan.nodes import Rows, arrow_type


def test_declared_types_do_not_depend_on_the_data():
    r = Rows(["rank", "model", "score", "gem", "vec"], [(None, None, None, None, None)],
             types=["BIGINT", "VARCHAR", "DOUBLE", "BOOLEAN", "FLOAT[]"])
    assert r.table.schema.types == [pa.int64(), pa.string(), pa.float64(), pa.bool_(), pa.list_(pa.float32())]
    empty = Rows(["rank", "score"], [], types=["BIGINT", "DOUBLE"])
    assert empty.table.schema.types == [pa.int64(), pa.float64()] and empty.table.num_rows == 0
    # without declared types an all-NULL column can only be typed null
    assert Rows(["x"], [(None,)]).table.schema.types == [pa.null()]
    assert arrow_type("timestamp") == pa.timestamp("us")
    with pytest.raises(ValueError, match="unknown column type"):
        arrow_type("GEOMETRY")
    with pytest.raises(ValueError, match="2 column types for 1 columns"):
        Rows(["x"], [], types=["BIGINT", "DOUBLE"])


def test_method_result_types_cover_their_columns():
    from zooql.methods.hidden_gems import ops as HG
    from zooql.methods.modellens import ops as ML
    from zooql.methods.probelog import ops_find as PF

    assert len(HG.RESULT_TYPES) == len(HG.RESULT_COLUMNS) and len(ML.RESULT_TYPES) == len(ML.RESULT_COLUMNS)
    assert dict(zip(HG.RESULT_COLUMNS, HG.RESULT_TYPES))["hidden_gem"] == "BOOLEAN"
    assert {PF.FIND_TYPES[c] for c in ("rank", "logit", "distance", "score")} == {"BIGINT", "DOUBLE"}


def test_catalog_results_are_typed_and_describe_writes_true_false(tmp_path):
    hub = zooql.connect(tmp_path / "hub")
    hub.execute("ADD MODEL 'hf:org/m' AS m WITH (tree = 'llama-3-8b')")
    desc = hub.execute("DESCRIBE MODEL m")
    props = dict(desc.rows)
    assert props["loadable"] in ("true", "false")
    assert desc.to_arrow().schema.types == [pa.string(), pa.string()]
    assert desc.types == ["VARCHAR", "VARCHAR"]
    # a statement whose result is empty still has its declared schema
    gone = hub.execute("DROP MODEL IF EXISTS nope")
    assert len(gone) == 0 and gone.to_arrow().schema.types == [pa.string()]
    # DuckDB scans keep DuckDB's types, NULL-only columns included
    ds = hub.execute("SHOW MODELS")
    assert ds.to_arrow().schema.field("parent").type == pa.string()


def test_execute_several_statements_returns_every_result(tmp_path):
    hub = zooql.connect(tmp_path / "hub")
    res = hub.execute("ADD MODEL 'hf:org/a' AS a; ADD MODEL 'hf:org/b' AS b; SHOW MODELS")
    assert [r.kind for r in res.results] == ["add_model", "add_model", "show_models"]
    assert res is res.results[-1] and sorted(r[0] for r in res.rows) == ["a", "b"]
    one = hub.execute("SHOW TREES")
    assert one.results == [one]
    # each statement is atomic on its own: the ones before a failing one stay done
    with pytest.raises(BindError):
        hub.execute("ADD MODEL 'hf:org/c' AS c; DESCRIBE MODEL nope; ADD MODEL 'hf:org/d' AS d")
    names = {r[0] for r in hub.execute("SHOW MODELS")}
    assert "c" in names and "d" not in names


def test_missing_hub_with_create_on_write(tmp_path):
    path = tmp_path / "new-hub"
    hub = zooql.connect(path, create="on_write")
    assert not hub.exists and hub.completions()["models"] == []
    with pytest.raises(zooql.StorageError, match="no hub at"):
        hub.execute("SHOW MODELS")
    with pytest.raises(zooql.StorageError, match="no hub at"):
        hub.execute("EXPLAIN ADD MODEL 'hf:org/a' AS a")
    assert not path.exists()
    hub.execute("ADD MODEL 'hf:org/a' AS a")
    assert hub.exists and (path / "zooql_hub.json").exists()
    assert [r[0] for r in hub.execute("SHOW MODELS")] == ["a"]
    hub.close()
    with pytest.raises(zooql.StorageError, match="no hub at"):
        zooql.connect(tmp_path / "absent", create=False)
