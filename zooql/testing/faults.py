"""SIGKILL at random points of a writing statement, then check what it left (the fault suite,
``tests/faults/``, and ``benchmarks/faults.py``).

Each scenario builds a template hub once; every kill runs the statement in a fresh copy in
a child process (its heavy step slowed by :func:`zooql.testing.zoo.slow_down` so that the
kill lands inside it), kills it after a random delay, and then checks: the hub opens; no
half rows (the scenario's invariants); CHECK HUB reports no error (no catalog row points to
a missing or damaged file); rerunning the statement resumes and completes; after it CHECK
HUB reports nothing at all (no orphan or temporary file); the result equals an
uninterrupted run's.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import zooql
from zooql.testing.zoo import slow_down
for step, seconds in {slow!r}:
    slow_down(step, seconds)
h = zooql.connect({hub!r})
print("START", flush=True)
h.execute({stmt!r}, base_dir={base!r})
print("DONE", flush=True)
"""


@dataclass
class Scenario:
    name: str
    setup: tuple            # statements run on the template hub ({models_csv}, {probes}, ... filled in)
    statement: str
    slow: tuple = ()        # ((step, seconds), ...) in the child
    window: float = 3.0     # kills land uniformly in [0, window] seconds after START
    state: Callable | None = None   # con -> comparable summary of what the statement wrote
    invariants: Callable | None = None  # con -> list of violated invariants ("half rows")
    hub_state: Callable | None = None   # hub -> summary (instead of ``state``: a statement that writes files only)
    all_or_nothing: bool = True     # right after a kill the state is the start's or the uninterrupted run's
    stable: Callable | None = None  # state -> what no kill may change (VACUUM: FIND's results)


def running(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie does not): the tests' check that worker
    processes ended with a killed or interrupted statement, read from /proc on its own (not
    through the watchdog it checks, zooql.runtime.procs)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _q(con, sql):
    return con.execute(sql).fetchall()


def _models_state(con):
    return _q(con, "SELECT m.name, count(l.idx) FROM models m LEFT JOIN logits l ON l.model_id = m.id "
                   "GROUP BY m.name ORDER BY 1")


def _models_inv(con):
    bad = _q(con, "SELECT m.name FROM models m LEFT JOIN logits l ON l.model_id = m.id GROUP BY m.name, "
                  "m.num_logits HAVING count(l.idx) <> coalesce(m.num_logits, 0)")
    n = _q(con, "SELECT count(*) FROM models")[0][0]
    return ([f"models with partial logits: {bad}"] if bad else []) + \
        ([f"{n} models: neither none nor all of the file"] if n not in (0, 8) else [])


def _import_state(con):
    return _q(con, "SELECT count(*), round(sum(score), 6) FROM evaluations")


def _import_inv(con):
    return []  # checked against the row counts in run_kill (none or all)


def _probe_state(con):
    return _q(con, "SELECT m.name, r.n_cols, (SELECT count(*) FROM descriptor_columns d WHERE d.model_id = "
                   "r.model_id AND d.probe_set_id = r.probe_set_id) FROM probe_runs r JOIN models m ON "
                   "m.id = r.model_id ORDER BY 1")


def _probe_inv(con):
    bad = [r for r in _probe_state(con) if r[1] != r[2]]
    return [f"probe runs with partial descriptor columns: {bad}"] if bad else []


def _discover_state(con):
    return _q(con, "SELECT count(*), round(sum(score), 6) FROM discover_cache")


def _refresh_state(con):
    return _q(con, "SELECT completion, count(*) FROM probe_masks GROUP BY 1 ORDER BY 1") + \
        _q(con, "SELECT method, rank FROM probe_factors")


def _train_state(con):
    # Not the file's size and SHA-256: they are the bytes of the fitted weights, which a fit in
    # another process need not reproduce bit for bit. _train_inv checks them against the file.
    return _q(con, "SELECT name, file, fingerprint, config, records, models, datasets, metrics, stale "
                   "FROM recommenders ORDER BY name")


def _train_inv(con):
    from zooql.storage.hub import sha256_file

    folder = Path(con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()")
                  .fetchone()[0]).parent / "recommender"
    bad = []
    for name, file, size, sha in _q(con, "SELECT name, file, size, sha256 FROM recommenders"):
        path = folder / file
        if not path.exists():
            bad.append(f"recommender {name}: its file {file} is missing")
        elif path.stat().st_size != size or sha256_file(path) != sha:
            bad.append(f"recommender {name}: its file {file} does not match the recorded size and SHA-256")
    return bad


VACUUM_FIND = "FIND LOGITS LIKE m00.logit[1] WITH PROBES ps TOP 40 OPTIONS (index = '{}')"


def _vacuum_state(h):
    """The descriptor files' layout (segment files, deleted entries in the HNSW index) and
    FIND's answers (exact scan and HNSW) over them."""
    from zooql.methods.probelog.ann import HnswIndex

    with h.store.read() as con:
        rel = con.execute("SELECT dir FROM probe_sets WHERE name = 'ps'").fetchone()[0]
    root = Path(h.path) / rel
    segs = sorted(f for f in os.listdir(root / "descriptors") if f.startswith("seg-") and f.endswith(".ids.npy"))
    deleted = int(HnswIndex.load(str(root / "hnsw"))._deleted.size) if (root / "hnsw").exists() else None
    finds = [[(r[1], r[2], round(float(r[4]), 5)) for r in h.execute(VACUUM_FIND.format(i)).rows]
             for i in ("exact", "hnsw")]
    return {"segments": len(segs), "deleted_in_index": deleted, "find": finds}


SCENARIOS = {
    "add_models": Scenario("add_models", (), "ADD MODELS FROM '{models_csv}'", (("inspect", 0.3),), 2.0,
                           _models_state, _models_inv),
    "import": Scenario("import", (), "IMPORT EVALUATIONS FROM '{evaluations_csv}'", (("import", 0.2),), 0.8,
                       _import_state, _import_inv),
    "probe": Scenario("probe", ("ADD MODELS FROM '{models_csv}'", "CREATE PROBE SET ps FROM '{probes}'"),
                      "PROBE WITH ps", (("forward", 0.3),), 2.0, _probe_state, _probe_inv,
                      all_or_nothing=False),   # one commit per model
    "discover": Scenario("discover", ("ADD MODELS FROM '{models_csv}'", "IMPORT OUTCOMES FROM '{outcomes_csv}'"),
                         "DISCOVER BEST IN TREE zoo ON bench BUDGET 200 SEED 1", (("evaluate", 0.3),), 1.2,
                         _discover_state, lambda con: []),
    "refresh": Scenario("refresh", ("ADD MODELS FROM '{models_csv}'", "CREATE PROBE SET ps FROM '{probes}'",
                                    "PROBE WITH ps SAMPLE 50 PERCENT SEED 1"),
                        "REFRESH DESCRIPTORS WITH PROBES ps OPTIONS (rank = 3, iters = 5)", (("fit", 1.0),), 1.2,
                        _refresh_state, _probe_inv, all_or_nothing=False),
    "train": Scenario("train", ("IMPORT EVALUATIONS FROM '{recs_csv}'",),
                      "TRAIN RECOMMENDER WITH (dim = 4, epochs = 30, validate = false)", (("train", 0.5),), 5.0,
                      _train_state, _train_inv),
    # VACUUM writes files only (segments merged, manifest replaced, HNSW index rebuilt): it is
    # not all-or-nothing (the merge and the index rebuild publish separately), but no kill may
    # change what FIND answers, and the rerun must end in the uninterrupted run's layout.
    "vacuum": Scenario("vacuum", ("ADD MODELS FROM '{models_csv}'", "CREATE PROBE SET ps FROM '{probes}'",
                                  "PROBE WITH ps", VACUUM_FIND.format("hnsw"), "DROP MODEL m01", "DROP MODEL m04"),
                       "VACUUM ps", (("vacuum", 0.25),), 2.5, None, lambda con: [], hub_state=_vacuum_state,
                       all_or_nothing=False, stable=lambda st: st["find"]),
}


@dataclass
class Template:
    scenario: Scenario
    hub: Path
    paths: dict
    expected: list = field(default_factory=list)   # state after an uninterrupted run


def make_template(scenario: Scenario, folder: Path, zoo: dict) -> Template:
    """The scenario's starting hub (setup statements run), and the state an uninterrupted run
    of its statement reaches (run on a copy)."""
    import zooql

    hub = folder / f"template-{scenario.name}"
    h = zooql.connect(hub)
    for stmt in scenario.setup:
        h.execute(stmt.format(**zoo))
    h.close()
    ref = folder / f"reference-{scenario.name}"
    shutil.copytree(hub, ref)
    h = zooql.connect(ref)
    h.execute(scenario.statement.format(**zoo))
    expected = _state(scenario, h)
    h.close()
    return Template(scenario, hub, zoo, expected)


def _state(sc: Scenario, h):
    if sc.hub_state is not None:
        return sc.hub_state(h)
    with h.store.read() as con:
        return sc.state(con)


@dataclass
class KillResult:
    scenario: str
    delay: float
    killed: bool             # False: the statement finished before the kill
    committed: bool          # its work was visible right after the kill
    problems: list           # everything that went wrong (empty: pass)


def run_kill(t: Template, work: Path, delay: float) -> KillResult:
    """Copy the template, run the statement in a child, SIGKILL it ``delay`` s after START,
    then check the hub (see the module docstring)."""
    import zooql

    sc = t.scenario
    hub = work / f"{sc.name}-{time.time_ns()}"
    shutil.copytree(t.hub, hub)
    stmt = sc.statement.format(**t.paths)
    code = textwrap.dedent(CHILD.format(slow=sc.slow, hub=str(hub), stmt=stmt, base=str(work)))
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    problems: list = []
    line = child.stdout.readline().strip()
    if line != "START":
        child.wait()
        return KillResult(sc.name, delay, False, False, [f"child did not start: {child.stderr.read()[-500:]}"])
    time.sleep(delay)
    killed = child.poll() is None
    if killed:
        os.kill(child.pid, signal.SIGKILL)
    child.wait()
    if not killed and child.returncode != 0:
        problems.append(f"statement failed: {child.stderr.read()[-500:]}")
    try:
        h = zooql.connect(hub)
        h.execute("SHOW MODELS")
    except Exception as exc:  # noqa: BLE001 - the point is to catch anything
        return KillResult(sc.name, delay, killed, False, [f"hub does not open: {type(exc).__name__}: {exc}"])
    with h.store.read() as con:
        problems += sc.invariants(con)
    after = _state(sc, h)
    committed = after == t.expected
    start_state = _start_state(t)
    if sc.all_or_nothing and after not in (start_state, t.expected):
        problems.append(f"half a statement committed: {after}")
    if sc.stable is not None and sc.stable(after) != sc.stable(t.expected):
        problems.append(f"the kill changed what must not change: {sc.stable(after)}, "
                        f"an uninterrupted run gives {sc.stable(t.expected)}")
    errors = [r for r in h.execute("CHECK HUB").rows if r[0] == "error"]
    if errors:
        problems.append(f"CHECK HUB errors after the kill: {errors}")
    if not committed:
        try:
            h.execute(stmt, base_dir=str(work))
        except Exception as exc:  # noqa: BLE001
            problems.append(f"rerun failed: {type(exc).__name__}: {exc}")
    final = _state(sc, h)
    with h.store.read() as con:
        problems += [f"after the rerun: {p}" for p in sc.invariants(con)]
    if final != t.expected:
        problems.append(f"after the rerun: {final}, an uninterrupted run gives {t.expected}")
    left = h.execute("CHECK HUB").rows
    if left:
        problems.append(f"CHECK HUB after the rerun: {left}")
    h.close()
    shutil.rmtree(hub, ignore_errors=True)
    return KillResult(sc.name, delay, killed, committed, problems)


_START: dict = {}


def _start_state(t: Template):
    import zooql

    if t.hub not in _START:
        h = zooql.connect(t.hub)
        _START[t.hub] = _state(t.scenario, h)
        h.close()
    return _START[t.hub]


def run_kill_mid_way(t: Template, work: Path, delay: float, tries: int = 3) -> KillResult:
    """:func:`run_kill`, again with half the delay (up to ``tries`` runs) when the statement
    finished before the kill: on a fast machine a delay drawn from the scenario's window can
    outlast the statement. A run that found problems is returned as it is."""
    r = run_kill(t, work, delay)
    while not r.killed and not r.problems and tries > 1:
        delay, tries = delay / 2, tries - 1
        r = run_kill(t, work, delay)
    return r


def delays(scenario: Scenario, n: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return [float(x) for x in rng.uniform(0.05, scenario.window, n)]
