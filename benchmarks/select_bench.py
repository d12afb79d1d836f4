"""SELECT through ZooQL vs the same SQL in DuckDB directly, on one catalog file.

Builds a hub whose catalog holds ``--models`` models and ``--evals`` evaluations (written
straight into the catalog tables with DuckDB, no ADD MODELS), then times three queries
(a filter + ORDER BY + LIMIT, a GROUP BY, a join of models with evaluations) through
``hub.execute`` and through a plain read-only DuckDB connection, and the parse + bind +
plan part of ZooQL's time on its own. ZooQL is timed twice: repeated (the statement's
parse and bind are cached, like a prepared statement) and as a first execution (every
cache emptied before each run). Prints a table (median of ``--reps`` runs, ms).

    OMP_NUM_THREADS=1 python benchmarks/select_bench.py --models 1000000 --evals 5000000
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time

import duckdb

QUERIES = {
    "filter+order+limit": "SELECT name, downloads FROM models WHERE tree = 't7' AND downloads > 500 "
                          "ORDER BY downloads DESC LIMIT 10",
    "group by": "SELECT dataset, count(*) AS n, avg(score) AS mean FROM evaluations GROUP BY dataset "
                "ORDER BY mean DESC",
    "join": "SELECT m.tree, count(*) AS n, max(e.score) AS best FROM models m JOIN evaluations e "
            "ON e.model = m.name WHERE e.dataset = 'd3' GROUP BY m.tree ORDER BY best DESC LIMIT 5",
}


def build(folder: str, n_models: int, n_evals: int):
    """A hub in ``folder/hub`` with ``n_models`` models and ``n_evals`` evaluations; an
    existing one built with the same sizes (``folder/sizes``) is reused."""
    import os

    import zooql

    sizes = os.path.join(folder, "sizes")
    if os.path.exists(sizes) and open(sizes).read() == f"{n_models} {n_evals}":
        return zooql.connect(f"{folder}/hub", create=False)
    hub = zooql.connect(f"{folder}/hub")
    hub.execute("ADD MODEL 'hf:x/seed' AS seed_model")     # creates the catalog and its schema
    with hub.store.write() as con:
        con.execute(f"""INSERT INTO models (name, source, loadable, tree, parent, downloads, tags)
            SELECT 'm' || i, 'hf:org/m' || i, false, 't' || (i % 1000), NULL, (i * 7919) % 100000,
                   '{{"license": "mit"}}' FROM range({n_models}) r(i)""")
        con.execute(f"""INSERT INTO evaluations (model, dataset, metric, score)
            SELECT 'm' || (i % {n_models}), 'd' || (i % 50), 'acc', ((i * 31) % 1000) / 1000.0
            FROM range({n_evals}) r(i)""")
    with open(sizes, "w") as f:
        f.write(f"{n_models} {n_evals}")
    return hub


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def clear_caches() -> None:
    """Forget every parsed and bound statement: the next one runs as a first execution."""
    from zooql.core import select, sqlcheck
    from zooql.methods import registry

    registry.parser()._parsed.cache_clear()
    sqlcheck.parse_sql_cached.cache_clear()
    select.CACHE.clear()


def phases(hub, sql: str, folder: str, first: bool) -> dict[str, float]:
    """ZooQL's phases for one statement, as ``Hub._run_one`` runs them (ms); ``first``: with
    the parse and statement caches emptied before (a first execution)."""
    from zooql.api import BindContext, bind, make_plan
    from zooql.methods import registry
    from zooql.plan import nodes as P

    if first:
        clear_caches()
    t = {}
    t0 = time.perf_counter()
    stmt = registry.parse(sql)[0]
    t1 = time.perf_counter()
    with hub.store.read() as con:
        t2 = time.perf_counter()
        bc = BindContext(con=con, base_dir=folder, dispatch=registry.dispatch(), settings=registry.settings(),
                         objects=registry.objects(), grammar=registry.parser().grammar,
                         relations=registry.relations(), parse=registry.parse_one,
                         generation=hub.store.generation())
        bound = bind(stmt, bc)
        t3 = time.perf_counter()
        op = make_plan(bound, registry.dispatch())
        t4 = time.perf_counter()
        ctx = P.ExecContext(hub.store, con, base_dir=folder, session={}, hooks=registry.hook_table())
        ctx.read_only = True
        P.execute(op, ctx).table
        t5 = time.perf_counter()
    t.update(parse=t1 - t0, connect=t2 - t1, bind=t3 - t2, plan=t4 - t3, execute=t5 - t4)
    return {k: v * 1000 for k, v in t.items()}


def first_execution(hub, sql: str) -> float:
    clear_caches()
    return timed(lambda: hub.execute(sql).to_arrow())


def measure(hub, name: str, sql: str, folder: str, reps: int) -> dict:
    """Medians over ``reps`` interleaved runs: DuckDB on an open read-only connection
    ("warm"), ZooQL's ``hub.execute(sql).to_arrow()`` repeated (its parse and statement
    caches hit) and as a first execution (caches emptied before each run); then both after
    the hub's shared connections were handed back ("cold": DuckDB connects, ZooQL reopens
    its connections; a first execution too)."""
    from zooql.storage import hub as H

    path = str(hub.store.catalog_path)
    warm_con = duckdb.connect(path, read_only=True)
    try:
        assert warm_con.sql(sql).to_arrow_table().num_rows == hub.execute(sql).to_arrow().num_rows
        d, z, zf, ph, phf = [], [], [], [], []
        for _ in range(reps):
            d.append(timed(lambda: warm_con.sql(sql).to_arrow_table()))
            z.append(timed(lambda: hub.execute(sql).to_arrow()))
            zf.append(first_execution(hub, sql))
            ph.append(phases(hub, sql, folder, first=False))
            phf.append(phases(hub, sql, folder, first=True))
    finally:
        warm_con.close()
    dc, zc = [], []
    for _ in range(max(3, reps // 2)):
        hub.store.shared.close()
        time.sleep(0.05)
        dc.append(timed(lambda: duckdb.connect(path, read_only=True).sql(sql).to_arrow_table()))
        hub.store.shared.close()
        time.sleep(0.05)
        zc.append(first_execution(hub, sql))
    med = statistics.median
    split = {k: med(p[k] for p in ph) for k in ph[0]}
    first = {k: med(p[k] for p in phf) for k in phf[0]}
    over = ("parse", "connect", "bind", "plan")
    return dict(query=name, duckdb=med(d), zooql=med(z), zooql_first=med(zf), duckdb_cold=med(dc),
                zooql_cold=med(zc), overhead=sum(split[k] for k in over),
                overhead_first=sum(first[k] for k in over), parse_first=first["parse"],
                bind_first=first["bind"], idle_s=H.READ_IDLE_S, **split)


HEADER = ("| query | DuckDB ms | ZooQL ms (repeated) | ratio | ZooQL ms (first execution) | first ratio "
          "| overhead ms (repeated) | overhead ms (first) | parse first | bind first | execute "
          "| DuckDB cold ms | ZooQL cold ms (first) | cold ratio |")


def row(r: dict) -> str:
    return (f"| {r['query']} | {r['duckdb']:.1f} | {r['zooql']:.1f} | {r['zooql'] / r['duckdb']:.2f}x "
            f"| {r['zooql_first']:.1f} | {r['zooql_first'] / r['duckdb']:.2f}x "
            f"| {r['overhead']:.2f} | {r['overhead_first']:.2f} | {r['parse_first']:.2f} | {r['bind_first']:.2f} "
            f"| {r['execute']:.1f} | {r['duckdb_cold']:.1f} | {r['zooql_cold']:.1f} "
            f"| {r['zooql_cold'] / r['duckdb_cold']:.2f}x |")


def record(lines: list[str], command: str) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "RESULTS.md"), "a") as f:
        f.write(f"\n## SELECT through ZooQL vs DuckDB directly ({time.strftime('%Y-%m-%d')})\n\n"
                f"Machine: shared 2-core CPU, loaded. Command: `{command}`.\n\n" + "\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=1_000_000)
    ap.add_argument("--evals", type=int, default=5_000_000)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--hub", default=None, help="folder to build the hub in (reused when it exists); "
                    "default: a temporary folder")
    ap.add_argument("--no-record", action="store_true", help="do not append the table to RESULTS.md")
    args = ap.parse_args()

    with (contextlib.nullcontext(args.hub) if args.hub else tempfile.TemporaryDirectory()) as folder:
        os.makedirs(folder, exist_ok=True)
        t0 = time.perf_counter()
        hub = build(folder, args.models, args.evals)
        print(f"built {args.models} models, {args.evals} evaluations in {time.perf_counter() - t0:.1f}s")
        lines = [HEADER, "|" + "---|" * (HEADER.count("|") - 1)]
        print("\n".join(lines))
        for name, sql in QUERIES.items():
            lines.append(row(measure(hub, name, sql, folder, args.reps)))
            print(lines[-1])
        if not args.no_record:
            record(lines, "OMP_NUM_THREADS=1 python benchmarks/select_bench.py --models "
                   f"{args.models} --evals {args.evals} --reps {args.reps}")


if __name__ == "__main__":
    main()
