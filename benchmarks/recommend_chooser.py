"""RECOMMEND's validated default: the choosers compared by a nested leave-one-dataset-out.

For every outer fold (a dataset of the table, hidden), this script does once what TRAIN
RECOMMENDER does on the training split -- ModelLens (300 steps) and the baselines fitted on
the other datasets, plus the inner leave-one-dataset-out validation lists
(``select.validation_lists``: ``val_folds`` inner datasets, ``val_epochs`` ModelLens steps)
-- and stores, per outer fold, the inner lists and the raw scores of the four methods on the
hidden dataset's lists (``dump``).  Every chooser of ``select.CHOOSERS`` is then applied to
the inner lists of a fold *only* and its weights to that fold's hidden lists (``eval``): the
evaluated dataset never influences the choice (the inner lists are computed without it).

The dump also stores the rows of DUMP_METHODS beyond VAL_METHODS (``knn_soft`` and ModelLens
with seeds 1 and 2, ``modellens@S``), so candidates outside the shipped set are compared on the
same folds: ``eval`` prints them alone, ``ens3`` (the mean robust z-score of the three seeds) and
the ``mean`` / ``bagged`` / ``prior2se`` rules with ``ens3`` as the latent row, the hindsight
ceilings and the inner-validation noise (SE of a gain across inner datasets, SD across seeds).
Several ``dump`` processes on one table share its folds (``.claim`` files in ``--out``).

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


SEEDS = ("modellens", "modellens@1", "modellens@2")     # the rows averaged into ``ens3``
BASES = ("avg_rank", "imagenet", "knn_dataset")


def _rows(rec, names):
    """A dump's inner and outer lists with the score rows of ``names`` (in that order);
    ``ens3`` is the mean robust z-score of the three ModelLens seeds' rows."""
    from zooql.methods.modellens.select import robust_z

    have = list(rec.get("methods", VAL_METHODS))

    def pick(S):
        out = []
        for n in names:
            if n == "ens3":
                out.append(np.mean([robust_z(S[have.index(m)]) for m in SEEDS], axis=0))
            else:
                out.append(S[have.index(n)])
        return np.stack(out)
    return ([(f, t, pick(S)) for f, t, S in rec["inner"]], [(t, pick(S)) for t, S in rec["outer"]])


def _has_seeds(rec) -> bool:
    return all(m in rec.get("methods", ()) for m in SEEDS)


def choose_prior2se(lists, grid=None, k: float = 2.0) -> np.ndarray:
    """The mean rule's pick, kept only if its inner gain over avg_rank exceeds ``k`` standard
    errors over the inner datasets (a prior toward the avg_rank baseline), else avg_rank."""
    from zooql.methods.modellens.select import _argbest, candidate_grid, validation_matrix

    grid = candidate_grid() if grid is None else grid
    N, _, F = validation_matrix(lists, grid)
    c, b = _argbest(N.mean(1), grid), VAL_METHODS.index("avg_rank")
    d = F[c] - F[b]
    se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else np.inf
    return grid[c] if d.mean() > k * se else grid[b]


def _rules():
    """(row name, latent row, chooser) of every rule compared: the shipped choosers on the
    single-seed row, and the pre-registered ``mean [ens3]`` with two information rows."""
    from zooql.methods.modellens.select import CHOOSERS

    rules = [(c, "modellens", f) for c, f in CHOOSERS.items()]
    return rules + [("mean [ens3]", "ens3", CHOOSERS["mean"]), ("bagged [ens3]", "ens3", CHOOSERS["bagged"]),
                    ("prior2se [ens3]", "ens3", choose_prior2se)]


def _inner_noise(recs, latent):
    """Median over outer folds of the SE (over inner datasets) of ``latent``'s inner NDCG@5
    gain over avg_rank, and of the SD between the seeds' inner mean NDCG@5."""
    from zooql.methods.modellens.select import _ndcg_rows

    se, sd = [], []
    for r in recs:
        inner, _ = _rows(r, [latent, "avg_rank", *SEEDS])
        fold_of = np.array([f for f, _, _ in inner])
        N = np.stack([_ndcg_rows(t, S) for _, t, S in inner], axis=1)
        F = np.stack([N[:, fold_of == f].mean(1) for f in sorted(set(fold_of.tolist()))], axis=1)
        if F.shape[1] > 1:
            se.append((F[0] - F[1]).std(ddof=1) / np.sqrt(F.shape[1]))
        sd.append(F[2:].mean(1).std(ddof=1))
    return float(np.median(se)) if se else float("nan"), float(np.median(sd))


def _table(dr: Path):
    """-> (lines, summary) for one dump folder."""
    from zooql.methods.modellens.select import blend_scores, candidate_grid

    recs = [pickle.loads(p.read_bytes()) for p in sorted(dr.glob("fold*.pkl"))]
    if not recs:
        return [], None
    table, rs = recs[0]["table"], recs[0]["rel_scale"]
    seeds = all(_has_seeds(r) for r in recs)
    pure = [*VAL_METHODS, *[m for m in recs[0].get("methods", VAL_METHODS) if m not in VAL_METHODS]]
    pure += ["ens3"] if seeds else []
    rows: dict[str, list] = {m: [] for m in pure}
    picks: dict[str, list] = {}
    for r in recs:
        for truth, S in _rows(r, pure)[1]:
            for j, m in enumerate(pure):
                rows[m].append(_score(truth, S[j], rs))
        for cname, latent, chooser in _rules():
            if latent == "ens3" and not seeds:
                continue
            inner, outer = _rows(r, [latent, *BASES])
            w = chooser(inner)
            picks.setdefault(cname, []).append(tuple(np.round(w, 2)))
            for truth, S in outer:
                rows.setdefault(cname, []).append(_score(truth, blend_scores(w, S), rs))
    agg = {m: np.mean(v, axis=0) for m, v in rows.items()}
    best_b = max(BASES, key=lambda m: agg[m][0])
    lines = [f"#### {table}: {len(recs)} outer folds, {len(rows['modellens'])} lists "
             f"(fit {sum(r['seconds_fit'] for r in recs):.0f}s, inner validation "
             f"{sum(r['seconds_val'] for r in recs):.0f}s in all)", "",
             "| method | ndcg5 | ndcg5_lovm | tau5 | ndcg5 - best baseline (" + best_b + ") |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {m} | {v[0]:.3f} | {v[1]:.3f} | {v[2]:.3f} | {v[0] - agg[best_b][0]:+.3f} |" for m, v in agg.items()]
    grid = candidate_grid()
    for latent in ("modellens", "ens3") if seeds else ("modellens",):
        held = [o for r in recs for o in _rows(r, [latent, *BASES])[1]]
        fixed = [np.mean([_score(t, blend_scores(w, S), rs)[0] for t, S in held]) for w in grid]
        h = int(np.argmax(fixed))
        lines.append(f"* Ceiling with {latent} (hindsight, not a rule: the one fixed candidate best on these "
                     f"held-out lists): {dict(zip([latent, *BASES], np.round(grid[h], 2).tolist()))} ndcg5 "
                     f"{fixed[h]:.3f} ({fixed[h] - agg[best_b][0]:+.3f} over {best_b})")
    if seeds:
        (se1, sd), (se3, _) = _inner_noise(recs, "modellens"), _inner_noise(recs, "ens3")
        lines.append(f"* Inner noise (median over outer folds): SE over the inner datasets of the inner NDCG@5 "
                     f"gain over avg_rank, modellens {se1:.3f}, ens3 {se3:.3f}; SD between the three "
                     f"seeds' inner mean NDCG@5 {sd:.3f}")
    lines.append("* weights per fold below are [latent row, avg_rank, imagenet, knn_dataset]")
    for cname, ps in picks.items():
        cnt: dict = {}
        for p in ps:
            cnt[p] = cnt.get(p, 0) + 1
        lines.append(f"* {cname} weights per fold: " + "; ".join(
            f"{[float(x) for x in p]} x{n}" for p, n in sorted(cnt.items(), key=lambda kv: -kv[1])))
    summary = {m: agg[m][0] - agg[best_b][0] for m in agg}
    return lines + [""], (table, best_b, summary)


def evaluate(dirs: list[Path]):
    lines, sums = [], []
    for dr in dirs:
        ls, s = _table(dr)
        lines += ls
        if s:
            sums.append(s)
    if sums:
        names = list(sums[0][2])
        lines += ["| rule | " + " | ".join(f"{t} (vs {b})" for t, b, _ in sums) + " |",
                  "|---|" + "---:|" * len(sums)]
        lines += [f"| {n} | " + " | ".join(f"{s.get(n, float('nan')):+.3f}" for _, _, s in sums) + " |"
                  for n in names]
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
