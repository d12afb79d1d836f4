"""The ``zooql`` command: end to end through ``python -m zooql`` (subprocess), and
in-process for the paths that need a misbehaving engine (internal errors, Ctrl-C)."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import zooql
from zooql.errors import Cancelled, ParseError
from zooql.repl import cli

ROOT = Path(__file__).resolve().parents[1]

EVALS = "model,dataset,metric,score\nresnet18,cifar10,top1,0.93\nvit-b-16,cifar10,top1,0.9812345\n"


_HOME = None


def _empty_home():
    """A HOME without a .zooqlrc, so the tests never run the user's rc file."""
    global _HOME
    if _HOME is None:
        import tempfile

        _HOME = tempfile.mkdtemp(prefix="zooql-home-")
    return _HOME


@pytest.fixture(autouse=True)
def _no_user_rc(monkeypatch):
    monkeypatch.setenv("HOME", _empty_home())


def zooql_cmd(*args, cwd=None, stdin=None, timeout=60, home=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["ZOOQL_HISTORY"] = os.devnull
    env["HOME"] = str(home) if home is not None else _empty_home()
    return subprocess.run([sys.executable, "-m", "zooql", *args], cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def project(tmp_path):
    """A folder with a script that uses a path relative to itself."""
    sub = tmp_path / "scripts"
    sub.mkdir()
    (sub / "evals.csv").write_text(EVALS)
    (sub / "load.zql").write_text(
        "-- import evaluations kept next to this script\n"
        "IMPORT EVALUATIONS FROM 'evals.csv';\n"
        "SHOW DATASETS;\n")
    return tmp_path


def test_c_success(tmp_path):
    r = zooql_cmd("--hub", str(tmp_path / "hub"), "--create", "-c", "SHOW DATASETS;")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split(" | ")[0].strip() == "dataset"
    assert lines[-1] == "(0 rows)"
    assert r.stderr == ""


def test_c_errors_exit_1_with_message_on_stderr(tmp_path):
    hub = str(tmp_path / "hub")
    r = zooql_cmd("--hub", hub, "-c", "SHOW MODELZ")
    assert r.returncode == 1
    assert r.stderr.startswith("Error: ") and "MODELZ" in r.stderr and "^" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    r = zooql_cmd("--hub", hub, "-c", "DESCRIBE MODEL nope;")
    assert r.returncode == 1
    assert r.stderr.startswith("Error: ") and "nope" in r.stderr and "Traceback" not in r.stderr


def test_run_file_resolves_paths_against_its_folder(project):
    hub = str(project / "hub")
    elsewhere = project / "elsewhere"
    elsewhere.mkdir()
    r = zooql_cmd("--hub", hub, "run", str(project / "scripts" / "load.zql"), "--timer", cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    assert "imported 2 evaluations from evals.csv" in r.stdout
    assert "cifar10" in r.stdout and r.stdout.rstrip().endswith("(1 row)")
    assert r.stderr.count("Time: ") == 2
    # relative to the current folder, a file that is not there
    r = zooql_cmd("--hub", hub, "-c", "IMPORT EVALUATIONS FROM 'evals.csv'", cwd=elsewhere)
    assert r.returncode == 1 and r.stderr.startswith("Error: ") and "evals.csv" in r.stderr


def test_run_stops_at_first_error(project):
    hub = str(project / "hub")
    script = project / "scripts" / "bad.zql"
    script.write_text("IMPORT EVALUATIONS FROM 'evals.csv';\n\nSHOW MODELZ;\n"
                      "IMPORT EVALUATIONS FROM 'evals.csv';\n")
    r = zooql_cmd("--hub", hub, "run", str(script))
    assert r.returncode == 1
    assert "line 3" in r.stderr  # line numbers are those of the file
    r = zooql_cmd("--hub", hub, "--format", "csv", "-c", "SHOW DATASETS")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert rows[0]["evaluations"] == "2"


def test_format_csv_and_json(project):
    hub = str(project / "hub")
    r = zooql_cmd("--hub", hub, "run", str(project / "scripts" / "load.zql"), "--format", "json")
    assert r.returncode == 0, r.stderr
    # JSON Lines: one JSON array per statement, each on its own line; messages go to stderr
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(docs) == 2
    assert docs[0] == [{"imported": 2}]
    assert docs[1][0]["dataset"] == "cifar10" and docs[1][0]["description"] is None
    assert "imported 2 evaluations" in r.stderr
    r = zooql_cmd("--hub", hub, "-f", "csv", "-c", "SHOW DATASETS")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert rows == [{"dataset": "cifar10", "evaluations": "2", "models": "2", "metrics": "top1",
                     "outcomes": "0", "description": ""}]


def test_statements_from_stdin_when_not_a_tty(project):
    hub = str(project / "hub")
    r = zooql_cmd(hub, "--create", "--format", "csv", stdin="SHOW DATASETS;\nSHOW TREES;\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("dataset,")
    r = zooql_cmd("--hub", hub, stdin="SHOW DATASETS;\nbogus;\n")
    assert r.returncode == 1 and "Error: " in r.stderr and "line 2" in r.stderr


def test_run_missing_file_and_usage_errors(tmp_path):
    r = zooql_cmd("--hub", str(tmp_path / "hub"), "run", str(tmp_path / "nope.zql"))
    assert r.returncode == 1 and r.stderr.startswith("Error: cannot read")
    r = zooql_cmd("--format", "xml", "-c", "SHOW MODELS")
    assert r.returncode == 2 and "invalid choice" in r.stderr


# ---------------------------------------------------------------------------
# Conventions (issue 19, item 10)
# ---------------------------------------------------------------------------

def test_path_argument_and_no_hub_made_by_a_read(project):
    hub = project / "hub"
    r = zooql_cmd(str(hub), "-c", "SHOW MODELS")  # mistyped / missing path, read-only statement
    assert r.returncode == 1 and r.stderr.startswith(f"Error: no hub at {hub}") and "--create" in r.stderr
    assert not hub.exists()
    r = zooql_cmd(str(hub), "-c", "EXPLAIN IMPORT EVALUATIONS FROM 'scripts/evals.csv'", cwd=project)
    assert r.returncode == 1 and "no hub at" in r.stderr and not hub.exists()  # EXPLAIN writes nothing
    # a statement that writes creates it; then the path opens it (like `duckdb f.db`)
    r = zooql_cmd(str(hub), "-c", "IMPORT EVALUATIONS FROM 'scripts/evals.csv'", cwd=project)
    assert r.returncode == 0, r.stderr
    assert (hub / "zooql_hub.json").exists()
    r = zooql_cmd(str(hub), "-f", "csv", "-c", "SHOW DATASETS")
    assert r.returncode == 0 and r.stdout.startswith("dataset,") and "cifar10" in r.stdout
    # --create makes it at once
    other = project / "other-hub"
    r = zooql_cmd(str(other), "--create", "-c", "SHOW MODELS")
    assert r.returncode == 0 and r.stdout.strip().endswith("(0 rows)") and (other / "zooql_hub.json").exists()
    # a folder with other things in it is not taken for a hub
    r = zooql_cmd(str(project / "scripts"), "-c", "IMPORT EVALUATIONS FROM 'evals.csv'")
    assert r.returncode == 1 and "is not a ZooQL hub" in r.stderr


def test_c_repeatable_in_order_and_leading_dash(project):
    hub = str(project / "hub")
    r = zooql_cmd(hub, "--create", "-f", "csv", "-c", "-- first, a comment line\nSHOW TREES",
                  "-c", "IMPORT EVALUATIONS FROM 'scripts/evals.csv'", "-c", "SHOW DATASETS", cwd=project)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["tree,models,roots,max_downloads", "imported", "2",
                                     "dataset,evaluations,models,metrics,outcomes,description",
                                     "cifar10,2,2,top1,0,"]
    r = zooql_cmd("-V")
    assert r.returncode == 0 and r.stdout.strip() == f"zooql {zooql.__version__}"


def test_json_lines_one_document_per_statement(project):
    hub = str(project / "hub")
    r = zooql_cmd(hub, "-f", "json", "-c", "IMPORT EVALUATIONS FROM 'scripts/evals.csv'; SHOW DATASETS; SHOW TREES",
                  cwd=project)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3
    docs = [json.loads(line) for line in lines]
    assert docs[0] == [{"imported": 2}] and docs[1][0]["dataset"] == "cifar10" and docs[2] == []


def test_rc_file_and_init_option(project):
    home = project / "home"
    home.mkdir()
    (home / ".zooqlrc").write_text("-- my settings\n.mode csv\n.timer on\n")
    hub = str(project / "hub")
    r = zooql_cmd(hub, "--create", "-c", "SHOW TREES", home=home)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["tree,models,roots,max_downloads"]  # .mode csv from ~/.zooqlrc, quietly
    assert "Time: " in r.stderr
    init = project / "init.zql"
    init.write_text(".mode line\nIMPORT EVALUATIONS FROM 'scripts/evals.csv';\n")
    r = zooql_cmd(hub, "-init", str(init), "-c", "SHOW DATASETS", home=home)
    assert r.returncode == 0, r.stderr
    assert "imported = 2" in r.stdout and "dataset = cifar10" in r.stdout  # -init replaces ~/.zooqlrc
    assert "Time: " not in r.stderr
    r = zooql_cmd(hub, "--no-init", "-c", "SHOW TREES", home=home)
    assert r.stdout.splitlines()[0].startswith("tree ")  # table: no rc file
    r = zooql_cmd(hub, "-f", "json", "-c", "SHOW TREES", home=home)
    assert json.loads(r.stdout) == []  # an explicit -f wins over the rc file's .mode


def test_tables_and_schema(project):
    hub = str(project / "hub")
    r = zooql_cmd(hub, "--create", "-f", "csv", "-c", ".tables models\n.schema models")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == ["relation", "models"]
    assert lines[2] == "relation,columns" and lines[3].startswith("models,") and "downloads" in lines[3]
    r = zooql_cmd(hub, "-c", ".schema nope")
    assert r.returncode == 1 and "unknown relation 'nope'" in r.stderr


def test_run_errors_name_the_file_and_line(project):
    hub = str(project / "hub")
    script = project / "scripts" / "bad2.zql"
    script.write_text("IMPORT EVALUATIONS FROM 'evals.csv';\n-- a comment\nDESCRIBE MODEL nope;\n")
    r = zooql_cmd(hub, "run", str(script))
    assert r.returncode == 1
    assert r.stderr.startswith(f"Error: {script}:3: ") and "nope" in r.stderr
    script.write_text("SHOW DATASETS;\n\nSHOW MODELZ;\n")
    r = zooql_cmd(hub, "run", str(script))
    assert r.returncode == 1 and r.stderr.startswith(f"Error: {script}:3: ")
    script.write_text("SHOW DATASETS;\n.mode xml\n")
    r = zooql_cmd(hub, "run", str(script))
    assert r.returncode == 1 and r.stderr.startswith(f"Error: {script}:2: unknown mode 'xml'")


def test_normalize_argv():
    n = cli.normalize_argv
    assert n(["myhub"]) == ["--hub=myhub"]
    assert n(["myhub", "-c", "-- x", "-f", "csv"]) == ["--hub=myhub", "--command=-- x", "-f", "csv"]
    assert n(["-f", "csv", "run", "a.zql", "b"]) == ["-f", "csv", "run", "a.zql", "b"]
    assert n(["h", "run", "a.zql"]) == ["--hub=h", "run", "a.zql"]
    assert n(["-init", "f.zql", "--hub", "x"]) == ["--init", "f.zql", "--hub", "x"]


# ---------------------------------------------------------------------------
# In process, with stand-in hubs
# ---------------------------------------------------------------------------

class StubResult:
    def __init__(self, columns=(), rows=(), message=None):
        self.columns, self.rows, self.message, self.elapsed, self.kind = list(columns), list(rows), message, 0.5, "x"


class StubHub:
    path = "stub-hub"

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.calls = []
        self.closed = False

    def execute(self, text, params=None, *, progress=None, base_dir=None):
        self.calls.append((text.strip(), params, base_dir))
        return self.behaviour(text)

    def completions(self):
        return {"models": [], "datasets": [], "trees": [], "probesets": []}

    def close(self):
        self.closed = True


@pytest.fixture
def stub(monkeypatch):
    holder = {}

    def install(behaviour):
        def connect(path=None, *, trust_code=False, **kw):
            hub = StubHub(behaviour)
            hub.opened_with = (path, trust_code)
            holder["hub"] = hub
            return hub

        monkeypatch.setattr(zooql, "connect", connect)
        return holder

    return install


def _raise(exc):
    def behaviour(text):
        raise exc

    return behaviour


def test_internal_error_is_one_line_exit_2(stub, capsys):
    stub(_raise(ZeroDivisionError("oops")))
    assert cli.main(["-c", "SHOW MODELS"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: internal error: ZeroDivisionError: oops (this is a bug")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert cli.main(["--debug", "-c", "SHOW MODELS"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_interrupt_exits_130(stub, capsys):
    stub(_raise(KeyboardInterrupt()))
    assert cli.main(["-c", "SHOW MODELS"]) == 130
    assert "cancelled" in capsys.readouterr().err
    stub(_raise(Cancelled("cancelled after 2 models")))
    assert cli.main(["-c", "SHOW MODELS"]) == 130
    assert "cancelled after 2 models" in capsys.readouterr().err


def test_zooql_error_exit_1_and_hub_closed(stub, capsys):
    h = stub(_raise(ParseError("syntax error at line 1", context="  1 | x\n    | ^")))
    assert cli.main(["--hub", "somewhere-hub", "--trust", "-c", "x"]) == 1
    assert capsys.readouterr().err == "Error: syntax error at line 1\n  1 | x\n    | ^\n"
    assert h["hub"].opened_with == ("somewhere-hub", True) and h["hub"].closed


def test_params_and_timer(stub, capsys, tmp_path):
    h = stub(lambda text: StubResult(["v"], [(1.23456,)], message="ok"))
    rc = cli.main(["-c", "SHOW MODELS WHERE top1 > :t; SHOW MODELS", "-p", "t=0.5", "--param", "n=x",
                   "--timer"])
    assert rc == 0
    calls = h["hub"].calls
    assert calls[0][1] == {"t": 0.5, "n": "x"} and calls[1][1] is None  # only where used
    assert calls[0][2] == os.getcwd()
    out, err = capsys.readouterr()
    assert "1.2346" in out and "(1 row)" in out and "ok" in out
    assert err.count("Time: 500.0 ms") == 2


def test_options_after_the_command(stub, capsys, tmp_path):
    f = tmp_path / "a.zql"
    f.write_text("SHOW MODELS;")
    h = stub(lambda text: StubResult(["v"], [(1,)]))
    assert cli.main(["--hub", "hub-one", "run", str(f), "--format", "csv"]) == 0
    assert capsys.readouterr().out == "v\n1\n"
    assert h["hub"].opened_with == ("hub-one", False)
    assert h["hub"].calls[0][2] == str(tmp_path)


def test_demo_dispatch(monkeypatch):
    seen = []
    fake = types.ModuleType("zooql.demo.main")
    fake.main = lambda hub_path, **kw: seen.append(hub_path) or 0
    monkeypatch.setitem(sys.modules, "zooql.demo.main", fake)
    assert cli.main(["demo", "--hub", "demo-hub-dir"]) == 0
    assert seen == ["demo-hub-dir"]


def test_repl_dispatch(monkeypatch):
    made = {}

    class FakeRepl:
        def __init__(self, **kw):
            made.update(kw)

        def run(self):
            return 0

    import zooql.repl.repl as repl_mod

    monkeypatch.setattr(repl_mod, "Repl", FakeRepl)
    assert cli.main(["--hub", "hub-h", "--trust", "repl", "--format", "json", "--timer"]) == 0
    assert made["hub_path"] == "hub-h" and made["trust_code"] is True
    assert made["mode"] == "json" and made["timer"] is True
    # no command, stdin a terminal: the REPL
    made.clear()
    monkeypatch.setattr(cli, "_stdin_is_tty", lambda: True)
    assert cli.main([]) == 0 and made["hub_path"] is None
