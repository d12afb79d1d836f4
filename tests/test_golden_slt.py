"""Runs every sqllogictest-style golden file: tests/golden/*.slt and each method's
zooql/methods/<method>/golden/*.slt (see zooql/testing/slt.py for the format).
ZOOQL_UPDATE_GOLDEN=1 rewrites their expected parts; review the diff."""
import os
from pathlib import Path

import pytest

from zooql.testing import slt

ROOT = Path(__file__).resolve().parent.parent
FILES = slt.discover(ROOT / "tests" / "golden") + slt.discover(ROOT / "zooql" / "methods")


def test_golden_files_exist_per_method():
    methods = {p.parent.parent.name for p in FILES if "methods" in p.parts}
    assert {"probelog", "hidden_gems", "modellens", "mll", "dcd"} <= methods


def test_runner_reports_a_wrong_expectation(tmp_path):
    f = tmp_path / "bad.slt"
    f.write_text("statement ok\nADD MODEL 'hf:a/b' AS m\n\nquery\nSHOW TREES\n----\ntree | models\nx | 1\n\n"
                 "statement error BindError: unknown model\nDESCRIBE MODEL m\n")
    failures = slt.run_file(f, tmp_path / "scratch")
    assert len(failures) == 2 and "result differs" in failures[0] and "succeeded" in failures[1]


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_golden_file(path, tmp_path):
    update = os.environ.get("ZOOQL_UPDATE_GOLDEN") == "1"
    failures = slt.run_file(path, tmp_path, update=update)
    assert update or not failures, "\n\n".join(failures)


def test_update_keeps_comments_and_rewrites_only_expected_parts(tmp_path):
    f = tmp_path / "c.slt"
    f.write_text("# header\n\n# before the first record\nstatement ok\nADD MODEL 'hf:a/b' AS m\n\n"
                 "# a wrong expectation, kept comment\nquery\nSHOW TREES\n----\nwrong\n\n# trailing note\n")
    slt.run_file(f, tmp_path / "scratch", update=True)
    text = f.read_text()
    assert text.startswith("# header\n\n# before the first record\nstatement ok\n")
    assert "# a wrong expectation, kept comment\nquery\nSHOW TREES\n----\ntree | models" in text
    assert "wrong" not in text.replace("# a wrong", "") and text.endswith("# trailing note\n")
    assert not slt.run_file(f, tmp_path / "scratch2")
