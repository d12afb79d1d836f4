"""RECOMMEND's validated default: the choosers compared by a nested leave-one-dataset-out.

For every outer fold (a dataset of the table, hidden), this script does once what TRAIN
RECOMMENDER does on the training split -- ModelLens (300 steps) and the baselines fitted on
the other datasets, plus the inner leave-one-dataset-out validation lists
(``select.validation_lists``: ``val_folds`` inner datasets, ``val_epochs`` ModelLens steps)
-- and stores, per outer fold, the inner lists and the raw scores of the four methods on the
hidden dataset's lists (``dump``).  Every chooser of ``select.CHOOSERS`` is then applied to
the inner lists of a fold *only* and its weights to that fold's hidden lists (``eval``): the
evaluated dataset never influences the choice (the inner lists are computed without it).

The dump also stores the rows of DUMP_METHODS beyond VAL_METHODS (``knn_soft``), so a candidate
outside the shipped set is compared on the same folds: ``eval`` prints it alone and the ``mean``
and ``bagged`` rules with it added to the candidate grid.

The cost is one auto LODO run per table; the choosers themselves are cheap, so all of them
are compared on the very same predictions.

Usage:
    python benchmarks/recommend_chooser.py dump --table openclip --out DIR   # lovm | timm | llm too
    python benchmarks/recommend_chooser.py eval --dirs DIR1,DIR2,...
"""
from __future__ import annotations

import argparse
import os
import pickle
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402

from zooql.methods.modellens.metrics import kendall_tau_at_k, ndcg_at_k, ndcg_lovm_at_k  # noqa: E402
from zooql.methods.modellens.select import (VAL_METHODS, make_baselines, memo_embedder,  # noqa: E402
                                            seed_models, validation_lists, _score_vec)

# every method whose rows a dump stores (VAL_METHODS first): candidates that are not in the
# shipped set are compared on the same folds without a second dump
DUMP_METHODS = tuple(dict.fromkeys(VAL_METHODS + ("knn_soft", "modellens@1", "modellens@2")))


def _load(table):
    import recommend_bench as rb

    if table == "lovm":
        recs, side, meta = rb.load_openclip()
        recs, side = rb.lovm_subset(recs, side)
        return recs, side, meta
    return rb.LOADERS[table]()


def dump(table: str, out: Path, folds=None):
    import torch

    from zooql.methods.modellens.data import SideInfo
    from zooql.methods.modellens.recommender import Recommender, _embed

    torch.set_num_threads(1)
    recs, side, meta = _load(table)
    cfg = Recommender().config
    emb = memo_embedder(_embed)
    out.mkdir(parents=True, exist_ok=True)
    D = len(recs.datasets)
    for di in (folds if folds is not None else range(D)):
        path = out / f"fold{di:03d}.pkl"
        if path.exists() or not _claim(path):
            continue
        t0 = time.time()
        d = recs.datasets[di]
        train = recs.subset(recs.d_idx != di)
        side_tr = SideInfo({k: v for k, v in side.dataset_text.items() if k != d}, side.model_features)
        methods = {"modellens": Recommender(**cfg, text_embedder=emb).fit(train, side_tr)}
        for name, m in seed_models(cfg, emb, DUMP_METHODS).items():
            methods[name] = m.fit(train, side_tr)
        for name, b in make_baselines(meta["reference"], emb, DUMP_METHODS).items():
            methods[name] = b.fit(train, side_tr)
        desc = side.dataset_text.get(d)
        outer = []
        sel = recs.d_idx == di
        for k in np.unique(recs.k_idx[sel]):
            s2 = sel & (recs.k_idx == k)
            models = [recs.models[j] for j in recs.m_idx[s2]]
            S = np.stack([_score_vec(methods[n], d, recs.metrics[k], models, desc) for n in DUMP_METHODS])
            outer.append((recs.score[s2].astype(np.float64), S))
        t1 = time.time()
        inner, inner_folds = validation_lists(train, side_tr, cfg, emb, meta["reference"],
                                              methods=DUMP_METHODS)
        rec = {"table": table, "methods": DUMP_METHODS, "dataset": d, "outer": outer, "inner": inner, "inner_folds": inner_folds,
               "rel_scale": meta.get("rel_scale"), "seconds_fit": t1 - t0, "seconds_val": time.time() - t1}
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(rec))
        tmp.rename(path)
        print(f"{table} fold {di} {d!r}: fit {t1 - t0:.0f}s, validation {time.time() - t1:.0f}s", flush=True)


def _claim(path: Path) -> bool:
    """Take a fold for this process (``.claim`` beside it, created exclusively), so that
    several ``dump`` processes on one table share its folds instead of repeating them."""
    try:
        os.close(os.open(path.with_suffix(".claim"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def _score(truth, pred, rel_scale):
    return (ndcg_at_k(truth, pred), ndcg_lovm_at_k(truth, pred, rel_scale=rel_scale),
            kendall_tau_at_k(truth, pred))


def _sliced(rec, names):
    """A dump's inner and outer lists with the score rows of ``names`` only (in that order)."""
    have = list(rec.get("methods", VAL_METHODS))
    idx = [have.index(n) for n in names]
    return ([(f, t, S[idx]) for f, t, S in rec["inner"]], [(t, S[idx]) for t, S in rec["outer"]])


def evaluate(dirs: list[Path]):
    from zooql.methods.modellens.select import CHOOSERS, blend_scores, candidate_grid

    lines = []
    for dr in dirs:
        recs = [pickle.loads(p.read_bytes()) for p in sorted(dr.glob("fold*.pkl"))]
        if not recs:
            continue
        table, rs = recs[0]["table"], recs[0]["rel_scale"]
        extra = [m for m in recs[0].get("methods", VAL_METHODS) if m not in VAL_METHODS]
        pure = [*VAL_METHODS, *extra]
        rows: dict[str, list] = {m: [] for m in pure}
        picks: dict[str, list] = {}
        for r in recs:
            for truth, S in _sliced(r, pure)[1]:
                for j, m in enumerate(pure):
                    rows[m].append(_score(truth, S[j], rs))
            inner, outer = _sliced(r, VAL_METHODS)
            for cname, chooser in CHOOSERS.items():
                w = chooser(inner)
                picks.setdefault(cname, []).append(tuple(np.round(w, 2)))
                for truth, S in outer:
                    rows.setdefault(cname, []).append(_score(truth, blend_scores(w, S), rs))
            if extra:   # the shipped rules with the extra candidates added to the grid
                inner_x, outer_x = _sliced(r, pure)
                grid_x = candidate_grid(len(pure))
                for cname in ("mean", "bagged"):
                    w = CHOOSERS[cname](inner_x, grid_x)
                    for truth, S in outer_x:
                        rows.setdefault(f"{cname} (+{'+'.join(extra)})", []).append(
                            _score(truth, blend_scores(w, S), rs))
        agg = {m: np.mean(v, axis=0) for m, v in rows.items()}
        grid = candidate_grid()
        held = [o for r in recs for o in _sliced(r, VAL_METHODS)[1]]
        fixed = [np.mean([ndcg_at_k(t, blend_scores(w, S)) for t, S in held]) for w in grid]
        hind = int(np.argmax(fixed))
        best_b = max(("avg_rank", "imagenet", "knn_dataset"), key=lambda m: agg[m][0])
        lines += [f"### {table}: {len(recs)} outer folds, {len(rows['modellens'])} lists "
                  f"(fit {sum(r['seconds_fit'] for r in recs):.0f}s, inner validation "
                  f"{sum(r['seconds_val'] for r in recs):.0f}s in all)", "",
                  "| method | ndcg5 | ndcg5_lovm | tau5 | ndcg5 - best baseline (" + best_b + ") |",
                  "|---|---:|---:|---:|---:|"]
        for m, v in agg.items():
            lines.append(f"| {m} | {v[0]:.3f} | {v[1]:.3f} | {v[2]:.3f} | {v[0] - agg[best_b][0]:+.3f} |")
        lines += ["", f"* Ceiling of the candidate set (hindsight, not a method: the one fixed candidate "
                  f"best on these held-out lists): {dict(zip(VAL_METHODS, np.round(grid[hind], 2).tolist()))} "
                  f"ndcg5 {fixed[hind]:.3f} ({fixed[hind] - agg[best_b][0]:+.3f} over {best_b})"]
        for cname, ps in picks.items():
            cnt: dict = {}
            for p in ps:
                cnt[p] = cnt.get(p, 0) + 1
            txt = "; ".join(f"{dict(zip(VAL_METHODS, [float(x) for x in p]))} x{n}" for p, n in
                            sorted(cnt.items(), key=lambda kv: -kv[1]))
            lines.append(f"* {cname} weights per fold: {txt}")
        lines.append("")
    print("\n".join(lines))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=("dump", "eval"))
    ap.add_argument("--table", default="openclip", help="openclip | lovm | timm | llm")
    ap.add_argument("--out", default=None)
    ap.add_argument("--dirs", default="")
    ap.add_argument("--folds", default=None, help="comma-separated outer fold indices (default all)")
    args = ap.parse_args(argv)
    if args.cmd == "dump":
        folds = [int(x) for x in args.folds.split(",")] if args.folds else None
        dump(args.table, Path(args.out), folds)
    else:
        evaluate([Path(x) for x in args.dirs.split(",") if x])
    return 0


if __name__ == "__main__":
    sys.exit(main())
