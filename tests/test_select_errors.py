"""Golden error messages of queries that sqlglot reads but DuckDB's parser does not (each a
ParseError pointing into the query as written: through parameters and sub-statements,
never into the SQL DuckDB is given) and of WHERE conditions DuckDB could only fail on while
running (text or a time as a condition, a bool compared with text)."""
from __future__ import annotations

import pytest

from conftest import GOLDEN, golden_compare
import zooql
from zooql.errors import ZooQLError
from zooql.testing.fuzz import ENGINE_TEXT


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    h = zooql.connect(tmp_path_factory.mktemp("errors") / "hub")
    h.execute("ADD MODEL 'hf:org/a' AS a WITH (license = 'mit')")
    yield h
    h.close()


def _params(case: str):
    return {"nm": "a"} if ":nm" in case else ["a"] * case.count("?") or None


def test_select_and_where_errors_golden(hub, tmp_path):
    out = []
    for case in [c.strip() for c in (GOLDEN / "select_errors.zql").read_text().split("\n\n") if c.strip()]:
        with pytest.raises(ZooQLError) as exc:
            hub.execute(case, _params(case), base_dir=str(tmp_path))
        text = str(exc.value)
        assert not ENGINE_TEXT.search(text), text
        out.append(case + "\n=> " + type(exc.value).__name__ + ": " + text)
    golden_compare("select_errors.out", "\n\n".join(out) + "\n")
