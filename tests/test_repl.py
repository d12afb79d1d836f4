"""REPL tests: the prompt loop driven through prompt_toolkit's pipe input, plus the
pieces it is made of (statement splitting, highlighting, completion, formatting,
progress bar, dot-commands)."""
from __future__ import annotations

import io
import json
import time

import pytest

pytest.importorskip("prompt_toolkit")

from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from zooql.errors import Cancelled, ExecutionError, ParseError
from zooql.repl import dotcommands
from zooql.repl import lexer as lx
from zooql.repl.completer import ZooQLCompleter, quote_name
from zooql.repl.formatting import format_cell, format_float, format_table, render, render_split
from zooql.repl.progress import ProgressBar
from zooql.repl.repl import Repl, default_history_path, run_repl


# ---------------------------------------------------------------------------
# A small stand-in for a hub (the engine's own hub is used where it exists)
# ---------------------------------------------------------------------------

class FakeResult:
    def __init__(self, columns=(), rows=(), message=None, kind="select"):
        self.columns = list(columns)
        self.rows = [tuple(r) for r in rows]
        self.message = message
        self.elapsed = 0.0123
        self.kind = kind

    def __iter__(self):
        return iter(self.rows)

    def fetchall(self):
        return list(self.rows)


class FakeHub:
    def __init__(self, path="fake-hub"):
        self.path = path
        self.calls = []
        self.models = ["resnet18", "vit-b-16"]
        self.closed = False

    def execute(self, text, params=None, *, progress=None, base_dir=None):
        self.calls.append({"text": text, "params": params, "base_dir": base_dir})
        words = text.split()
        head = words[0].upper() if words else ""
        if head == "SHOW":
            return FakeResult(["name", "top1", "note"], [(m, 0.7123456, None) for m in self.models])
        if head == "ADD":
            self.models.append(words[-1])
            return FakeResult(message=f"added model {words[-1]}", kind="add_model")
        if head == "FAIL":
            raise ExecutionError("model 'x' failed to load")
        if head == "INTERRUPT":
            raise KeyboardInterrupt
        if head == "CANCEL":
            raise Cancelled("cancelled after 3 of 10 models; finished work was kept")
        if head == "BUG":
            raise ZeroDivisionError("division by zero")
        if head == "SLOW":
            for i in range(3):
                if progress:
                    progress("slow work", i + 1, 3)
                if i == 0:
                    time.sleep(0.6)  # past the bar's 0.5 s delay
            return FakeResult(message="slow done")
        raise ParseError("unexpected input", line=1, column=1, context=text.strip() + "\n^")

    def completions(self):
        return {"models": list(self.models), "datasets": ["cifar10", "imagenet-val"],
                "trees": ["wordnet"], "probesets": ["colors"]}

    def explain(self, text):
        return f"plan for {text}"

    def close(self):
        self.closed = True


def drive(keys, hub=None, **kwargs):
    """Run the REPL over `keys` typed at the prompt; returns (rc, stdout, stderr, hub)."""
    hub = hub if hub is not None else FakeHub()
    out, err = io.StringIO(), io.StringIO()
    kwargs.setdefault("history_path", "")
    with create_pipe_input() as inp:
        inp.send_text(keys)
        rc = run_repl(hub, input=inp, output=DummyOutput(), stdout=out, stderr=err, **kwargs)
    return rc, out.getvalue(), err.getvalue(), hub


# ---------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------

def test_multiline_statement_runs_once_complete():
    rc, out, err, hub = drive("SHOW\rMODELS\r;\r\x04")
    assert rc == 0
    assert [c["text"] for c in hub.calls] == ["SHOW\nMODELS"]
    assert "resnet18" in out and "(2 rows)" in out
    assert err == ""


def test_semicolon_inside_string_or_comment_does_not_end_input():
    rc, out, err, hub = drive("ADD MODEL 'a;b' -- x;\r  AS y;\r\x04")
    assert [c["text"] for c in hub.calls] == ["ADD MODEL 'a;b' -- x;\n  AS y"]


def test_several_statements_on_one_line_each_print():
    rc, out, err, hub = drive("ADD MODEL m1; SHOW MODELS;\r\x04")
    assert len(hub.calls) == 2
    assert "added model m1" in out
    assert "m1" in out.split("added model m1", 1)[1]


def test_dot_commands_mode_timer_help():
    keys = ".mode csv\rSHOW MODELS;\r.mode json\rSHOW MODELS;\r.timer on\rADD MODEL z;\r.help\r.mode\r\x04"
    rc, out, err, hub = drive(keys)
    assert err == ""
    assert "name,top1,note\nresnet18,0.7123456,\n" in out
    start = out.index("[\n")
    data = json.loads(out[start: out.index("]\n", start) + 1])
    assert data[0] == {"name": "resnet18", "top1": 0.7123456, "note": None}
    assert "added model z" in out and "Time: 12.3 ms" in out
    assert ".open PATH" in out and ".quit" in out  # .help lists commands
    assert out.rstrip().endswith("mode: json")


def test_dot_command_errors_and_name_listing():
    rc, out, err, hub = drive(".mode xml\r.nope\r.models\r.datasets imagenet*\r\x04")
    assert "Error: unknown mode 'xml'" in err
    assert "Error: unknown command .nope" in err
    assert "resnet18" in out and "vit-b-16" in out
    assert "imagenet-val" in out and "cifar10" not in out


def test_ctrl_c_cancels_input_and_loop_goes_on():
    rc, out, err, hub = drive("SHOW MODELS\rWHERE x\x03ADD MODEL k;\r\x04")
    assert [c["text"] for c in hub.calls] == ["ADD MODEL k"]
    assert "added model k" in out


def test_ctrl_d_exits_and_ignores_the_rest():
    rc, out, err, hub = drive("\x04SHOW MODELS;\r")
    assert rc == 0 and hub.calls == []


def test_quit_commands_exit():
    for word in (".quit\r", ".exit\r", "quit\r"):
        rc, out, err, hub = drive(word + "SHOW MODELS;\r")
        assert rc == 0 and hub.calls == [], word


def test_error_is_shown_without_traceback_and_loop_continues():
    rc, out, err, hub = drive("bogus stuff;\rFAIL;\rSHOW MODELS;\r\x04")
    assert rc == 0
    assert "Error: unexpected input\nbogus stuff\n^" in err
    assert "Error: model 'x' failed to load" in err
    assert "Traceback" not in err and "Traceback" not in out
    assert "resnet18" in out


def test_first_error_stops_the_rest_of_the_input():
    rc, out, err, hub = drive("FAIL; ADD MODEL never;\rSHOW MODELS;\r\x04")
    assert [c["text"].strip() for c in hub.calls] == ["FAIL", "SHOW MODELS"]
    assert "never" not in out


def test_interrupt_while_running_prints_cancelled():
    rc, out, err, hub = drive("INTERRUPT;\rCANCEL;\rSHOW MODELS;\r\x04")
    assert "cancelled\n" in err
    assert "cancelled after 3 of 10 models" in err
    assert "resnet18" in out


def test_internal_error_is_one_line_and_loop_continues():
    rc, out, err, hub = drive("BUG;\rSHOW MODELS;\r\x04")
    assert "Error: internal error: ZeroDivisionError: division by zero (this is a bug" in err
    assert "Traceback" not in err
    assert "resnet18" in out
    rc, out, err, hub = drive("BUG;\r\x04", debug=True)
    assert "Traceback" in err


def test_progress_bar_shown_when_enabled():
    rc, out, err, hub = drive("SLOW;\r\x04", progress=True)
    assert "slow done" in out
    assert "slow work" in err and "3/3" in err and "100%" in err and err.endswith("\x1b[?25h")
    assert err.count("\n") == 1  # one bar, finished once
    rc, out, err, hub = drive("SLOW;\r\x04")  # stderr is not a terminal: no bar
    assert err == ""


def test_statement_line_and_column_kept_for_errors():
    rc, out, err, hub = drive("SHOW MODELS;  bogus;\r\x04")
    # Statements after the first are padded so the engine reports the right column.
    assert hub.calls[1]["text"] == " " * len("SHOW MODELS;  ") + "bogus"
    rc, out, err, hub = drive("SHOW MODELS; ADD MODEL a\r;\r\x04")
    assert hub.calls[1]["text"] == " " * len("SHOW MODELS; ") + "ADD MODEL a"


def test_alt_enter_runs_an_unfinished_statement():
    rc, out, err, hub = drive("SHOW MODELS\x1b\r\x04")
    assert [c["text"] for c in hub.calls] == ["SHOW MODELS"]


def test_history_file_written(tmp_path, monkeypatch):
    hist = tmp_path / "state" / "history"
    monkeypatch.setenv("ZOOQL_HISTORY", str(hist))
    assert default_history_path() == str(hist)
    drive("SHOW\rMODELS;\r.mode csv\r\x04", history_path=None)
    text = hist.read_text()
    assert "+SHOW\n+MODELS;" in text and "+.mode csv" in text
    # A later session sees it (Up arrow recalls the last entry).
    rc, out, err, hub = drive("\x1b[A\r\x04", history_path=None)
    assert err == ""  # `.mode csv` recalled and run
    assert "mode: csv" in out


def test_default_history_location(monkeypatch, tmp_path):
    monkeypatch.delenv("ZOOQL_HISTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_history_path() == str(tmp_path / "zooql" / "history")


def test_open_and_read_commands(tmp_path):
    opened = []

    def connect(path, trust_code=False):
        opened.append((path, trust_code))
        return FakeHub(path)

    script_dir = tmp_path / "scripts"
    script_dir.mkdir()
    (script_dir / "s.zql").write_text("-- a script\nADD MODEL fromfile;\nSHOW MODELS;\n")
    out, err = io.StringIO(), io.StringIO()
    with create_pipe_input() as inp:
        inp.send_text(f".open {tmp_path / 'other'}\r.hub\r.read {script_dir / 's.zql'}\r"
                      ".explain SHOW MODELS;\r\x04")
        repl = Repl(hub_path=str(tmp_path / "first"), connect=connect, trust_code=True, input=inp,
                    output=DummyOutput(), stdout=out, stderr=err, history_path="")
        first = repl.hub
        assert repl.run() == 0
    assert err.getvalue() == ""
    assert opened == [(str(tmp_path / "first"), True), (str(tmp_path / "other"), True)]
    assert first.closed and repl.hub.closed  # the REPL closes hubs it opened
    calls = repl.hub.calls
    assert calls[0]["base_dir"] == str(script_dir)
    assert calls[0]["text"].endswith("ADD MODEL fromfile") and calls[0]["text"].startswith("\n")
    assert f"opened hub {tmp_path / 'other'}" in out.getvalue()
    assert "fromfile" in out.getvalue()
    assert "plan for SHOW MODELS" in out.getvalue()


def test_completion_names_refreshed_after_statements():
    hub = FakeHub()
    repl = Repl(hub, stdout=io.StringIO(), stderr=io.StringIO(), history_path="")
    comp = repl.completer

    def words(text):
        return [c.text for c in comp.get_completions(Document(text), CompleteEvent())]

    assert "newmodel" not in words("DESCRIBE MODEL new")
    repl.run_text("ADD MODEL newmodel;")
    assert "newmodel" in words("DESCRIBE MODEL new")


# ---------------------------------------------------------------------------
# Pieces
# ---------------------------------------------------------------------------

def test_split_statements_and_completeness():
    text = "SHOW MODELS; -- note; here\nADD MODEL 'a;b' AS \"x;y\";;\n  DESCRIBE MODEL resnet-18"
    stmts = lx.split_statements(text)
    assert [s.text for s in stmts] == ["SHOW MODELS", "ADD MODEL 'a;b' AS \"x;y\"", "DESCRIBE MODEL resnet-18"]
    padded = stmts[2].padded(text)
    assert padded.count("\n") == 2 and padded.endswith("\n  DESCRIBE MODEL resnet-18")
    assert lx.split_statements("  -- only a comment\n ; ;") == []
    assert lx.statement_complete("SHOW MODELS;")
    assert lx.statement_complete("SHOW MODELS; -- trailing comment")
    assert not lx.statement_complete("SHOW MODELS -- ;")
    assert not lx.statement_complete("ADD MODEL 'a;")
    assert not lx.statement_complete("ADD MODEL 'it''s;")
    assert lx.statement_complete("ADD MODEL 'it''s';")
    assert lx.input_complete(".mode csv") and lx.input_complete("") and lx.input_complete("quit")
    assert not lx.input_complete("SHOW\nMODELS")


def test_highlighting_classes():
    lines = lx.style_fragments("show models -- all\nWHERE name = 'x' AND top1 > 0.5")
    flat = [frag for line in lines for frag in line]
    assert ("class:keyword", "show") in flat and ("class:keyword", "WHERE") in flat
    assert ("class:comment", "-- all") in flat
    assert ("class:string", "'x'") in flat
    assert ("class:number", "0.5") in flat
    assert ("", "name") in flat  # identifiers are not keywords
    assert len(lines) == 2
    # A string spanning lines is split per line, keeping its class.
    lines = lx.style_fragments("ADD MODEL 'a\nb'")
    assert lines[1] == [("class:string", "b'")]
    assert lx.style_fragments(".mode csv")[0][0] == ("class:dotcommand", ".mode")
    # The prompt_toolkit lexer returns the same.
    get_line = lx.ZooQLLexer().lex_document(Document("SHOW MODELS;"))
    assert get_line(0)[0] == ("class:keyword", "SHOW") and get_line(5) == []


def test_keyword_and_name_completion(tmp_path):
    comp = ZooQLCompleter(FakeHub(), dot_commands=dotcommands.names())

    def complete(text):
        return [c.text for c in comp.get_completions(Document(text), CompleteEvent())]

    assert "SHOW" in complete("sh")
    assert "MODELS" in complete("SHOW mod")
    first = complete("DESCRIBE MODEL ")
    assert first[:2] == ["resnet18", "vit-b-16"]
    assert complete("DESCRIBE DATASET im")[0] == "imagenet-val"
    assert complete("DESCRIBE MODEL \"vi") == ['"vit-b-16"']
    assert complete("SHOW MODELS -- res") == []
    assert ".mode" in complete(".mo")
    assert complete(".mode j") == ["json"]
    assert complete(".timer o") == ["on", "off"]
    (tmp_path / "labels.txt").write_text("a\n")
    got = complete(f"ADD MODEL 'resnet18' LABELS FROM '{tmp_path}/lab")
    assert got == ["els.txt"]
    assert quote_name("resnet-18") == "resnet-18"
    assert quote_name("my model") == '"my model"'
    assert quote_name("show") == '"show"'


def test_completer_survives_a_failing_hub():
    class Broken(FakeHub):
        def completions(self):
            raise RuntimeError("boom")

    comp = ZooQLCompleter(Broken())
    assert [c.text for c in comp.get_completions(Document("SH"), CompleteEvent())] == ["SHOW"]


def test_table_formatting():
    text = format_table(["name", "top1", "params", "note"],
                        [("resnet18", 0.6975812, 11689512, None), ("vit", 1e-7, 5, "a\nb")])
    lines = text.splitlines()
    assert lines[0].split(" | ")[0].strip() == "name"
    assert "0.6976" in lines[2] and "NULL" in lines[2]
    assert "1e-07" in lines[3] and "a\\nb" in lines[3]
    assert lines[-1] == "(2 rows)"
    # numbers right-aligned, columns aligned
    assert lines[3].index(" 5 ") > 0
    assert len({len(line) for line in lines[1:2]}) == 1
    assert len({line.index("|") for line in lines[:-1] if "|" in line}) == 1
    assert format_table(["a"], []).splitlines()[-1] == "(0 rows)"
    assert format_table(["a"], [(1,)]).splitlines()[-1] == "(1 row)"


def test_value_formatting():
    assert format_float(0.123456) == "0.1235"
    assert format_float(12.0) == "12.0000"
    assert format_float(float("nan")) == "NaN"
    assert format_float(3e-9) == "3e-09"
    assert format_cell(None) == "NULL"
    assert format_cell(True) == "true"
    assert format_cell(b"abc") == "<3 bytes>"
    assert format_cell([0.5, 1]) == "[0.5000, 1]"
    assert format_cell("x" * 100) == "x" * 100  # never cut by itself
    assert format_cell("x" * 100, max_width=60).endswith("…") and len(format_cell("x" * 100, max_width=60)) == 60


def test_render_modes():
    res = FakeResult(["a", "b"], [(1, None), (2.5, "x,y")], message="2 rows scanned")
    assert render(res, "csv") == 'a,b\n1,\n2.5,"x,y"'
    assert json.loads(render(res, "json")) == [{"a": 1, "b": None}, {"a": 2.5, "b": "x,y"}]
    assert render(res, "table").endswith("(2 rows)\n2 rows scanned")
    assert render(FakeResult(message="added model m"), "table") == "added model m"
    assert render_split(FakeResult(message="added model m"), "json") == ("", "added model m")
    with pytest.raises(ValueError):
        render(res, "xml")
    nan = FakeResult(["v"], [(float("nan"),)])
    assert json.loads(render(nan, "json")) == [{"v": None}]


def test_numpy_values_format():
    np = pytest.importorskip("numpy")
    res = FakeResult(["v", "e"], [(np.float32(0.25), np.arange(3, dtype=np.float32))])
    assert "0.2500" in render(res, "table") and "[0.0000, 1.0000, 2.0000]" in render(res, "table")
    assert json.loads(render(res, "json")) == [{"v": 0.25, "e": [0.0, 1.0, 2.0]}]


def test_progress_bar_rendering():
    now = [0.0]
    stream = io.StringIO()
    bar = ProgressBar(stream, enabled=True, delay=0.5, width=100, clock=lambda: now[0], verbose=True)
    bar._timer.cancel()  # the test's clock decides
    bar("probing m0", 50, 100)  # within the delay: nothing
    assert stream.getvalue() == ""
    # PROBE's nesting: per-batch "probing <model>" inside per-model "probing"
    for m in range(4):
        for k in (50, 100):
            now[0] += 1.0
            bar(f"probing m{m}", k, 100)
            if (m, k) == (2, 50):
                # one bar: the outer label, rate and ETA from its real average (the model's
                # batches count as a fraction), the model as a suffix
                assert bar.status_line() == "probing  2/4   62%  0:05 < 0:03  0.50/s  · probing m2 50/100"
        bar("probing", m + 1, 4)
    assert bar.stats()["rate"] == pytest.approx(4 / 8) and bar.stats()["eta"] == 0
    bar.close()
    text = stream.getvalue()
    assert "probing m1: 100/100 in 2.0 s\n" in text  # verbose: a line per finished model
    assert text.count("\n") == 5  # 4 model lines and the bar's one final line
    # unknown total
    b2 = ProgressBar(io.StringIO(), enabled=True, delay=0, clock=lambda: 10.0)
    b2("scanning", 7, 0)
    assert b2.status_line().startswith("scanning  7  0:00")
    b2.close()
    # Not a terminal and not forced: silent.
    quiet = io.StringIO()
    ProgressBar(quiet)("x", 1, 2)
    assert quiet.getvalue() == ""


def test_progress_bar_redraws_inside_a_long_batch_and_not_for_quick_work():
    stream = io.StringIO()
    with ProgressBar(stream, enabled=True, delay=0.2, width=100, refresh_per_second=10) as bar:
        bar("embedding", 1, 10)
        time.sleep(1.4)  # no callback for 1.4 s: the timer starts the bar, rich redraws it
    frames = stream.getvalue().split("\r")
    assert len(frames) >= 5, frames
    assert "0:01" in stream.getvalue()  # elapsed time moved without a callback
    quick = io.StringIO()
    with ProgressBar(quick, enabled=True, delay=0.5) as bar:
        for i in range(10):
            bar("quick", i + 1, 10)
    assert quick.getvalue() == ""  # work under the delay draws nothing


def test_no_echo_while_a_statement_runs():
    import os
    import pty
    import termios

    from zooql.repl.progress import no_echo

    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "r", closefd=False) as tty:
            assert termios.tcgetattr(slave)[3] & termios.ECHO
            with no_echo(tty):
                assert not termios.tcgetattr(slave)[3] & termios.ECHO
                assert termios.tcgetattr(slave)[3] & termios.ISIG  # Ctrl-C still interrupts
            assert termios.tcgetattr(slave)[3] & termios.ECHO
        with no_echo(io.StringIO()):  # not a terminal: nothing to do
            pass
    finally:
        os.close(master)
        os.close(slave)


def test_dotcommand_registry():
    assert {".help", ".mode", ".timer", ".open", ".quit", ".exit", ".models", ".read"} <= set(dotcommands.names())
    assert dotcommands.is_dot_command("  .mode csv")


# ---------------------------------------------------------------------------
# Fitted to the terminal (issue 19, item 5)
# ---------------------------------------------------------------------------

class SizedOutput(DummyOutput):
    """A terminal of a fixed size for the REPL under test."""

    def __init__(self, columns, rows=40):
        super().__init__()
        self.size = (columns, rows)

    def get_size(self):
        from prompt_toolkit.data_structures import Size

        return Size(rows=self.size[1], columns=self.size[0])


LONG = "/data/hubs/" + "very-long-folder/" * 8 + "model.pt"


class PathHub(FakeHub):
    def __init__(self, n=2):
        super().__init__()
        self.n = n

    def execute(self, text, params=None, *, progress=None, base_dir=None):
        self.calls.append({"text": text})
        return FakeResult(["name", "checkpoint", "top1"],
                          [(f"m{i}", LONG, 0.5) for i in range(self.n)])


def drive_sized(keys, columns, rows=40, hub=None, **kwargs):
    hub = hub if hub is not None else PathHub()
    out, err = io.StringIO(), io.StringIO()
    with create_pipe_input() as inp:
        inp.send_text(keys)
        rc = run_repl(hub, input=inp, output=SizedOutput(columns, rows), stdout=out, stderr=err,
                      history_path="", banner=False, **kwargs)
    return rc, out.getvalue(), err.getvalue()


def test_table_fits_the_terminal_width():
    rc, out, err = drive_sized("SHOW MODELS;\r\x04", columns=60)
    lines = out.splitlines()
    assert lines[-1] == "(2 rows)"
    assert max(len(line) for line in lines) <= 60
    assert lines[2].startswith("m0   | /data/hubs/very-long") and lines[2].endswith("… | 0.5000")  # widest cut
    # a wide terminal shows the whole path: no fixed 60-character cut
    rc, out, err = drive_sized("SHOW MODELS;\r\x04", columns=200)
    assert LONG in out and "…" not in out
    # the short columns keep their width when the long one shrinks
    widths = [len(c) for c in format_table(["a", "b", "long"], [("x", "yy", "z" * 300)], width=40).splitlines()[1].split("-+-")]
    assert widths[:2] == [1, 2] and sum(widths) + 6 <= 40


def test_fit_widths_shrinks_widest_first():
    from zooql.repl.formatting import fit_widths

    assert fit_widths([5, 50, 30], None) == [5, 50, 30]
    assert fit_widths([5, 50, 30], 100) == [5, 50, 30]
    assert fit_widths([5, 50, 30], 51) == [5, 20, 20]   # 51 - 2 separators = 45 = 5 + 20 + 20
    assert fit_widths([5, 50, 12], 40) == [5, 17, 12]   # the 12-wide column stays whole
    assert min(fit_widths([30, 30, 30, 30], 10)) >= 8  # never below the minimum column width


def test_mode_line_and_markdown_never_cut():
    rc, out, err = drive_sized(".mode line\rSHOW MODELS;\r.mode markdown\rSHOW MODELS;\r\x04", columns=40)
    assert err == ""
    assert f"      name = m0\ncheckpoint = {LONG}\n      top1 = 0.5000\n\n      name = m1" in out
    assert "| name | checkpoint | top1 |\n|---|---|---:|\n| m0 | " + LONG + " | 0.5000 |" in out
    assert render(FakeResult(["a"], [("x|y",)]), "markdown") == "| a |\n|---|\n| x\\|y |"


def test_pager_for_long_results(tmp_path, monkeypatch):
    paged = tmp_path / "paged.txt"
    monkeypatch.setenv("ZOOQL_PAGER", f"cat > {paged}")
    monkeypatch.setattr(Repl, "_stdout_is_tty", lambda self: True)
    rc, out, err = drive_sized("SHOW MODELS;\r\x04", columns=100, rows=10, hub=PathHub(30))
    assert paged.read_text().rstrip().endswith("(30 rows)") and "(30 rows)" not in out
    paged.unlink()
    rc, out, err = drive_sized("SHOW MODELS;\r\x04", columns=100, rows=40, hub=PathHub(3))  # fits: printed
    assert not paged.exists() and "(3 rows)" in out
    rc, out, err = drive_sized(".pager off\rSHOW MODELS;\r\x04", columns=100, rows=10, hub=PathHub(30))
    assert not paged.exists() and "(30 rows)" in out and "pager: off" in out
    monkeypatch.undo()
    monkeypatch.setenv("ZOOQL_PAGER", f"cat > {paged}")
    rc, out, err = drive_sized("SHOW MODELS;\r\x04", columns=100, rows=10, hub=PathHub(30))
    assert not paged.exists() and "(30 rows)" in out  # output is not a terminal: never paged


# ---------------------------------------------------------------------------
# Completion follows the grammar (issue 19, item 7)
# ---------------------------------------------------------------------------

class KindsHub(FakeHub):
    def completions(self):
        got = super().completions()
        got.update(tasks=["digits", "pets"], columns=["name", "tree", "downloads"])
        return got

    def logit_labels(self, model):
        return ["espresso", "espresso maker", "cat's eye"] if model == "resnet18" else []


def _complete(comp, text, tab=True):
    event = CompleteEvent(completion_requested=tab, text_inserted=not tab)
    return [c.text for c in comp.get_completions(Document(text), event)]


def test_completion_offers_what_the_grammar_accepts():
    comp = ZooQLCompleter(KindsHub())
    shown = _complete(comp, "SHOW ")
    assert {"DATASETS", "MODELS", "TREES"} <= set(shown) and all(w.isupper() for w in shown)
    assert not {"resnet18", "vit-b-16"} & set(_complete(comp, "SHOW "))  # no model names after SHOW
    assert _complete(comp, "SHOW M") == ["MODELS"]  # not MAX / METRIC
    described = _complete(comp, "DESCRIBE ")
    assert {"DATASET", "MODEL"} <= set(described) and "resnet18" not in described and "SHOW" not in described
    assert _complete(comp, "DESCRIBE MODEL ") == ["resnet18", "vit-b-16"]
    assert _complete(comp, "DROP MODEL IF EXISTS v") == ["vit-b-16"]
    assert _complete(comp, "RANK MODELS FOR TASK ") == ["digits", "pets"]  # tasks after TASK
    assert _complete(comp, "SHOW MODELS; DESCRIBE MODEL r") == ["resnet18"]
    assert _complete(comp, "SHOW MODELS WHERE t") == ["tree", "TRUE"]  # columns in WHERE, bare
    assert _complete(comp, "ADD MODEL 'x' AS ") == []  # a new name
    assert "WHERE" in _complete(comp, "SHOW MODELS ") and "MODELS" not in _complete(comp, "SHOW MODELS ")


def test_completion_of_logit_labels_and_paths(tmp_path):
    comp = ZooQLCompleter(KindsHub())
    assert _complete(comp, "FIND LOGITS LIKE resnet18.logit['esp") == ["espresso']", "espresso maker']"]
    assert _complete(comp, "FIND LOGITS LIKE resnet18.logit['cat") == ["cat''s eye']"]
    (tmp_path / "probes.npy").write_text("")
    assert _complete(comp, f"CREATE PROBE SET p FROM '{tmp_path}/pro") == ["bes.npy"]


def test_no_popup_on_empty_continuation_lines():
    comp = ZooQLCompleter(KindsHub())
    assert _complete(comp, "SHOW MODELS\n", tab=False) == []      # typing Enter: nothing pops up
    assert _complete(comp, "SHOW MODELS\n   ", tab=False) == []
    assert "WHERE" in _complete(comp, "SHOW MODELS\n", tab=True)  # Tab still completes
    assert _complete(comp, "SHOW MODELS\nWH", tab=False) == ["WHERE"]


# ---------------------------------------------------------------------------
# With the real engine
# ---------------------------------------------------------------------------

def _real_connect():
    import zooql

    return getattr(zooql, "connect", None)


@pytest.mark.skipif(_real_connect() is None, reason="zooql.connect not available yet")
def test_repl_over_a_real_hub(tmp_path):
    import zooql

    hub = zooql.connect(str(tmp_path / "hub"))
    try:
        rc, out, err, _ = drive("SHOW\rMODELS;\rSHOW MODELZ;\r.models\r\x04", hub=hub)
    finally:
        hub.close()
    assert rc == 0
    assert "rows)" in out or "row)" in out
    assert err.startswith("Error: ") and "Traceback" not in err
