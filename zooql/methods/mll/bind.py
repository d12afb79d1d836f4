"""Binders and planners of the MLL statements (Model Label Learning, docs/vlm_selection.md):
CREATE SEMANTIC GRAPH, LABEL MODELS, SELECT MODELS FOR TASK ... USING LABELS, CLASSIFY.

The binder reads the catalog to settle what the plan costs, so that EXPLAIN shows the
forward passes before anything runs: for LABEL, per model the nodes whose embeddings are
missing (cached vs new); for SELECT, the sentence-embedder texts; for CLASSIFY, the images
times the models an ensemble may run.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass

from zooql.methods.mll import ops as M
from zooql.methods.mll.labels import DEFAULT_ALPHA, DEFAULT_NODES_PER_CLASS, DEFAULT_PROMPT, DEFAULT_WEIGHTS, WEIGHTS
from zooql.runtime.images import list_image_files
from zooql.methods.mll.semantic_graph import DEFAULT_MAX_IMAGES
from zooql.plan.nodes import Operator
from zooql.errors import BindError
from zooql.methods.mll import ast as A
from zooql.core.binder import BindContext, bind_model_filter, int_of, options_dict, string_of, value_of
from zooql.plan.hooks import binds
from zooql.plan.hooks import plans
from zooql.core.where import suggest
from zooql.plan.logical import Logical
from zooql.storage.names import check_name


@dataclass(frozen=True)
class BoundCreateGraph(Logical):
    graph: str
    folder: str
    root: str | None
    max_images: int
    wordnet: str | None
    replace: bool


@dataclass(frozen=True)
class BoundLabel(Logical):
    graph: str
    plan: tuple
    n_nodes: int
    filter: str | None
    batch: int
    device: str | None


@dataclass(frozen=True)
class BoundSelect(Logical):
    task: str
    graph: str
    classes: tuple
    captions: tuple | None
    domain: str | None
    top: int
    alpha: float
    nodes_per_class: int
    models: int
    sentence_texts: int


@dataclass(frozen=True)
class BoundClassify(Logical):
    select: BoundSelect
    folder: str
    images: tuple
    prompt: str
    batch: int
    weights: str = DEFAULT_WEIGHTS


def _positive_int(node, what: str, default: int) -> int:
    return default if node is None else int_of(value_of(node), what)


def _graph_name(node, bc: BindContext, fallback: str | None = None) -> str:
    names = M.graph_names(bc.con)
    if node is None:
        if fallback is not None:
            return fallback
        if len(names) == 1:
            return names[0]
        if not names:
            raise BindError("no semantic graphs in this hub; CREATE SEMANTIC GRAPH g FROM 'folder' first")
        raise BindError(f"this hub has {len(names)} semantic graphs ({', '.join(names)}); say which with ON GRAPH g")
    name = str(value_of(node))
    if name not in names:
        raise BindError(f"unknown semantic graph {name!r}{suggest(name, names)}"
                        + ("" if names else "; CREATE SEMANTIC GRAPH g FROM 'folder' first"))
    return name


@binds(A.CreateSemanticGraph)
def _bind_create(stmt: A.CreateSemanticGraph, bc: BindContext):
    name = check_name(stmt.name.value, "semantic graph")
    folder = bc.path(string_of(stmt.path, "CREATE SEMANTIC GRAPH ... FROM"))
    if not os.path.isdir(folder):
        raise BindError(f"graph folder not found: {folder}")
    if name in M.graph_names(bc.con) and not stmt.replace:
        raise BindError(f"semantic graph {name!r} already exists; CREATE OR REPLACE SEMANTIC GRAPH {name} FROM ... "
                        f"rescans it (the embeddings of unchanged nodes are kept)")
    root = string_of(stmt.root, "ROOT") if stmt.root is not None else None
    wordnet = None
    for key, v in options_dict(stmt.options).items():
        if key != "wordnet":
            raise BindError(f"unknown option {key!r} for CREATE SEMANTIC GRAPH (options: wordnet)")
        if not isinstance(v, str):
            raise BindError(f"option wordnet expects a 'folder', got {v!r}")
        wordnet = bc.path(v)
    return BoundCreateGraph(name, folder, root, _positive_int(stmt.max_images, "MAX IMAGES", DEFAULT_MAX_IMAGES),
                            wordnet, stmt.replace)


@binds(A.LabelModels)
def _bind_label(stmt: A.LabelModels, bc: BindContext):
    graph = _graph_name(stmt.graph, bc)
    g = M.graph_row(bc.con, graph)
    nodes = M.graph_nodes(bc.con, g["id"])
    where, text = bind_model_filter(stmt.where, bc)
    models = M.vlm_models(bc.con, where.sql if where else None, tuple(where.params) if where else ())
    if not models:
        raise BindError("no vision-language models (source 'open_clip:<arch>') are registered"
                        + (f" that match WHERE {text}" if text else "")
                        + "; ADD MODEL 'open_clip:<arch>' FROM '<weights>' first")
    plan = []
    for m in models:
        todo = M.missing_nodes(bc.con, g["id"], m["id"], nodes)
        plan.append((m["name"], len(todo), sum(n["n_images"] for n in todo)))
    device = string_of(stmt.device, "DEVICE") if stmt.device is not None else None
    return BoundLabel(graph, tuple(plan), len(nodes), text, _positive_int(stmt.batch, "BATCH", 64), device)


def _read_classes_file(path: str) -> tuple[list[str], list[str | None]]:
    if not os.path.isfile(path):
        raise BindError(f"classes file not found: {path}")
    classes, captions = [], []
    with open(path, newline="", encoding="utf-8") as f:
        if path.endswith((".csv", ".tsv")):
            reader = csv.DictReader(f, delimiter="\t" if path.endswith(".tsv") else ",")
            if "class" not in (reader.fieldnames or []):
                raise BindError(f"classes file {os.path.basename(path)} needs a 'class' column (and optionally 'caption')")
            for r in reader:
                if (r.get("class") or "").strip():
                    classes.append(r["class"].strip())
                    captions.append((r.get("caption") or "").strip() or None)
        else:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                c, _, cap = line.partition("|")
                classes.append(c.strip())
                captions.append(cap.strip() or None)
    return classes, captions


def _bind_task(stmt, bc: BindContext, *, top_node, what: str, task_fallback: bool) -> BoundSelect:
    task = str(value_of(stmt.task))
    stored = M.task_row(bc.con, task)
    captions: list | None = None
    if stmt.classes is not None:
        classes = [value_of(c) for c in stmt.classes]
        if any(not isinstance(c, str) or not c.strip() for c in classes):
            raise BindError(f"CLASSES must be 'strings', got {classes!r}")
        classes = [c.strip() for c in classes]
    elif stmt.classes_file is not None:
        classes, captions = _read_classes_file(bc.path(string_of(stmt.classes_file, "CLASSES FROM")))
        if not any(captions):
            captions = None
    elif task_fallback and stored is not None:
        classes, captions = stored["classes"], stored["captions"]
    else:
        raise BindError(f"task {task!r} has no classes: give CLASSES ('a', 'b', ...) or CLASSES FROM 'file'"
                        + (f", or run SELECT MODELS FOR TASK '{task}' CLASSES ... USING LABELS first" if task_fallback else ""))
    if not classes:
        raise BindError(f"task {task!r}: the classes list is empty")
    dup = sorted({c for c in classes if classes.count(c) > 1})
    if dup:
        raise BindError(f"class {dup[0]!r} appears twice")
    domain = string_of(stmt.domain, "DOMAIN") if stmt.domain is not None else (
        stored["domain"] if task_fallback and stored and stmt.classes is None and stmt.classes_file is None else None)
    graph = _graph_name(stmt.graph, bc, stored["graph"] if task_fallback and stored and stmt.graph is None
                        and stored["graph"] in M.graph_names(bc.con) else None)
    opts = options_dict(stmt.options)
    allowed = {"alpha", "nodes_per_class"} | ({"prompt", "weights"} if what == "CLASSIFY" else set())
    for key in opts:
        if key not in allowed:
            raise BindError(f"unknown option {key!r} for {what} ... USING LABELS{suggest(key, allowed)} "
                            f"(options: {', '.join(sorted(allowed))})")
    alpha = opts.get("alpha", DEFAULT_ALPHA)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise BindError(f"option alpha must be a number in [0, 1], got {alpha!r}")
    k = int_of(opts.get("nodes_per_class", DEFAULT_NODES_PER_CLASS), "option nodes_per_class", integral_float=True)
    g = M.graph_row(bc.con, graph)
    nodes = M.graph_nodes(bc.con, g["id"])
    fresh, stale = M.label_status(bc.con, g["id"], nodes)
    if not fresh:
        why = f" ({len(stale)} have labels from an older version of the graph)" if stale else ""
        raise BindError(f"no models are labelled on graph {graph!r}{why}; run LABEL MODELS ON GRAPH {graph} first")
    top = _positive_int(top_node, "TOP" if what == "SELECT MODELS" else "ENSEMBLE", 1)
    return BoundSelect(task, graph, tuple(classes), tuple(captions) if captions else None, domain, top,
                       float(alpha), k, len(fresh), len(classes) + M.uncached_sentence_nodes(bc.con, g["id"]))


@binds(A.SelectModelsForTask)
def _bind_select(stmt: A.SelectModelsForTask, bc: BindContext):
    if not stmt.using_labels:
        raise BindError("SELECT MODELS FOR TASK needs a method: add USING LABELS (MLL, docs/vlm_selection.md)")
    return _bind_task(stmt, bc, top_node=stmt.top, what="SELECT MODELS", task_fallback=False)


@binds(A.Classify)
def _bind_classify(stmt: A.Classify, bc: BindContext):
    if stmt.ensemble is None:
        raise BindError("CLASSIFY needs a method: add USING LABELS ENSEMBLE k (MLL, docs/vlm_selection.md)")
    folder = bc.path(string_of(stmt.path, "CLASSIFY folder"))
    if not os.path.isdir(folder):
        raise BindError(f"image folder not found: {folder}")
    images = list_image_files(folder)
    if stmt.limit is not None:
        images = images[:_positive_int(stmt.limit, "LIMIT", 1)]
    if not images:
        raise BindError(f"no images (.png, .jpg, ...) in folder {folder}")
    sel = _bind_task(stmt, bc, top_node=stmt.ensemble, what="CLASSIFY", task_fallback=True)
    prompt = options_dict(stmt.options).get("prompt", DEFAULT_PROMPT)
    if not isinstance(prompt, str) or "{}" not in prompt:
        raise BindError(f"option prompt must be a 'string' with a {{}} for the class name, got {prompt!r}")
    weights = options_dict(stmt.options).get("weights", DEFAULT_WEIGHTS)
    if not isinstance(weights, str) or weights.lower() not in WEIGHTS:
        raise BindError(f"option weights must be one of {', '.join(repr(w) for w in WEIGHTS)} (Eq. 9: 'entropy' "
                        f"= H_m / sum H, the paper; 'confidence' = exp(-H)), got {weights!r}")
    return BoundClassify(sel, folder, tuple(images), prompt, _positive_int(stmt.batch, "BATCH", 64),
                         weights.lower())


@plans(BoundCreateGraph)
def _plan_create(b: BoundCreateGraph) -> Operator:
    return M.CreateSemanticGraph(graph=b.graph, folder=b.folder, root=b.root, max_images=b.max_images,
                                 wordnet=b.wordnet, replace=b.replace)


@plans(BoundLabel)
def _plan_label(b: BoundLabel) -> Operator:
    return M.LabelModels(graph=b.graph, plan=b.plan, n_nodes=b.n_nodes, filter=b.filter, batch=b.batch,
                         device=b.device)


@plans(BoundSelect)
def _plan_select(b: BoundSelect) -> Operator:
    return M.SelectModelsByLabels(task=b.task, graph=b.graph, classes=b.classes, captions=b.captions,
                                  domain=b.domain, top=b.top, alpha=b.alpha, nodes_per_class=b.nodes_per_class,
                                  models=b.models, sentence_texts=b.sentence_texts)


@plans(BoundClassify)
def _plan_classify(b: BoundClassify) -> Operator:
    s = b.select
    return M.ClassifyByLabels(folder=b.folder, task=s.task, graph=s.graph, classes=s.classes, captions=s.captions,
                              domain=s.domain, ensemble=s.top, alpha=s.alpha, nodes_per_class=s.nodes_per_class,
                              prompt=b.prompt, images=b.images, models=s.models, batch=b.batch,
                              weights=b.weights)
