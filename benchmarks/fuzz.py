"""Benchmark: the long fuzz run of issue 18 (zooql.testing.fuzz), counts by exception class.

Generates ``--n`` statements by Lark-driven mutation of every golden statement and docs
example (fixed ``--seed``), runs them against a small hub of name-only models, evaluations,
outcomes, a queries task and a probe set, and reports: outcomes by exception class, crashes
(any exception that is not a ZooQLError), statements over 10 s, failed statements that
changed a table or a file of the hub. Appends the table to benchmarks/RESULTS.md.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fuzz.py --n 100000
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100000, help="statements to generate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="stop generating after this long (the report says how many ran)")
    ap.add_argument("--no-results", action="store_true", help="do not append to RESULTS.md")
    ap.add_argument("--workers", type=int, default=1,
                    help="worker processes, each on a disjoint shard of the same seeded sequence")
    ap.add_argument("--shard", type=int, default=None, help=argparse.SUPPRESS)   # a worker: its shard
    ap.add_argument("--report", default=None, help=argparse.SUPPRESS)            # a worker: its JSON report
    args = ap.parse_args(argv)

    from zooql.testing import fuzz

    t0 = time.perf_counter()

    def progress(i, rep):
        print(f"  {'' if args.shard is None else f'[shard {args.shard}] '}{i} of {args.n} texts, {rep.n} "
              f"statements, {time.perf_counter() - t0:.0f} s, crashes {len(rep.crashes)}, leaks {len(rep.leaks)}, "
              f"hangs {len(rep.hangs)}, changes {len(rep.changes)}", flush=True)

    max_s = args.max_minutes * 60 if args.max_minutes else None
    if args.shard is not None:   # a worker of --workers: run its shard, write its report
        rep = fuzz.run(args.n, args.seed, root=REPO, progress=progress, max_seconds=max_s,
                       shard=args.shard, shards=args.workers)
        Path(args.report).write_text(json.dumps({**dataclasses.asdict(rep), "outcomes": dict(rep.outcomes)}))
        return 0
    if args.workers > 1:
        rep = _parallel(args, argv)
    else:
        rep = fuzz.run(args.n, args.seed, root=REPO, progress=progress, max_seconds=max_s)
    lines = ["| outcome | statements |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(rep.outcomes.items(), key=lambda kv: -kv[1])]
    lines += [f"| **total** | {rep.n} |"]
    cut = (f" (stopped by --max-minutes {args.max_minutes:g} after {rep.texts} of {args.n} texts)"
           if rep.texts < args.n else "")
    summary = (f"{rep.texts} generated texts{cut}, {rep.n} statements ({rep.explained} bound and planned "
               f"only: they would run models), {rep.seconds:.0f} s, slowest statement {rep.slowest:.2f} s. "
               f"Non-ZooQL exceptions: {len(rep.crashes)}; statements over 10 s: {len(rep.hangs)}; "
               f"failed statements that changed a table or file: {len(rep.changes)}; ZooQL errors carrying "
               f"DuckDB's own text: {len(rep.leaks)}.")
    print("\n".join(lines))
    print(summary)
    for what, items in (("crash", rep.crashes), ("slow", rep.hangs), ("change", rep.changes),
                        ("leak", rep.leaks)):
        for item in items[:20]:
            print(what, item)
    if not args.no_results:
        cmd = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fuzz.py " + " ".join(argv or sys.argv[1:])
        details = "".join(f"\n- {what}: `{item!r}`" for what, items in
                          (("crash", rep.crashes), ("slow", rep.hangs), ("change", rep.changes),
                           ("leak", rep.leaks)) for item in items[:10])
        block = (f"\n\n## Fuzz (issue 18), {datetime.date.today().isoformat()}\n\n"
                 f"Machine: 2-core CPU, shared. Command: `{cmd.strip()}` (seed {args.seed}).\n\n"
                 + "\n".join(lines) + "\n\n" + summary + details + "\n")
        with open(REPO / "benchmarks" / "RESULTS.md", "a", encoding="utf-8") as f:
            f.write(block)
    return 0 if not (rep.crashes or rep.hangs or rep.changes or rep.leaks) else 1


def _parallel(args, argv):
    """Run ``--workers`` shards in child processes and merge their reports."""
    import collections
    import subprocess
    import tempfile

    from zooql.testing import fuzz

    base = [a for a in (argv if argv is not None else sys.argv[1:])]
    with tempfile.TemporaryDirectory(prefix="zooql-fuzz-workers-") as tmp:
        procs = [subprocess.Popen([sys.executable, __file__, *base, "--shard", str(k), "--report",
                                   os.path.join(tmp, f"{k}.json"), "--no-results"]) for k in range(args.workers)]
        for p in procs:
            p.wait()
        reps = [json.loads(Path(tmp, f"{k}.json").read_text()) for k in range(args.workers)]
    rep = fuzz.Report()
    for r in reps:
        rep.n += r["n"]
        rep.texts += r["texts"]
        rep.outcomes.update(collections.Counter(r["outcomes"]))
        for key in ("crashes", "hangs", "changes", "leaks"):
            getattr(rep, key).extend(tuple(x) for x in r[key])
        rep.explained += r["explained"]
        rep.slowest = max(rep.slowest, r["slowest"])
        rep.seconds = max(rep.seconds, r["seconds"])
    return rep


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
