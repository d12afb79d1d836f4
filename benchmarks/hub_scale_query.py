"""Hub scale, the query side (issue 14): SHOW, SELECT to Arrow, DESCRIBE and completion on a
catalog of a million models, each against the same work done in DuckDB directly, in the
same run, on the same catalog file.

The catalog is built fast with DuckDB (set-based INSERT ... SELECT FROM range) into a hub
made by zooql; a hub built earlier with the same size in the same folder is reused.
``rows(args)`` returns one dict per figure (``figure, baseline_s, zooql_s, ratio, target,
met, peak_rss_mb, note``) for ``benchmarks/hub_scale.py``; run standalone it prints a table
and appends it to RESULTS.md:

    OMP_NUM_THREADS=1 python benchmarks/hub_scale_query.py --models 1000000 --dir ~/.cache/zooql/bench/hsq
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time

import duckdb

MODEL_COLUMNS = ("name, source, checkpoint, loadable, tree, parent, downloads, task, family, params, "
                 "num_logits, input_size, preprocess, tags, description, added_at")


def build(folder: str, n_models: int):
    """A hub in ``folder/hub`` holding ``n_models`` name-only models (downloads spread over
    0..1e6, 1,000 trees, a license tag); reused when ``folder/sizes`` says so."""
    import zooql

    sizes = os.path.join(folder, "sizes")
    if os.path.exists(sizes) and open(sizes).read() == str(n_models):
        return zooql.connect(os.path.join(folder, "hub"), create=False)
    hub = zooql.connect(os.path.join(folder, "hub"))
    hub.execute("ADD MODEL 'hf:org/seed' AS seed")       # creates the catalog with its schema
    with hub.store.write() as con:
        con.execute("DELETE FROM models")
        con.execute(f"""INSERT INTO models (name, source, loadable, tree, parent, downloads, task, tags)
            SELECT 'org' || (i % 997) || '/model-' || i, 'hf:org' || (i % 997) || '/model-' || i, false,
                   't' || (i % 1000), CASE WHEN i % 3 = 0 THEN NULL ELSE 'org' || ((i - 1) % 997) || '/model-'
                   || (i - 1) END, (i * 7919) % 1000003, 'image-classification',
                   CASE WHEN i % 2 = 0 THEN '{{"license": "mit"}}' ELSE '{{"license": "apache-2.0"}}' END
            FROM range({n_models}) r(i)""")
    with open(sizes, "w") as f:
        f.write(str(n_models))
    return hub


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _pair(base, zoo, reps: int) -> tuple[float, float]:
    """Medians (s) of ``reps`` interleaved runs of the baseline and of ZooQL (after one
    warm-up run of each)."""
    base(), zoo()
    b, z = [], []
    for _ in range(reps):
        b.append(_timed(base))
        z.append(_timed(zoo))
    return statistics.median(b), statistics.median(z)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _row(figure, b, z, target, ok, note) -> dict:
    return dict(figure=figure, baseline_s=b, zooql_s=z, ratio=z / b if b else float("nan"), target=target,
                met=bool(ok), peak_rss_mb=round(_rss_mb(), 1), note=note)


def _catalog_sql(hub, statement: str) -> tuple[str, list]:
    """The DuckDB SQL (and parameters) that ZooQL's plan of a SHOW statement runs."""
    from zooql.methods import registry

    _, op = hub._bind_and_plan(registry.parse_one(statement), None, os.getcwd())
    return op.sql, list(op.params)


def _figures(hub, con, n: int, reps: int) -> list[dict]:
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    from zooql.repl.completer import ZooQLCompleter

    out = []
    show = "SHOW MODELS WHERE downloads > 500000 ORDER BY downloads DESC LIMIT 10"
    sql, params = _catalog_sql(hub, show)
    assert hub.execute(show).rows == con.execute(sql, params).fetchall()
    b, z = _pair(lambda: con.sql(sql, params=params).to_arrow_table(), lambda: hub.execute(show).to_arrow(), reps)
    out.append(_row(f"SHOW MODELS WHERE downloads > 500000 ORDER BY downloads DESC LIMIT 10 ({n:,} models)",
                    b, z, "<= 2x and < 50 ms", z <= 2 * b and z < 0.05, "baseline: the same SQL in DuckDB"))

    sql = f"SELECT {MODEL_COLUMNS} FROM models"
    b, z = _pair(lambda: con.sql(sql).to_arrow_table(), lambda: hub.execute("SELECT * FROM models").to_arrow(),
                 max(3, reps // 2))
    out.append(_row(f"SELECT * FROM models, {n:,} rows to Arrow", b, z, "<= 1.2x", z <= 1.2 * b,
                    "baseline: DuckDB's to_arrow_table() of the same columns"))

    sql, _ = _catalog_sql(hub, "SHOW MODELS")
    b, z = _pair(lambda: con.sql(sql).to_arrow_table(), lambda: hub.execute("SHOW MODELS").to_arrow(),
                 max(3, reps // 2))
    out.append(_row(f"SHOW MODELS, {n:,} rows to Arrow", b, z, "<= 1.2x", z <= 1.2 * b,
                    "baseline: DuckDB's to_arrow_table() of the same SQL"))

    name = f"org{(n // 2) % 997}/model-{n // 2}"

    def describe_base():
        mid = con.execute("SELECT * FROM models WHERE name = ?", [name]).fetchall()[0][0]
        con.execute("SELECT idx, label FROM logits WHERE model_id = ? ORDER BY idx", [mid]).fetchall()

    b, z = _pair(describe_base, lambda: hub.execute(f"DESCRIBE MODEL \"{name}\"").rows, reps)
    out.append(_row(f"DESCRIBE MODEL ({n:,} models)", b, z, "< 50 ms", z < 0.05,
                    "baseline: the model's row and logits by point queries in DuckDB"))

    sql, params = _catalog_sql(hub, "SHOW TREES")
    b, z = _pair(lambda: con.sql(sql, params=params).to_arrow_table(), lambda: hub.execute("SHOW TREES").to_arrow(),
                 max(3, reps // 2))
    out.append(_row(f"SHOW TREES (1,000 trees, {n:,} models)", b, z, "< 200 ms (interactive)", z < 0.2,
                    "baseline: the same SQL in DuckDB (each tree names its first 5 roots, then counts the rest; in this catalog every model is a root: its parent is in another tree)"))

    comp = ZooQLCompleter(hub)
    prefix = f"org{(n // 3) % 997}/model-{n // 3}"[:-1]
    text = f"DESCRIBE MODEL \"{prefix}"
    sql = "SELECT name FROM models WHERE name ILIKE ? ORDER BY name LIMIT 50"
    event = CompleteEvent(completion_requested=True)

    def complete():
        comp._last_models = None        # every keystroke a new prefix query
        got = [c.display_text for c in comp.get_completions(Document(text), event)]
        assert got and all(g.startswith(prefix) for g in got), got[:3]

    b, z = _pair(lambda: con.execute(sql, [prefix + "%"]).fetchall(), complete, reps)
    out.append(_row(f"REPL completion of a model name ({n:,} models)", b, z, "< 50 ms", z < 0.05,
                    "a LIMIT 50 prefix query per keystroke; baseline: that query in DuckDB"))

    b, z = _pair(lambda: con.execute("SELECT name FROM models ORDER BY name").fetchall(),
                 lambda: comp.refresh(hub), max(3, reps // 2))
    out.append(_row(f"REPL name refresh after a statement ({n:,} models)", b, z, "< 100 ms", z < 0.1,
                    "hub.completions(models=False): no model names; baseline: loading every name"))
    return out


def rows(args) -> list[dict]:
    """The figures of the query side of issue 14 (see the module docstring). ``args``:
    ``models`` (default 1,000,000), ``reps`` (default 7), ``dir`` (folder for the hub;
    default: a temporary one, removed afterwards)."""
    n = int(getattr(args, "models", None) or 1_000_000)
    reps = int(getattr(args, "reps", None) or 7)
    folder = getattr(args, "dir", None)
    tmp = None
    if folder is None:
        tmp = tempfile.TemporaryDirectory(prefix="zooql-hsq-")
        folder = tmp.name
    try:
        os.makedirs(folder, exist_ok=True)
        t0 = time.perf_counter()
        reused = os.path.exists(os.path.join(folder, "sizes"))
        hub = build(folder, n)
        built = time.perf_counter() - t0
        con = duckdb.connect(str(hub.store.catalog_path), read_only=True)
        try:
            out = _figures(hub, con, n, reps)
        finally:
            con.close()
            hub.close()
        if not reused:
            out[0]["note"] += f"; catalog built in {built:.1f} s with DuckDB"
        return out
    finally:
        if tmp is not None:
            tmp.cleanup()


def table(results: list[dict]) -> list[str]:
    lines = ["| figure | baseline ms | ZooQL ms | ratio | target | met | peak RSS MB | note |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['figure']} | {r['baseline_s'] * 1000:.1f} | {r['zooql_s'] * 1000:.1f} "
                     f"| {r['ratio']:.2f}x | {r['target']} | {'yes' if r['met'] else 'NO'} "
                     f"| {r['peak_rss_mb']:.0f} | {r['note']} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--dir", default=None, help="folder for the hub (reused when built with the same size)")
    ap.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = ap.parse_args()
    lines = table(rows(args))
    print("\n".join(lines))
    if not args.no_record:
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, "RESULTS.md"), "a") as f:
            f.write(f"\n## Hub scale, query side (issue 14), {time.strftime('%Y-%m-%d')}\n\n"
                    f"Machine: shared 2-core CPU, loaded. Command: `OMP_NUM_THREADS=1 python "
                    f"benchmarks/hub_scale_query.py --models {args.models} --reps {args.reps}`. Medians of "
                    f"interleaved runs; peak RSS is the process's peak so far.\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
