"""ModelLens' view of the catalog: the evaluation records, their fingerprint, the cached
recommender's row and status, dataset texts and model side features (no torch here)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from typing import Any

import duckdb

from zooql.storage.hub import sha256_file

RECOMMENDER_NAME = "modellens"
CACHE_DIR = "recommender"
FEATURES_VERSION = 1
_LOADED: dict[str, Any] = {}   # absolute .npz path -> Recommender (files are immutable)


_EVAL_FILTER = "score IS NOT NULL AND isfinite(score)"


def evaluation_count(con) -> int:
    return int(con.execute(f"SELECT count(*) FROM evaluations WHERE {_EVAL_FILTER}").fetchone()[0])


def fingerprint(con) -> str:
    """Fingerprint of everything the ModelLens state depends on: the evaluations table
    (count, sum of scores, max rowid and an order-free hash of every row), the text
    side info of evaluated datasets and the metadata of evaluated (registered) models."""
    ev = con.execute(
        "SELECT count(*), coalesce(sum(score), 0), coalesce(max(rowid), -1), "
        "coalesce(bit_xor(hash(model, dataset, metric, score)), 0) FROM evaluations").fetchone()
    ds = con.execute(
        "SELECT count(*), coalesce(bit_xor(hash(name, description, domain)), 0) FROM datasets "
        "WHERE name IN (SELECT dataset FROM evaluations)").fetchone()
    md = con.execute(
        "SELECT count(*), coalesce(bit_xor(hash(name, family, params, task, tree, CAST(tags AS VARCHAR))), 0) "
        "FROM models WHERE name IN (SELECT model FROM evaluations)").fetchone()
    from zooql.methods.modellens.recommender import STATE_VERSION

    try:
        mf = con.execute(
            "SELECT count(*), coalesce(bit_xor(hash(model, CAST(features AS VARCHAR))), 0) FROM model_features "
            "WHERE model IN (SELECT model FROM evaluations)").fetchone()
    except duckdb.CatalogException:  # a hub that predates the table
        mf = (0, 0)
    blob = json.dumps([FEATURES_VERSION, STATE_VERSION, [str(x) for x in ev], [str(x) for x in ds],
                       [str(x) for x in md], [str(x) for x in mf]])
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def cached_row(con) -> dict | None:
    """The ``recommenders`` row of ModelLens, or None (also on a hub that predates the table)."""
    try:   # SELECT *: a catalog not yet opened read-write may predate the size/sha256 columns
        cur = con.execute("SELECT * FROM recommenders WHERE name = ?", [RECOMMENDER_NAME])
        row = cur.fetchone()
    except duckdb.CatalogException:
        return None
    if row is None:
        return None
    out = {"size": None, "sha256": None, **dict(zip((d[0] for d in cur.description), row))}
    out["config"] = json.loads(out["config"]) if out["config"] else {}
    return out


def file_damaged(path: str, row: dict, full: bool = False) -> str | None:
    """What is wrong with the cached recommender's file that its size tells (None: nothing
    the cheap check sees); ``full`` compares its SHA-256 too (TRAIN RECOMMENDER, CHECK HUB)."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return "the file is missing"
    if row.get("size") is not None and size != row["size"]:
        return f"the file has {size} bytes, the catalog records {row['size']}"
    if full and row.get("sha256") is not None and sha256_file(path) != row["sha256"]:
        return "the file's SHA-256 is not the recorded one (its data was overwritten)"
    return None


def cached_selection(con):
    """The validation choice (a ``recommend_select.Selection``) of the cached recommender,
    read from its file without torch; None when there is none."""
    row = cached_row(con)
    if row is None:
        return None
    path = os.path.join(hub_dir(con), CACHE_DIR, row["file"])
    if path in _LOADED:
        return getattr(_LOADED[path], "selection", None)
    try:
        import numpy as np

        from zooql.methods.modellens.select import Selection

        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["config"].item())
        return Selection.from_json(meta.get("selection"))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def hub_dir(con) -> str:
    """Directory of the hub whose catalog ``con`` is connected to."""
    row = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchone()
    return os.path.dirname(row[0]) if row and row[0] else ""


def default_config() -> dict:
    from zooql.methods.modellens.recommender import Recommender

    return dict(Recommender().config)


def config_tag(config: dict) -> str:
    return hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]


def stored_config(row: dict) -> dict:
    """The configuration a cache row was trained with, completed with today's defaults
    (options added since) and without options this version no longer has."""
    defaults = default_config()
    return {**defaults, **{k: v for k, v in row["config"].items() if k in defaults}}


def recommender_status(con, config: dict | None = None) -> tuple[bool, str | None, dict]:
    """Can the cached ModelLens state be reused?  -> ``(reuse, reason, config)``.

    ``config=None`` (lazy training inside RECOMMEND) reuses whatever configuration the
    cache was trained with (defaults when there is none); an explicit TRAIN RECOMMENDER
    passes its configuration and reuses only an identical one. Reasons: ``untrained``,
    ``stale`` (new import or changed data), ``file_missing``, ``file_damaged`` (its size, or
    for TRAIN RECOMMENDER its SHA-256, is not the recorded one), ``config``."""
    row = cached_row(con)
    if row is None:
        return False, "untrained", dict(config) if config is not None else default_config()
    stored = stored_config(row)
    use = dict(config) if config is not None else stored
    if row["stale"] or row["fingerprint"] != fingerprint(con):
        return False, "stale", use
    path = os.path.join(hub_dir(con), CACHE_DIR, row["file"])
    if not os.path.exists(path):
        return False, "file_missing", use
    if file_damaged(path, row, full=config is not None):   # TRAIN RECOMMENDER reads it all
        return False, "file_damaged", use
    if config is not None and dict(config) != stored:
        return False, "config", use
    return True, None, use


def load_records(con):
    from zooql.methods.modellens.recommender import Records

    rows = con.execute(f"SELECT model, dataset, metric, score FROM evaluations WHERE {_EVAL_FILTER} "
                       "ORDER BY rowid").fetchall()
    return Records.from_rows(rows)


def dataset_text(description: str | None, domain: str | None) -> str | None:
    """The text a dataset is embedded by: its description, plus its domain when set."""
    parts = [p.strip() for p in (description,) if p and p.strip()]
    if domain and str(domain).strip():
        parts.append(f"Domain: {str(domain).strip()}.")
    return " ".join(parts) or None


def catalog_dataset_text(con, name: str) -> str | None:
    row = con.execute("SELECT description, domain FROM datasets WHERE name = ?", [name]).fetchone()
    return dataset_text(row[0], row[1]) if row else None


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([mbk])$")
_SEP = re.compile(r"[^a-z0-9]+")
_LETTER_DIGIT = re.compile(r"(?<=[a-z])(?=\d)")


def name_features(name: str) -> dict:
    """Side features of a model known only by name (an evaluations-only model).

    * ``family``: the leading run of letters of the name after any ``org/`` prefix
      (``resnet50`` -> ``resnet``, ``vit_base_patch16_224`` -> ``vit``,
      ``meta-llama/Llama-2-7b`` -> ``llama``);
    * ``arch``: the name split where digits follow letters (``resnet_50``), which the
      featurizer turns into shared sub-word tokens;
    * ``params``: a size token of the name when there is one (``7b`` -> 7e9, ``350m``).
    """
    tail = name.rsplit("/", 1)[-1].lower()
    feats: dict[str, Any] = {}
    m = re.match(r"[a-z]+", tail)
    if m:
        feats["family"] = m.group(0)
    arch = _LETTER_DIGIT.sub("_", tail)
    if arch:
        feats["arch"] = arch
    for tok in _SEP.split(tail):
        s = _SIZE.match(tok)
        if s:
            feats["params"] = float(s.group(1)) * {"k": 1e3, "m": 1e6, "b": 1e9}[s.group(2)]
            break
    return feats


def model_features(con) -> dict[str, dict]:
    """``{model: features}`` for every evaluated model: :func:`name_features`, overridden
    by the feature columns of imported evaluation files (``model_features``), overridden
    by the models table for registered models: the family, params, task and tree columns,
    then every user tag under its own key (so ``ADD MODEL ... WITH (params = 25e6)`` of a
    name-only model, which stores ``params`` as a tag, gives the size feature)."""
    names = [r[0] for r in con.execute("SELECT DISTINCT model FROM evaluations ORDER BY 1").fetchall()]
    feats = {n: name_features(n) for n in names}
    try:
        imported = con.execute("SELECT model, features FROM model_features "
                               "WHERE model IN (SELECT model FROM evaluations)").fetchall()
    except duckdb.CatalogException:
        imported = []
    for name, f in imported:
        feats[name].update(json.loads(f) if f else {})
    rows = con.execute("SELECT name, family, params, task, tree, tags FROM models "
                       "WHERE name IN (SELECT model FROM evaluations)").fetchall()
    for name, family, params, task, tree, tags in rows:
        f = feats[name]
        if family:
            f["family"] = str(family).lower()
        if params:
            f["params"] = float(params)
        if task:
            f["task"] = task
        if tree:
            f["tree"] = tree
        from_table = {"family", "params", "task", "tree"} & {k for k, v in zip(
            ("family", "params", "task", "tree"), (family, params, task, tree)) if v}
        for k, v in (json.loads(tags) if tags else {}).items():
            if k.startswith("_") or k in from_table or not (isinstance(v, (str, int, float, bool)) or v is None):
                continue
            f[k] = float(v) if k == "params" and isinstance(v, (int, float)) and not isinstance(v, bool) else v
    return feats


def side_info(con):
    from zooql.methods.modellens.recommender import SideInfo

    texts = {}
    for name, desc, domain in con.execute(
            "SELECT name, description, domain FROM datasets WHERE name IN "
            "(SELECT dataset FROM evaluations) ORDER BY name").fetchall():
        t = dataset_text(desc, domain)
        if t:
            texts[name] = t
    return SideInfo(dataset_text=texts, model_features=model_features(con))


