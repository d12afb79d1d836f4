"""SELECT through ZooQL vs the same SQL in DuckDB directly, on one catalog file.

Builds a hub whose catalog holds ``--models`` models and ``--evals`` evaluations (written
straight into the catalog tables with DuckDB, no ADD MODELS), then times three queries
(a filter + ORDER BY + LIMIT, a GROUP BY, a join of models with evaluations) through
``hub.execute`` and through a plain read-only DuckDB connection, and the parse + bind +
plan part of ZooQL's time on its own. Prints a table (median of ``--reps`` runs, ms).

    OMP_NUM_THREADS=1 python benchmarks/select_bench.py --models 1000000 --evals 5000000
"""
from __future__ import annotations

import argparse
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
    import zooql

    hub = zooql.connect(f"{folder}/hub")
    hub.execute("ADD MODEL 'hf:x/seed' AS seed_model")     # creates the catalog and its schema
    with hub.store.write() as con:
        con.execute(f"""INSERT INTO models (name, source, loadable, tree, parent, downloads, tags)
            SELECT 'm' || i, 'hf:org/m' || i, false, 't' || (i % 1000), NULL, (i * 7919) % 100000,
                   '{{"license": "mit"}}' FROM range({n_models}) r(i)""")
        con.execute(f"""INSERT INTO evaluations (model, dataset, metric, score)
            SELECT 'm' || (i % {n_models}), 'd' || (i % 50), 'acc', ((i * 31) % 1000) / 1000.0
            FROM range({n_evals}) r(i)""")
    return hub


def median_ms(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=1_000_000)
    ap.add_argument("--evals", type=int, default=5_000_000)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    from zooql.api import BindContext, bind, make_plan
    from zooql.methods import registry

    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        hub = build(folder, args.models, args.evals)
        print(f"built {args.models} models, {args.evals} evaluations in {time.perf_counter() - t0:.1f}s")
        path = str(hub.store.catalog_path)
        print(f"| query | DuckDB ms | ZooQL ms | ratio | parse+bind+plan ms |")
        print(f"|---|---|---|---|---|")
        for name, sql in QUERIES.items():
            def direct():
                con = duckdb.connect(path, read_only=True)
                try:
                    return con.sql(sql).to_arrow_table()
                finally:
                    con.close()

            def overhead():
                stmt = registry.parse_one(sql)
                with hub.store.read() as con:
                    bc = BindContext(con=con, base_dir=folder, dispatch=registry.dispatch(),
                                     settings=registry.settings(), relations=registry.relations(),
                                     parse=registry.parse_one)
                    make_plan(bind(stmt, bc), registry.dispatch())

            assert direct().num_rows == hub.execute(sql).to_arrow().num_rows
            d = median_ms(direct, args.reps)
            z = median_ms(lambda: hub.execute(sql).to_arrow(), args.reps)
            o = median_ms(overhead, args.reps)
            print(f"| {name} | {d:.1f} | {z:.1f} | {z / d:.2f}x | {o:.1f} |")


if __name__ == "__main__":
    main()
