"""Hub scale on one machine (issue 14): every figure as a ratio against a baseline measured
in the same run, with the peak RSS of the process that ran it.

Each measurement runs in its own subprocess (``--child``), which reports its time and its
own peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``); the parent prints a table and
appends it to ``benchmarks/RESULTS.md``.

    OMP_NUM_THREADS=1 python benchmarks/hub_scale.py --part catalog --models 1000000 --evals 5000000

Parts: ``catalog`` (this file: ADD MODELS of name-only rows, IMPORT EVALUATIONS, each against
DuckDB's own ``read_csv`` + INSERT of the same file into the same schema); ``query``,
``descriptors``, ``probe`` come from the optional modules ``benchmarks/hub_scale_query.py``,
``hub_scale_desc.py``, ``hub_scale_probe.py`` (each ``rows(args) -> list[dict]`` with keys
figure, baseline_s, zooql_s, ratio, target, met, peak_rss_mb, note), skipped when absent.
Generated files go under ``--work`` (default: a temporary folder), deleted at the end.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PARTS = {"query": "hub_scale_query", "descriptors": "hub_scale_desc", "probe": "hub_scale_probe"}


# ---- children: one measurement each ---------------------------------------------------------

def _schema_db(path: str):
    import duckdb

    con = duckdb.connect(path)
    con.execute(_core_schema())
    return con


def _core_schema() -> str:
    from importlib import resources

    return resources.files("zooql.storage").joinpath("schema.sql").read_text()


def child(kind: str, work: str, data: str) -> dict:
    """One timed step (in a fresh process): returns {"seconds", "rows"}."""
    import zooql

    out: dict = {}
    if kind in ("baseline_models", "baseline_evals"):
        db = os.path.join(work, f"{kind}.duckdb")
        if os.path.exists(db):
            os.unlink(db)
        con = _schema_db(db)
        t0 = time.perf_counter()
        if kind == "baseline_models":
            con.execute(f"INSERT INTO models (name, source, loadable, downloads, task, tags) SELECT name, source, "
                        f"false, downloads, task, json_object('license', license) FROM read_csv('{data}')")
            out["rows"] = con.execute("SELECT count(*) FROM models").fetchall()[0][0]
        else:
            con.execute(f"INSERT INTO evaluations (model, dataset, metric, score) SELECT model, dataset, metric, "
                        f"score FROM read_csv('{data}')")
            out["rows"] = con.execute("SELECT count(*) FROM evaluations").fetchall()[0][0]
        con.close()
        out["seconds"] = time.perf_counter() - t0
        os.unlink(db)
    else:
        shutil.rmtree(os.path.join(work, f"{kind}-hub"), ignore_errors=True)
        h = zooql.connect(os.path.join(work, f"{kind}-hub"))
        h.execute("SHOW MODELS")
        stmt = {"zooql_models": f"ADD MODELS FROM '{data}'", "zooql_models_rerun": f"ADD MODELS FROM '{data}'",
                "zooql_evals": f"IMPORT EVALUATIONS FROM '{data}'"}[kind]
        if kind == "zooql_models_rerun":
            h.execute(stmt)
        t0 = time.perf_counter()
        res = h.execute(stmt)
        out["seconds"] = time.perf_counter() - t0
        out["message"] = res.message[:120]
        with h.store.read() as con:
            table = "evaluations" if kind == "zooql_evals" else "models"
            out["rows"] = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
        h.close()
    import resource

    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_child(kind: str, work: str, data: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, __file__, "--child", kind, "--work", work, "--data", data],
                       capture_output=True, text=True, env=env, cwd=str(ROOT))
    if p.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# ---- data ------------------------------------------------------------------------------------

def make_models_csv(path: str, n: int) -> None:
    import duckdb

    duckdb.connect().execute(f"""COPY (SELECT 'm' || i AS name, 'hf:org/m' || i AS source,
        (i * 7919) % 1000000 AS downloads, ['text-generation', 'image-classification', 'fill-mask'][1 + i % 3] AS task,
        ['mit', 'apache-2.0', 'llama3', ''][1 + i % 4] AS license FROM range({n}) r(i)) TO '{path}' (HEADER)""")


def make_evals_csv(path: str, n: int) -> None:
    import duckdb

    per = 100000
    duckdb.connect().execute(f"""COPY (SELECT 'm' || (i % {per}) AS model, 'd' || (i // {per}) AS dataset,
        'acc' AS metric, ((i * 31) % 1000) / 1000.0 AS score FROM range({n}) r(i)) TO '{path}' (HEADER)""")


# ---- the catalog part -----------------------------------------------------------------------

def _versus_duckdb(work: str, kind: str, data: str, n: int, figure: str, limit: float) -> dict:
    """One catalog figure: the ZooQL child against the DuckDB read_csv + INSERT child."""
    base = run_child(f"baseline_{kind}", work, data)
    zq = run_child(f"zooql_{kind}", work, data)
    assert zq["rows"] == base["rows"] == n, (zq, base)
    ratio = zq["seconds"] / base["seconds"]
    return dict(figure=figure, baseline_s=base["seconds"], zooql_s=zq["seconds"], ratio=ratio,
                target=f"<= {limit:g}x", met=ratio <= limit, peak_rss_mb=zq["peak_rss_mb"],
                note=f"baseline: DuckDB read_csv + INSERT into the same schema (RSS {base['peak_rss_mb']:.0f} MB)")


def catalog_rows(args) -> list[dict]:
    rows = []
    work = args.work
    if args.models:
        data = os.path.join(work, "models.csv")
        make_models_csv(data, args.models)
        rows.append(_versus_duckdb(work, "models", data, args.models, f"ADD MODELS of {args.models:,} name-only rows", 5))
        base_s = rows[-1]["baseline_s"]
        if args.rerun:
            re = run_child("zooql_models_rerun", work, data)
            rows.append(dict(figure=f"ADD MODELS rerun of the same {args.models:,} rows (all skipped)",
                             baseline_s=base_s, zooql_s=re["seconds"], ratio=re["seconds"] / base_s,
                             target="-", met=None, peak_rss_mb=re["peak_rss_mb"], note=re["message"][:60]))
        shutil.rmtree(os.path.join(work, "zooql_models-hub"), ignore_errors=True)
        shutil.rmtree(os.path.join(work, "zooql_models_rerun-hub"), ignore_errors=True)
        os.unlink(data)
    if args.evals:
        data = os.path.join(work, "evals.csv")
        make_evals_csv(data, args.evals)
        rows.append(_versus_duckdb(work, "evals", data, args.evals, f"IMPORT EVALUATIONS of {args.evals:,} rows", 3))
        os.unlink(data)
    return rows


# ---- the other parts' arguments ---------------------------------------------------------------

def part_args(part: str, mod, args) -> argparse.Namespace:
    """The namespace a part's ``rows(args)`` reads: its own defaults (the same as its
    standalone command), with the sizes this command sets for it."""
    if part == "query":
        return argparse.Namespace(models=args.models or 1_000_000, reps=args.query_reps, dir=None)
    if part == "descriptors":
        a = mod.parser().parse_args([])
        a.logits, a.reduced_logits, a.queries = args.logits, args.reduced_logits, args.desc_queries
        a.drop_logits = a.logits
        a.cache = os.path.join(args.work, "descriptors")
        return a
    return argparse.Namespace(models=args.probe_models, probes=256, block=args.probe_block, per_model=300,
                              warm=64, workdir=os.path.join(args.work, "probe"), keep=False)


# ---- table and RESULTS.md ---------------------------------------------------------------------

def table(rows: list[dict]) -> str:
    def f(v, fmt):
        return "-" if v is None else format(v, fmt)
    out = ["| figure | baseline s | ZooQL s | ratio | target | met | peak RSS MB | note |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        met = "-" if r.get("met") is None else ("yes" if r["met"] else "**no**")
        out.append(f"| {r['figure']} | {f(r.get('baseline_s'), '.3f')} | {f(r.get('zooql_s'), '.3f')} | "
                   f"{f(r.get('ratio'), '.2f')}x | {r.get('target', '-')} | {met} | {f(r.get('peak_rss_mb'), '.0f')} | "
                   f"{r.get('note', '')} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", default="catalog", choices=["catalog", *PARTS, "all"])
    ap.add_argument("--models", type=int, default=1_000_000, help="name-only rows for ADD MODELS (0: skip)")
    ap.add_argument("--evals", type=int, default=5_000_000, help="rows for IMPORT EVALUATIONS (0: skip)")
    ap.add_argument("--rerun", action="store_true", help="also time a rerun of ADD MODELS (every row skipped)")
    ap.add_argument("--query-reps", dest="query_reps", type=int, default=5, help="part query: repetitions")
    ap.add_argument("--logits", type=int, default=10_000_000, help="part descriptors: logits of the store")
    ap.add_argument("--reduced-logits", dest="reduced_logits", type=int, default=1_000_000,
                    help="part descriptors: gallery of the reduced-index row (beyond 1M: the whole store)")
    ap.add_argument("--desc-queries", dest="desc_queries", type=int, default=5, help="part descriptors: queries")
    ap.add_argument("--probe-models", dest="probe_models", type=int, default=10_000, help="part probe: models")
    ap.add_argument("--probe-block", dest="probe_block", type=int, default=1000, help="part probe: ABBA block")
    ap.add_argument("--work", default=None, help="folder for generated files (default: a temporary one)")
    ap.add_argument("--no-record", action="store_true", help="do not append to benchmarks/RESULTS.md")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--data", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.work, args.data)))
        return 0
    own = args.work is None
    args.work = args.work or tempfile.mkdtemp(prefix="zooql-hub-scale-")
    os.makedirs(args.work, exist_ok=True)
    rows: list[dict] = []
    try:
        if args.part in ("catalog", "all"):
            rows += catalog_rows(args)
        for part, mod in PARTS.items():
            if args.part not in (part, "all"):
                continue
            sys.path.insert(0, str(HERE))
            try:
                m = importlib.import_module(mod)
            except ModuleNotFoundError as exc:
                if exc.name != mod:
                    raise
                print(f"part {part}: benchmarks/{mod}.py is not there; skipped")
                continue
            rows += m.rows(part_args(part, m, args))
    finally:
        if own:
            shutil.rmtree(args.work, ignore_errors=True)
    text = table(rows)
    print(text)
    if rows and not args.no_record:
        given = list(argv if argv is not None else sys.argv[1:])
        shown = ["<folder>" if i > 0 and given[i - 1] == "--work" else a.split("=")[0] + "=<folder>"
                 if a.startswith("--work=") else a for i, a in enumerate(given)]
        cmd = "OMP_NUM_THREADS=1 python benchmarks/hub_scale.py " + " ".join(shown)
        with open(HERE / "RESULTS.md", "a") as f:
            f.write(f"\n\n## Hub scale (issue 14), {datetime.date.today().isoformat()}\n\n"
                    f"Machine: shared 2-core CPU, loaded. Command: `{cmd.strip()}`.\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
