"""Long run of the fault suite: SIGKILL at random points of ADD MODELS, IMPORT (300k rows),
PROBE, DISCOVER, REFRESH DESCRIPTORS, TRAIN RECOMMENDER and VACUUM, ``--kills`` times each, then check every hub (see
zooql/testing/faults.py): it opens, no half rows, CHECK HUB reports no error, the rerun
resumes to the uninterrupted result and leaves no orphan or temporary file.

    OMP_NUM_THREADS=1 python benchmarks/faults.py --kills 10

Prints a table and appends it to benchmarks/RESULTS.md (``--no-record`` to skip).
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zooql.testing import faults as F  # noqa: E402
from zooql.testing.zoo import build_zoo  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=10, help="kills per statement (default 10)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-rows", type=int, default=300_000, help="rows of the IMPORT file")
    ap.add_argument("--only", nargs="*", default=None, help="scenarios to run (default: all)")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args(argv)
    names = args.only or list(F.SCENARIOS)
    rows, failures = [], []
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zooql-faults-") as tmp:
        tmp = Path(tmp)
        zoo = build_zoo(tmp / "zoo", n_models=8, n_eval_rows=args.eval_rows)
        for i, name in enumerate(names):
            sc = F.SCENARIOS[name]
            t0 = time.perf_counter()
            t = F.make_template(sc, tmp, zoo)
            res = [F.run_kill(t, tmp, d) for d in F.delays(sc, args.kills, seed=args.seed + i)]
            bad = [r for r in res if r.problems]
            failures += [(name, r.delay, r.problems) for r in bad]
            rows.append((name, len(res), sum(r.killed for r in res), sum(r.killed and r.committed for r in res),
                         len(bad), round(time.perf_counter() - t0, 1)))
            print(f"{name}: {rows[-1]}", flush=True)
    header = ("statement", "runs", "killed mid-statement", "killed after its commit", "runs with problems",
              "seconds")
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
    total_bad = sum(r[4] for r in rows)
    summary = (f"{sum(r[1] for r in rows)} runs, {sum(r[2] for r in rows)} SIGKILLs mid-statement, "
               f"{total_bad} with a problem (a hub that does not open, half rows, CHECK HUB errors after the "
               f"kill, a rerun that fails or ends elsewhere than an uninterrupted run, orphan or temporary "
               f"files after it); {time.perf_counter() - t_all:.0f} s")
    print("\n".join(table))
    print(summary)
    for name, delay, problems in failures:
        print(f"  {name} killed at {delay:.2f} s: {problems}")
    if not args.no_record:
        cmd = "OMP_NUM_THREADS=1 python benchmarks/faults.py " + " ".join(argv if argv is not None else sys.argv[1:])
        with open(Path(__file__).with_name("RESULTS.md"), "a") as f:
            f.write(f"\n## faults.py (issue 18: SIGKILL mid-statement)\n\n"
                    f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, 2-core CPU, shared "
                    f"({platform.python_version()}); command: `{cmd.strip()}`\n\n"
                    + "\n".join(table) + f"\n\n{summary}.\n")
    return 1 if total_bad else 0


if __name__ == "__main__":
    sys.exit(main())
