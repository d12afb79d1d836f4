"""Operators of MLL (Model Label Learning, :mod:`zooql.methods.mll.labels`): CREATE SEMANTIC GRAPH,
LABEL MODELS, SELECT MODELS FOR TASK ... USING LABELS and CLASSIFY ... USING LABELS ENSEMBLE.

Storage (``methods/mll/schema.sql``): every statement reads the folder, runs its models
and embeds its texts over a read-only catalog connection and writes what it found in one
short read-write transaction at the end (``ExecContext.begin_write``), so readers in other
processes are never locked out and a statement that fails writes nothing. The tables:
``mll_graphs`` / ``mll_nodes`` (the graph, with each node's image list and hash),
``mll_embeddings`` (per model and node: the image embeddings and the caption embedding,
keyed by the node's images hash and caption, so that LABEL only runs the forward passes
that are missing), ``mll_labels`` (``p_{m,v}``) and ``mll_label_runs`` (which node set a
label was computed on), ``mll_tasks`` (classes and captions of a selected task).

Torch, open_clip and MiniLM are imported lazily inside ``run``; the catalog helpers here
are what the binder uses to count, at plan time, the forward passes a plan costs.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from zooql.methods.mll.labels import DEFAULT_ALPHA, DEFAULT_NODES_PER_CLASS, DEFAULT_PROMPT, DEFAULT_WEIGHTS
from zooql.plan.nodes import ExecContext, Operator, Rows
from zooql.runtime.images import IMAGE_EXTS
from zooql.errors import ExecutionError

VLM_PREFIX = "open_clip:"


# ==== catalog helpers (no torch; used by the binder) ===========================================

def tables_exist(con) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables "
                            "WHERE table_name = 'mll_graphs'").fetchone()[0])


def graph_row(con, name: str) -> dict | None:
    if not tables_exist(con):
        return None
    cols = ("id", "name", "folder", "origin", "root", "max_images")
    row = con.execute(f"SELECT {', '.join(cols)} FROM mll_graphs WHERE name = ?", [name]).fetchone()
    return dict(zip(cols, row)) if row else None


def graph_names(con) -> list[str]:
    if not tables_exist(con):
        return []
    return [r[0] for r in con.execute("SELECT name FROM mll_graphs ORDER BY name").fetchall()]


_NODE_COLS = ("idx", "node", "name", "definition", "caption", "images", "n_images", "images_hash")


def graph_nodes(con, gid: int) -> list[dict]:
    rows = con.execute(f"SELECT {', '.join(_NODE_COLS)} FROM mll_nodes WHERE graph_id = ? ORDER BY idx",
                       [gid]).fetchall()
    out = [dict(zip(_NODE_COLS, r)) for r in rows]
    for n in out:
        n["images"] = json.loads(n["images"])
    return out


def nodes_hash(nodes: list[dict]) -> str:
    h = hashlib.sha256()
    for n in nodes:
        h.update(f"{n['node']}\0{n['images_hash']}\0{n['caption']}\n".encode())
    return h.hexdigest()[:32]


def vlm_models(con, filter_sql: str | None = None, params: tuple = ()) -> list[dict]:
    """Registered open_clip models (optionally narrowed by a compiled WHERE), by name."""
    sql = "SELECT id, name, source FROM models WHERE source LIKE 'open_clip:%'"
    if filter_sql:
        sql += f" AND ({filter_sql})"
    return [dict(zip(("id", "name", "source"), r))
            for r in con.execute(sql + " ORDER BY name", list(params)).fetchall()]


def cached_nodes(con, gid: int, model_id: int) -> dict[str, tuple[str, str]]:
    """node -> (images hash, caption) of the model's stored embeddings; damaged ones (blob
    sizes that do not match their shape; CHECK HUB reports them) count as missing."""
    rows = con.execute("SELECT node, images_hash, caption, n_images, dim, octet_length(image_emb), "
                       "octet_length(text_emb) FROM mll_embeddings WHERE graph_id = ? AND model_id = ?",
                       [gid, model_id]).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows if r[4] and r[5] == r[3] * r[4] * 2 and r[6] == r[4] * 4}


def missing_nodes(con, gid: int, model_id: int, nodes: list[dict]) -> list[dict]:
    """Nodes whose embeddings for this model are absent or out of date (images / caption)."""
    have = cached_nodes(con, gid, model_id)
    return [n for n in nodes if have.get(n["node"]) != (n["images_hash"], n["caption"])]


def label_status(con, gid: int, nodes: list[dict]) -> tuple[list[dict], list[dict]]:
    """(models whose label covers the graph's current nodes, models with a stale label)."""
    h = nodes_hash(nodes)
    rows = con.execute("SELECT r.model_id, m.name, r.nodes_hash FROM mll_label_runs r JOIN models m "
                       "ON m.id = r.model_id WHERE r.graph_id = ? ORDER BY m.name", [gid]).fetchall()
    fresh = [{"id": r[0], "name": r[1]} for r in rows if r[2] == h]
    stale = [{"id": r[0], "name": r[1]} for r in rows if r[2] != h]
    return fresh, stale


def uncached_sentence_nodes(con, gid: int) -> int:
    return int(con.execute("SELECT count(*) FROM mll_nodes WHERE graph_id = ? AND sentence_emb IS NULL",
                           [gid]).fetchone()[0])


def _blob(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


# ==== CREATE SEMANTIC GRAPH ========================================================================

@dataclass(frozen=True)
class CreateSemanticGraph(Operator):
    """Read a graph folder (WordNet ids or a graph.json) and store its nodes; OR REPLACE
    rescans an existing graph, keeping the embeddings of nodes whose images and caption
    did not change. The folder is read (and its images hashed) before the catalog is
    opened read-write for the short transaction that stores the nodes."""

    writes: ClassVar[bool] = True
    short_writes: ClassVar[bool] = True
    graph: str = ""
    folder: str = ""
    root: str | None = None
    max_images: int = 75
    wordnet: str | None = None
    replace: bool = False

    def explain_params(self):
        return {"graph": self.graph, "folder": os.path.basename(self.folder.rstrip("/")) or self.folder,
                "root": self.root, "max_images": self.max_images, "replace": self.replace or None}

    def run(self, ctx, inputs):
        from zooql.methods.mll.semantic_graph import read_graph_folder

        old = graph_row(ctx.con, self.graph)
        if old is not None and not self.replace:
            raise ExecutionError(f"semantic graph {self.graph!r} already exists (use CREATE OR REPLACE)")
        before = ({n["node"]: (n["images_hash"], n["caption"]) for n in graph_nodes(ctx.con, old["id"])}
                  if old is not None else {})
        nodes, origin = read_graph_folder(self.folder, root=self.root, max_images=self.max_images,
                                          wordnet=self.wordnet)
        con = ctx.begin_write()   # the writer lock is held: nothing changed since the reads above
        kept = 0
        if old is not None:
            gid = old["id"]
            now = {n.id: (n.images_hash, n.caption) for n in nodes}
            kept = sum(1 for k, v in now.items() if before.get(k) == v)
            stale = [k for k, v in before.items() if now.get(k) != v]
            for k in stale:
                con.execute("DELETE FROM mll_embeddings WHERE graph_id = ? AND node = ?", [gid, k])
            con.execute("DELETE FROM mll_nodes WHERE graph_id = ?", [gid])
            con.execute("UPDATE mll_graphs SET folder = ?, origin = ?, root = ?, max_images = ? WHERE id = ?",
                        [self.folder, origin, self.root, self.max_images, gid])
        else:
            gid = con.execute("INSERT INTO mll_graphs (name, folder, origin, root, max_images) VALUES (?, ?, ?, ?, ?) "
                              "RETURNING id", [self.graph, self.folder, origin, self.root, self.max_images]).fetchone()[0]
        con.executemany(
            "INSERT INTO mll_nodes (graph_id, idx, node, name, definition, caption, parents, images, n_images, "
            "images_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [[gid, i, n.id, n.name, n.definition, n.caption, json.dumps(n.parents), json.dumps(n.images),
              len(n.images), n.images_hash] for i, n in enumerate(nodes)])
        n_img = sum(len(n.images) for n in nodes)
        msg = f"semantic graph {self.graph}: {len(nodes)} nodes, {n_img} images (names from {origin.split(':')[0]})"
        if old is not None:
            msg += f"; {kept} nodes unchanged (their embeddings are kept)"
        return Rows(["graph", "nodes", "images", "origin"], [(self.graph, len(nodes), n_img, origin)], message=msg)


# ==== LABEL MODELS ===================================================================================

@dataclass(frozen=True)
class LabelModels(Operator):
    """Compute the missing node embeddings of each model, then its label ``p_{m,v}`` over all
    nodes of the graph (Eq. 2-5). ``plan`` = per model (name, nodes to embed, images to embed).
    The forward passes run without the catalog open read-write; what they give is written in
    one short transaction at the end."""

    writes: ClassVar[bool] = True
    short_writes: ClassVar[bool] = True
    runs_models: ClassVar[bool] = True
    graph: str = ""
    plan: tuple = ()
    n_nodes: int = 0
    filter: str | None = None
    batch: int = 64
    device: str | None = None

    def explain_params(self):
        todo = [p for p in self.plan if p[1]]
        return {"graph": self.graph, "models": len(self.plan), "nodes": self.n_nodes,
                "filter": self.filter,
                "image_passes": sum(p[2] for p in self.plan), "text_passes": sum(p[1] for p in self.plan),
                "cached_model_nodes": len(self.plan) * self.n_nodes - sum(p[1] for p in self.plan),
                "new_nodes": {p[0]: p[1] for p in todo} or None, "device": self.device}

    def run(self, ctx, inputs):
        from zooql.methods.mll import labels as mll
        from zooql.runtime.executors import Job, executor_for, model_record
        from zooql.storage import catalog as C

        con = ctx.con
        g = graph_row(con, self.graph)
        if g is None:
            raise ExecutionError(f"unknown semantic graph {self.graph!r}")
        nodes = graph_nodes(con, g["id"])
        nh = nodes_hash(nodes)
        models, jobs = [], []
        for name, _, _ in self.plan:
            m = C.model_row(con, name)
            if m is None:
                raise ExecutionError(f"model {name!r} was dropped while LABEL ran")
            todo = missing_nodes(con, g["id"], m["id"], nodes)
            self._check_images(g, self.graph, todo)
            models.append((m, todo))
            if todo:
                jobs.append(Job(len(models) - 1, model_record(m), fn="zooql.methods.mll.labels:embed_job", args={
                    "captions": [n["caption"] for n in todo], "batch": self.batch,
                    "nodes": [[os.path.join(g["folder"], p) for p in n["images"]] for n in todo]}))
        done = {}   # model index -> (text embeddings, image embeddings per node, seconds)
        if jobs:
            results = executor_for(ctx, self.device).map(jobs)
            try:
                for i, res in enumerate(results):
                    done[res.key] = (*res.unwrap(), res.seconds)
                    ctx.report(f"label {self.graph}", i + 1, len(jobs))
            finally:
                results.close()
        out, pending = [], []   # pending: (sql, params, many) written at the end
        for i, (m, todo) in enumerate(models):
            out.append(self._label_one(con, g, nodes, nh, m, todo, done.get(i), pending, mll))
        if pending:
            wcon = ctx.begin_write()
            for sql, params, many in pending:
                (wcon.executemany if many else wcon.execute)(sql, params)
        total = sum(r[3] for r in out)
        msg = (f"labelled {len(out)} model(s) on graph {self.graph} ({len(nodes)} nodes): "
               f"{total} image forward passes, {sum(r[2] for r in out)} new model-nodes")
        if any(r[5] == "random-init" for r in out):
            msg += "; random-init models (no weights) give meaningless labels"
        return Rows(["model", "nodes", "new_nodes", "image_passes", "mean_precision", "weights"], out, message=msg)

    @staticmethod
    def _check_images(g: dict, graph: str, todo: list[dict]) -> None:
        from zooql.methods.mll.semantic_graph import hash_files

        for n in todo:
            try:
                current = hash_files(g["folder"], n["images"])
            except OSError as exc:
                raise ExecutionError(f"node {n['node']}: cannot read its images ({exc}); run CREATE OR "
                                     f"REPLACE SEMANTIC GRAPH {graph} FROM '{g['folder']}'") from None
            if current != n["images_hash"]:
                raise ExecutionError(f"the images of node {n['node']} changed since the graph was created; "
                                     f"run CREATE OR REPLACE SEMANTIC GRAPH {graph} FROM '{g['folder']}'")

    def _label_one(self, con, g, nodes, nh, m, todo, embedded, pending, mll) -> tuple:
        """The labels of one model from its stored and new embeddings; queues its writes."""
        t0 = time.perf_counter()
        passes, new_embs = 0, {}
        if todo:
            texts, embs, seconds = embedded
            t0 -= seconds
            for j, n in enumerate(todo):
                emb = np.asarray(embs[j])
                passes += len(emb)
                new_embs[n["node"]] = (len(emb), emb.shape[1], _blob(emb.astype(np.float16)),
                                       _blob(np.asarray(texts[j]).astype(np.float32)))
                pending.append(("DELETE FROM mll_embeddings WHERE graph_id = ? AND model_id = ? AND node = ?",
                                [g["id"], m["id"], n["node"]], False))
                pending.append(("INSERT INTO mll_embeddings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                [g["id"], m["id"], n["node"], n["images_hash"], n["caption"],
                                 *new_embs[n["node"]]], False))
        image_embs, caption_emb = self._load_embeddings(con, g["id"], m["id"], nodes, new_embs)
        p = mll.label_model(image_embs, caption_emb)
        pending.append(("DELETE FROM mll_labels WHERE graph_id = ? AND model_id = ?", [g["id"], m["id"]], False))
        pending.append(("INSERT INTO mll_labels VALUES (?, ?, ?, ?, ?)",
                        [[g["id"], m["id"], n["node"], None if np.isnan(v) else float(v), n["n_images"]]
                         for n, v in zip(nodes, p)], True))
        seconds = time.perf_counter() - t0
        pending.append(("DELETE FROM mll_label_runs WHERE graph_id = ? AND model_id = ?", [g["id"], m["id"]], False))
        pending.append(("INSERT INTO mll_label_runs (graph_id, model_id, n_nodes, nodes_hash, image_passes, "
                        "seconds) VALUES (?, ?, ?, ?, ?, ?)",
                        [g["id"], m["id"], len(nodes), nh, passes, round(seconds, 3)], False))
        weights = "weights" if m.get("checkpoint") or m["source"].count(":") > 1 else "random-init"
        return (m["name"], len(nodes), len(todo), passes, float(np.nanmean(p)) if np.isfinite(p).any() else None,
                weights)

    @staticmethod
    def _load_embeddings(con, gid: int, model_id: int, nodes: list[dict], new: dict | None = None):
        rows = {r[0]: r[1:] for r in con.execute(
            "SELECT node, n_images, dim, image_emb, text_emb FROM mll_embeddings WHERE graph_id = ? AND model_id = ?",
            [gid, model_id]).fetchall()}
        rows.update(new or {})
        image_embs, texts = [], []
        for n in nodes:
            k, d, img, txt = rows[n["node"]]
            image_embs.append(np.frombuffer(img, dtype=np.float16).reshape(k, d).astype(np.float32))
            texts.append(np.frombuffer(txt, dtype=np.float32))
        return image_embs, np.stack(texts)


# ==== selection shared by SELECT MODELS and CLASSIFY =================================================

def class_captions(con, g: dict, nodes: list[dict], classes: list[str], given: list | None,
                   domain: str | None) -> list[str]:
    """Captions of the task classes: given ones, else "{class} which is {definition}" with the
    definition of a graph node of that name, else WordNet's first noun sense, else the name."""
    from zooql.methods.mll.semantic_graph import caption, try_wordnet

    by_name = {}
    for n in nodes:
        by_name.setdefault(n["name"].replace("_", " ").lower(), n["definition"])
    wn = None
    out = []
    for i, c in enumerate(classes):
        if given and given[i]:
            text = given[i]
        else:
            key = c.replace("_", " ").strip().lower()
            definition = by_name.get(key)
            if definition is None:
                if wn is None:
                    origin = g["origin"]
                    wn = try_wordnet(origin.split(":", 1)[1] if origin.startswith("wordnet:") else None) or False
                syn = wn.first_sense(key) if wn else None
                definition = syn.definition if syn else None
            text = caption(c, definition)
        if domain:
            text = f"{text}, in {domain}"
        out.append(text)
    return out


def sentence_node_embeddings(con, gid: int, nodes: list[dict]) -> tuple[np.ndarray, list]:
    """MiniLM embeddings of the node captions, cached in ``mll_nodes.sentence_emb``:
    (embeddings, the cache rows to write: ``[blob, graph id, node]`` for the new ones).
    ``con`` is only read; the caller writes the new rows in its short transaction."""
    from zooql.runtime.text_embed import embed_texts

    rows = dict(con.execute("SELECT node, sentence_emb FROM mll_nodes WHERE graph_id = ?", [gid]).fetchall())
    todo = [n for n in nodes if rows.get(n["node"]) is None]
    new = []
    if todo:
        emb = embed_texts([n["caption"] for n in todo])
        for n, e in zip(todo, emb):
            rows[n["node"]] = _blob(e.astype(np.float32))
            new.append([rows[n["node"]], gid, n["node"]])
    return np.stack([np.frombuffer(rows[n["node"]], dtype=np.float32) for n in nodes]), new


@dataclass
class Selection:
    graph: dict
    models: list[dict]          # labelled models, by name
    classes: list[str]
    captions: list[str]
    Z: np.ndarray               # [V, Y]
    PY: np.ndarray              # [M, Y]
    R: np.ndarray               # [M, Y]
    selected: np.ndarray        # [Y, k]
    stale: list[str]
    matched: list[str]          # V^Selected: the nodes matched to the task's classes
    new_sentence_rows: list     # MiniLM node embeddings to cache (see sentence_node_embeddings)


def select_models(con, graph: str, classes: list[str], given: list | None, domain: str | None, *,
                  top: int, alpha: float, nodes_per_class: int) -> Selection:
    from zooql.methods.mll import labels as mll

    g = graph_row(con, graph)
    if g is None:
        raise ExecutionError(f"unknown semantic graph {graph!r}")
    nodes = graph_nodes(con, g["id"])
    fresh, stale = label_status(con, g["id"], nodes)
    if not fresh:
        why = f" ({len(stale)} labelled on an older version of the graph)" if stale else ""
        raise ExecutionError(f"no models are labelled on graph {graph!r}{why}; run LABEL MODELS ON GRAPH {graph}")
    captions = class_captions(con, g, nodes, classes, given, domain)
    from zooql.runtime.text_embed import embed_texts

    class_emb = embed_texts(captions)
    node_emb, new_rows = sentence_node_embeddings(con, g["id"], nodes)
    per_class, _ = mll.matched_nodes(class_emb, node_emb, nodes_per_class)
    Z = mll.transfer_matrix(class_emb, node_emb, nodes_per_class)
    chosen = sorted({int(v) for v in per_class.ravel()})
    P = np.stack([selected_precision(con, g["id"], m["id"], nodes, chosen) for m in fresh])
    PY = mll.class_performance(P, Z)
    R = mll.reuse_metric(PY, alpha)
    return Selection(g, fresh, list(classes), captions, Z, PY, R, mll.select_per_class(R, top),
                     [m["name"] for m in stale], [nodes[v]["node"] for v in chosen], new_rows)


def selected_precision(con, gid: int, model_id: int, nodes: list[dict], chosen: list[int]) -> np.ndarray:
    """Eq. 5 of one model at SELECT time: its precision on each node of ``V^Selected``
    (``chosen``, node indices) with the argmax over those nodes only, from the image and
    caption embeddings LABEL stored (only the selected nodes' rows are read)."""
    from zooql.methods.mll import labels as mll

    from zooql.errors import StorageError

    names = [nodes[v]["node"] for v in chosen]
    marks = ", ".join("?" for _ in names)
    rows = {r[0]: r[1:] for r in con.execute(
        f"SELECT node, n_images, dim, image_emb, text_emb FROM mll_embeddings WHERE graph_id = ? AND model_id = ? "
        f"AND node IN ({marks})", [gid, model_id, *names]).fetchall()}
    images, captions = {}, {}
    for v, name in zip(chosen, names):
        if name not in rows:
            continue
        k, d, img, txt = rows[name]
        if not d or len(img) != k * d * 2 or len(txt) != d * 4:
            raise StorageError(f"the stored embeddings of model id {model_id} on node {name} are damaged "
                               f"(table mll_embeddings); LABEL MODELS ON GRAPH ... recomputes them "
                               f"(CHECK HUB lists every damaged row)")
        images[v] = np.frombuffer(img, dtype=np.float16).reshape(k, d).astype(np.float32)
        captions[v] = np.frombuffer(txt, dtype=np.float32)
    return mll.selected_node_precision(images, captions, len(nodes))


def _store_task(ctx: ExecContext, task: str, sel: Selection, domain: str | None) -> None:
    """The short write of SELECT MODELS / CLASSIFY, once their work is done: the new MiniLM
    node embeddings and the task."""
    con = ctx.begin_write()
    if sel.new_sentence_rows:
        con.executemany("UPDATE mll_nodes SET sentence_emb = ? WHERE graph_id = ? AND node = ?",
                        sel.new_sentence_rows)
    con.execute("DELETE FROM mll_tasks WHERE name = ?", [task])
    con.execute("INSERT INTO mll_tasks (name, graph_id, classes, captions, domain) VALUES (?, ?, ?, ?, ?)",
                [task, sel.graph["id"], json.dumps(sel.classes), json.dumps(sel.captions), domain])


def task_row(con, name: str) -> dict | None:
    if not tables_exist(con):
        return None
    row = con.execute("SELECT t.name, g.name, t.classes, t.captions, t.domain FROM mll_tasks t "
                      "JOIN mll_graphs g ON g.id = t.graph_id WHERE t.name = ?", [name]).fetchone()
    if row is None:
        return None
    return {"name": row[0], "graph": row[1], "classes": json.loads(row[2]), "captions": json.loads(row[3]),
            "domain": row[4]}


@dataclass(frozen=True)
class SelectModelsByLabels(Operator):
    """Rank labelled VLMs for a task (Eq. 6-7): per class the ``top`` models by reuse metric."""

    writes: ClassVar[bool] = True     # stores the task and caches MiniLM node embeddings
    short_writes: ClassVar[bool] = True   # in one short transaction at the end
    task: str = ""
    graph: str = ""
    classes: tuple = ()
    captions: tuple | None = None
    domain: str | None = None
    top: int = 1
    alpha: float = DEFAULT_ALPHA
    nodes_per_class: int = DEFAULT_NODES_PER_CLASS
    models: int = 0
    sentence_texts: int = 0

    def explain_params(self):
        return {"task": self.task, "graph": self.graph, "classes": len(self.classes), "domain": self.domain,
                "top": self.top, "alpha": self.alpha, "nodes_per_class": self.nodes_per_class,
                "labelled_models": self.models, "image_passes": 0,
                "sentence_texts": self.sentence_texts}

    def run(self, ctx, inputs):
        sel = select_models(ctx.con, self.graph, list(self.classes), list(self.captions) if self.captions else None,
                            self.domain, top=self.top, alpha=self.alpha, nodes_per_class=self.nodes_per_class)
        _store_task(ctx, self.task, sel, self.domain)
        chosen: dict[int, list[str]] = {}
        for y, row in enumerate(sel.selected):
            for m in row:
                chosen.setdefault(int(m), []).append(sel.classes[y])
        order = sorted(chosen, key=lambda m: (-sel.R[m].mean(), sel.models[m]["name"]))
        cols = ["rank", "model", "reuse", "selected_for"] + [f"r_{c}" for c in sel.classes]
        rows = [(i + 1, sel.models[m]["name"], round(float(sel.R[m].mean()), 6), ", ".join(chosen[m]),
                 *[round(float(v), 6) for v in sel.R[m]]) for i, m in enumerate(order)]
        msg = (f"MLL: {len(rows)} model(s) selected from {len(sel.models)} labelled on graph {self.graph} for task "
               f"{self.task!r} ({len(sel.classes)} classes, top {self.top} per class, alpha {self.alpha:g}; "
               f"precision over the {len(sel.matched)} matched nodes)")
        if sel.stale:
            msg += f"; skipped {len(sel.stale)} with stale labels ({', '.join(sel.stale[:5])}): run LABEL MODELS again"
        return Rows(cols, rows, message=msg)


@dataclass(frozen=True)
class ClassifyByLabels(Operator):
    """Zero-shot classify a folder of images with the per-class ensembles (Eq. 8-10)."""

    writes: ClassVar[bool] = True     # caches MiniLM node embeddings, stores the task
    runs_models: ClassVar[bool] = True
    short_writes: ClassVar[bool] = True   # after the models ran, in one short transaction
    folder: str = ""
    task: str = ""
    graph: str = ""
    classes: tuple = ()
    captions: tuple | None = None
    domain: str | None = None
    ensemble: int = 1
    alpha: float = DEFAULT_ALPHA
    nodes_per_class: int = DEFAULT_NODES_PER_CLASS
    prompt: str = DEFAULT_PROMPT
    images: tuple = ()
    models: int = 0
    batch: int = 64
    weights: str = DEFAULT_WEIGHTS

    def explain_params(self):
        m = min(self.models, len(self.classes) * self.ensemble)
        return {"folder": os.path.basename(self.folder.rstrip("/")) or self.folder, "task": self.task,
                "graph": self.graph, "classes": len(self.classes), "ensemble": self.ensemble,
                "alpha": self.alpha, "nodes_per_class": self.nodes_per_class, "images": len(self.images),
                "models_at_most": m, "image_passes_at_most": len(self.images) * m,
                "text_passes_at_most": len(self.classes) * m,
                "weights": self.weights if self.weights != DEFAULT_WEIGHTS else None}

    def run(self, ctx, inputs):
        from zooql.methods.mll import labels as mll
        from zooql.runtime.executors import Job, executor_for, model_record
        from zooql.storage import catalog as C

        if not self.images:
            raise ExecutionError(f"no images ({', '.join(IMAGE_EXTS[:4])}, ...) in folder {self.folder}")
        sel = select_models(ctx.con, self.graph, list(self.classes), list(self.captions) if self.captions else None,
                            self.domain, top=self.ensemble, alpha=self.alpha, nodes_per_class=self.nodes_per_class)
        paths = [os.path.join(self.folder, p) for p in self.images]
        probs: dict[int, np.ndarray] = {}
        used = sorted({int(m) for m in sel.selected.ravel()})
        args = {"paths": paths, "classes": list(sel.classes), "prompt": self.prompt, "batch": self.batch}
        jobs = [Job(m, model_record(C.model_row(ctx.con, sel.models[m]["name"])),
                    fn="zooql.methods.mll.labels:zero_shot_job", args=args) for m in used]
        results = executor_for(ctx).map(jobs)
        try:
            for i, res in enumerate(results):
                probs[res.key] = res.unwrap()
                ctx.report("classify", i + 1, len(used))
        finally:
            results.close()
        conf, pred = mll.ensemble_predict(probs, sel.selected, self.weights)
        _store_task(ctx, self.task, sel, self.domain)
        by_class = {c.lower(): c for c in sel.classes}
        rows, correct, known = [], 0, 0
        for path, y, c in zip(self.images, pred, conf):
            truth = by_class.get(path.split("/")[0].lower()) if "/" in path else None
            if truth is not None:
                known += 1
                correct += truth == sel.classes[y]
            rows.append((path, sel.classes[y], round(float(c[y]), 6),
                         ", ".join(sel.models[int(m)]["name"] for m in sel.selected[y]), truth))
        msg = (f"MLL ensemble: {len(rows)} images, {len(used)} model(s) run "
               f"({len(rows) * len(used)} image forward passes), ensemble {self.ensemble} per class")
        if known:
            msg += f"; accuracy {correct / known:.3f} on {known} images whose folder names a class"
        return Rows(["image", "predicted", "confidence", "ensemble", "label"], rows, message=msg)


# ==== DROP MODEL ====================================================================================

def _drop_hook(ctx: ExecContext, model_id: int, name: str) -> None:
    if not tables_exist(ctx.con):
        return
    for table in ("mll_embeddings", "mll_labels", "mll_label_runs"):
        ctx.con.execute(f"DELETE FROM {table} WHERE model_id = ?", [model_id])


def _describe_hook(ctx: ExecContext, m: dict) -> list[tuple[str, object]]:
    if not tables_exist(ctx.con) or not str(m.get("source", "")).startswith(VLM_PREFIX):
        return []
    rows = ctx.con.execute(
        'SELECT g.name, r.n_nodes, avg(l."precision"), r.nodes_hash, g.id FROM mll_label_runs r '
        "JOIN mll_graphs g ON g.id = r.graph_id JOIN mll_labels l ON l.graph_id = r.graph_id "
        "AND l.model_id = r.model_id WHERE r.model_id = ? GROUP BY ALL ORDER BY g.name", [m["id"]]).fetchall()
    parts = []
    for name, n, mean, h, gid in rows:
        stale = "" if h == nodes_hash(graph_nodes(ctx.con, gid)) else ", stale"
        parts.append(f"{name} ({n} nodes, mean precision {mean if mean is not None else float('nan'):.3f}{stale})")
    return [("mll_labels", ", ".join(parts) or None)]
