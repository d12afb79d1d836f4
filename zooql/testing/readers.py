"""Reader/writer processes for the concurrency tests (tests/test_concurrency*.py).

A writer process runs one statement with one step slowed or gated
(:func:`zooql.testing.zoo.slow_down`), and reader processes time ``SHOW MODELS`` and read
counts (name -> SQL) meanwhile, each try recording whether the writer still held the hub
lock. ``check_reads`` asserts what every such test asserts: all reads happened during the
write and each answered in under a second::

    readers = start_readers(hub, go, counts, n=3, tries=20, cwd=root)
    w = start_writer(hub, "forward", 0.4, "PROBE WITH ps", base, cwd=root)
    go.write_text("")                       # the readers begin
    outs = collect(readers)
    finish(w)
    tries = check_reads(outs, "PROBE", n=3, tries=20)
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

WRITER = """
import zooql
{prelude}
from zooql.testing.zoo import slow_down
slow_down({step!r}, {seconds!r}, {until!r})
h = zooql.connect({hub!r})
print("START", flush=True)
h.execute({stmt!r}, base_dir={base!r})
print("DONE", flush=True)
"""

READER = """
import json, os, time, zooql
hub = {hub!r}
counts = {counts!r}
h = zooql.connect(hub)
h.execute("SHOW MODELS")            # warm up: imports and the parser, not the hub
print("READY", flush=True)
while not os.path.exists({go!r}):   # the writer has started
    time.sleep(0.01)
out = []
for i in range({tries}):
    t0 = time.perf_counter()
    models = len(h.execute("SHOW MODELS").rows)
    dt = time.perf_counter() - t0
    with h.store.read() as con:
        seen = {{k: con.execute(sql).fetchone()[0] for k, sql in counts.items()}}
    writing = os.path.getsize(os.path.join(hub, "hub.lock")) > 0   # the writer's pid is in it
    out.append(dict(dt=dt, models=models, writing=writing, **seen))
    time.sleep(0.05)
print(json.dumps(out))
"""


def py(code: str, cwd) -> subprocess.Popen:
    """A Python process running ``code``, its stdout and stderr piped as text."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def start_readers(hub, go, counts: dict[str, str], *, n: int, tries: int, cwd) -> list[subprocess.Popen]:
    """``n`` reader processes, warmed up; they start reading once the file ``go`` exists."""
    go = Path(go)
    if go.exists():
        go.unlink()
    procs = [py(READER.format(hub=str(hub), counts=counts, tries=tries, go=str(go)), cwd) for _ in range(n)]
    for p in procs:
        assert p.stdout.readline().strip() == "READY", p.stderr.read()
    return procs


def start_writer(hub, step: str, seconds: float, stmt: str, base, *, until=None, prelude: str = "", cwd,
                 timeout: float = 60) -> subprocess.Popen:
    """The writer process, returned once its statement holds the writer lock. Its ``step``
    sleeps ``seconds``, or with ``until`` waits for that file (at most ``seconds``)."""
    w = py(WRITER.format(prelude=prelude, step=step, seconds=seconds, until=until and str(until), hub=str(hub),
                         stmt=stmt, base=str(base)), cwd)
    try:
        assert w.stdout.readline().strip() == "START", w.stderr.read()
        lock = Path(hub) / "hub.lock"
        deadline = time.monotonic() + timeout
        while lock.read_text().strip() != str(w.pid):   # the statement holds the writer lock
            assert time.monotonic() < deadline and w.poll() is None, w.stderr.read()
            time.sleep(0.01)
    except BaseException:
        if w.poll() is None:
            w.kill()
        w.communicate()
        raise
    return w


def collect(readers: list[subprocess.Popen], timeout: float = 300) -> list[list[dict]]:
    """Each reader's tries, once it has exited cleanly."""
    outs = []
    for p in readers:
        so, se = p.communicate(timeout=timeout)
        assert p.returncode == 0, se
        outs.append(json.loads(so))
    return outs


def finish(w: subprocess.Popen, timeout: float = 300) -> str:
    """Wait for the writer; its statement must have finished (``DONE``)."""
    so, se = w.communicate(timeout=timeout)
    assert w.returncode == 0 and "DONE" in so, se
    return so


def check_reads(outs: list[list[dict]], what: str, *, n: int, tries: int, limit: float = 1.0) -> list[dict]:
    """All ``n * tries`` reads ran while the writer held the lock, each under ``limit`` s."""
    flat = [t for out in outs for t in out]
    assert len(flat) == n * tries
    assert all(t["writing"] for t in flat), f"the readers must run while {what} writes"
    slow = [round(t["dt"], 3) for t in flat if t["dt"] >= limit]
    print(f"{what}: {len(flat)} reads, max {max(t['dt'] for t in flat):.3f} s")
    assert not slow, f"reads slower than {limit:g} s during {what}: {slow}"
    return flat
