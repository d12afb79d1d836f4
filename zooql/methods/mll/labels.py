"""MLL, Model Label Learning (Tan, Zhou, Guo, Li; ICML 2025, "Vision-language model
selection and reuse for downstream adaptation"): label open_clip VLMs on a semantic graph,
select models for a zero-shot task from the labels, and reuse them as an ensemble.

The numerical method is a handful of small pure numpy functions (the equations of the
paper, as read in docs/vlm_selection.md):

* :func:`node_precision` -- model labels (Eq. 2-5): per node ``v`` the fraction of its
  images whose best-matching caption, among a set of nodes, is ``v``'s own. LABEL stores
  the task-independent summary over all the graph's nodes; SELECT computes Eq. 5 with
  the argmax over ``V^Selected`` (:func:`selected_node_precision`), the nodes matched to
  the target task, from the stored embeddings.
* :func:`transfer_matrix` -- ``Z`` (Eq. 6): each task class keeps its top-k nodes by
  sentence-embedding similarity of the captions, weighted by the raw similarities.
* :func:`class_performance`, :func:`reuse_metric` -- ``p_{m,y} = sum_v p_{m,v} z_{vy}`` and
  ``r_{m,y} = alpha p_{m,y} + (1 - alpha) mean_y' p_{m,y'}`` (Eq. 6-7).
* :func:`select_per_class`, :func:`zero_shot_probs`, :func:`entropy_weights`,
  :func:`ensemble_predict` -- reuse (Eq. 8-10): per class the top-k models by ``r``, their
  softmax zero-shot probabilities weighted by their prediction entropy (Eq. 9,
  ``w_m = H_m / sum H``; ``'confidence'``: ``exp(-H)``), argmax over classes.

The model-running helpers at the bottom go through the shared
:class:`zooql.runtime.models.ModelRuntime` (``embed_images`` / ``embed_text``).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

DEFAULT_ALPHA = 0.7
DEFAULT_NODES_PER_CLASS = 3
DEFAULT_PROMPT = "a photo of a {}."
DEFAULT_WEIGHTS = "entropy"
WEIGHTS = ("entropy", "confidence")


# ---- model labels (Eq. 2-5) ------------------------------------------------------------------

def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def node_similarity(image_emb: np.ndarray, caption_emb: np.ndarray) -> np.ndarray:
    """Eq. 2: cosine similarity ``s[i, v]`` of image ``i`` to the caption of node ``v``."""
    return _unit(image_emb) @ _unit(caption_emb).T


def node_precision(sim: np.ndarray, node_of_image: np.ndarray, n_nodes: int | None = None,
                   ties: str = "lower") -> np.ndarray:
    """Eq. 3-5: ``p_v`` = fraction of node ``v``'s images whose best-matching node (argmax of
    ``sim`` over its columns) is ``v``. Nodes without images: NaN.

    ``ties='lower'``: a tied argmax goes to the lower column; ``ties='share'``: an image
    whose maximum is shared by ``t`` columns counts ``1/t`` of a hit to each (the expected
    accuracy of a random tie-break; only degenerate embeddings tie)."""
    sim = np.asarray(sim, dtype=np.float64)
    node_of_image = np.asarray(node_of_image, dtype=np.int64)
    n_nodes = sim.shape[1] if n_nodes is None else n_nodes
    if ties == "share":
        top = sim == sim.max(axis=1, keepdims=True)
        own = top[np.arange(len(sim)), node_of_image] if len(sim) else np.zeros(0, dtype=bool)
        hit = own / np.maximum(top.sum(axis=1), 1)
    else:
        hit = (np.argmax(sim, axis=1) == node_of_image).astype(np.float64)
    counts = np.bincount(node_of_image, minlength=n_nodes).astype(np.float64)
    hits = np.bincount(node_of_image, weights=hit, minlength=n_nodes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, hits / counts, np.nan)


def label_model(image_embs: Sequence[np.ndarray], caption_emb: np.ndarray) -> np.ndarray:
    """A model's label on a graph: ``image_embs[v]`` = ``[n_v, D]`` image embeddings of node
    ``v``, ``caption_emb`` = ``[V, D]`` text embeddings of the node captions -> ``p [V]``."""
    V = len(image_embs)
    sizes = [len(e) for e in image_embs]
    if sum(sizes) == 0:
        return np.full(V, np.nan)
    images = np.concatenate([np.asarray(e, dtype=np.float32).reshape(len(e), -1) for e in image_embs if len(e)])
    owner = np.repeat(np.arange(V), sizes)
    return node_precision(node_similarity(images, caption_emb), owner, V)


def selected_node_precision(image_embs: dict[int, np.ndarray], caption_emb: dict[int, np.ndarray],
                            n_nodes: int) -> np.ndarray:
    """Eq. 5 over ``V^Selected``: ``image_embs[v]`` / ``caption_emb[v]`` are given for the
    selected nodes only (node index -> ``[n_v, D]`` images, ``[D]`` caption); an image of
    node ``v`` hits when ``v`` is its best-matching caption among the selected nodes (ties
    shared). -> ``p [n_nodes]``, NaN outside ``V^Selected`` and for nodes without images."""
    sel = sorted(caption_emb)
    p = np.full(n_nodes, np.nan)
    if not sel:
        return p
    sizes = [len(image_embs.get(v, ())) for v in sel]
    if sum(sizes) == 0:
        return p
    images = np.concatenate([np.asarray(image_embs[v], dtype=np.float32).reshape(n, -1)
                             for v, n in zip(sel, sizes) if n])
    owner = np.repeat(np.arange(len(sel)), sizes)
    sim = node_similarity(images, np.stack([np.asarray(caption_emb[v]) for v in sel]))
    p[sel] = node_precision(sim, owner, len(sel), ties="share")
    return p


# ---- selection (Eq. 6-7) ---------------------------------------------------------------------

def matched_nodes(class_emb: np.ndarray, node_emb: np.ndarray, k: int = DEFAULT_NODES_PER_CLASS
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per class its ``k`` most similar nodes (cosine of the sentence embeddings; ties to the
    lower node index) -> (``top [Y, k]`` node indices, ``sim [V, Y]``). ``V^Selected`` is
    the union of the rows of ``top``."""
    sim = _unit(node_emb) @ _unit(class_emb).T          # [V, Y]
    V, Y = sim.shape
    k = max(1, min(int(k), V))
    top = np.stack([np.argsort(-sim[:, y], kind="stable")[:k] for y in range(Y)]) if Y else np.zeros((0, k), int)
    return top, sim


def transfer_matrix(class_emb: np.ndarray, node_emb: np.ndarray, k: int = DEFAULT_NODES_PER_CLASS) -> np.ndarray:
    """Eq. 6: ``Z [V, Y]``. Class ``y`` keeps its ``k`` most similar nodes with the raw
    caption similarities as weights (``z_vy = s(c_y, c_v)`` on the top k, 0 elsewhere;
    neither clipped nor normalised, as in the paper)."""
    top, sim = matched_nodes(class_emb, node_emb, k)
    Z = np.zeros_like(sim)
    for y in range(sim.shape[1]):
        Z[top[y], y] = sim[top[y], y]
    return Z


def class_performance(P: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """``p_{m,y} = sum_v p_{m,v} z_{vy}``: ``P [M, V]`` (NaN = unlabelled node, counted as 0)
    times ``Z [V, Y]`` -> ``[M, Y]``."""
    return np.nan_to_num(np.asarray(P, dtype=np.float64), nan=0.0) @ np.asarray(Z, dtype=np.float64)


def reuse_metric(PY: np.ndarray, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """Eq. 7: ``r_{m,y} = alpha p_{m,y} + (1 - alpha) mean_y' p_{m,y'}``."""
    PY = np.asarray(PY, dtype=np.float64)
    return alpha * PY + (1.0 - alpha) * PY.mean(axis=1, keepdims=True)


def select_per_class(R: np.ndarray, k: int = 1) -> np.ndarray:
    """``[Y, k]`` model indices: per class the ``k`` models of highest ``r`` (ties to the
    lower model index)."""
    R = np.asarray(R, dtype=np.float64)
    k = max(1, min(int(k), R.shape[0]))
    return np.stack([np.argsort(-R[:, y], kind="stable")[:k] for y in range(R.shape[1])])


# ---- reuse (Eq. 8-10) ------------------------------------------------------------------------

def zero_shot_probs(image_emb: np.ndarray, class_text_emb: np.ndarray, scale: float = 100.0) -> np.ndarray:
    """Softmax over classes of ``scale * cos(image, text(y))`` -> ``[N, Y]``."""
    logits = scale * node_similarity(image_emb, class_text_emb)
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def entropy(q: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row of ``q``."""
    q = np.asarray(q, dtype=np.float64)
    return -(np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0)).sum(axis=-1)


def entropy_weights(entropies: np.ndarray, mode: str = DEFAULT_WEIGHTS) -> np.ndarray:
    """Eq. 9: weights of the models of one class ensemble from their prediction entropies
    ``H [k, N]``, per image -> ``[k, N]``.

    ``mode='entropy'`` (the paper): ``w_m = H_m / sum_m' H_m'`` (uniform where every member
    has entropy 0); ``mode='confidence'``: ``w_m = exp(-H_m) / sum_m' exp(-H_m')`` (the
    most confident member weighs most)."""
    H = np.asarray(entropies, dtype=np.float64)
    if mode == "entropy":
        tot = H.sum(axis=0, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(tot > 0, H / np.where(tot > 0, tot, 1.0), 1.0 / H.shape[0])
    if mode != "confidence":
        raise ValueError(f"unknown ensemble weights {mode!r} (weights: {', '.join(WEIGHTS)})")
    e = np.exp(-(H - H.min(axis=0, keepdims=True)))
    return e / e.sum(axis=0, keepdims=True)


def ensemble_predict(probs: Sequence[np.ndarray], selected: np.ndarray,
                     weights: str = DEFAULT_WEIGHTS) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 8 and 10. ``probs[m]`` = ``[N, Y]`` zero-shot probabilities of model ``m``,
    ``selected [Y, k]`` = the ensemble of each class. Confidence of class ``y`` on image
    ``x``: ``c_y(x) = sum_{m in E_y} w_{m,y}(x) q_m(y | x)`` (``w`` of :func:`entropy_weights`
    with ``weights``); prediction = argmax_y. -> (``conf [N, Y]``, ``pred [N]``)."""
    selected = np.asarray(selected, dtype=np.int64)
    Y = selected.shape[0]
    N = np.asarray(probs[int(selected[0, 0])]).shape[0]
    H = {int(m): entropy(probs[int(m)]) for m in np.unique(selected)}
    conf = np.zeros((N, Y))
    for y in range(Y):
        members = [int(m) for m in selected[y]]
        w = entropy_weights(np.stack([H[m] for m in members]), weights)      # [k, N]
        conf[:, y] = sum(w[j] * np.asarray(probs[m], dtype=np.float64)[:, y] for j, m in enumerate(members))
    return conf, np.argmax(conf, axis=1)


# ---- running open_clip models through the shared runtime ---------------------------------------

def embed_node_images(runtime, loaded, paths: Sequence[str], *, batch_size: int = 64,
                      progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """L2-normalised image embeddings ``[n, D]`` of image files (one forward pass each)."""
    return runtime.embed_images(loaded, list(paths), batch_size=batch_size, progress=progress)


def embed_captions(runtime, loaded, texts: Sequence[str]) -> np.ndarray:
    """L2-normalised text embeddings ``[T, D]`` with the model's own text encoder."""
    return runtime.embed_text(loaded, list(texts))


def embed_job(runtime, model: dict, args: dict, progress=None) -> tuple[np.ndarray, list[np.ndarray]]:
    """Executor worker function of LABEL MODELS: (caption embeddings ``[T, D]``, image
    embeddings ``[n_v, D]`` of each node) of one model (:mod:`zooql.runtime.executors`)."""
    from zooql.runtime.executors import load

    loaded = load(runtime, model)
    texts = embed_captions(runtime, loaded, args["captions"])
    return texts, [embed_node_images(runtime, loaded, paths, batch_size=int(args.get("batch", 64)))
                   for paths in args["nodes"]]


def zero_shot_job(runtime, model: dict, args: dict, progress=None) -> np.ndarray:
    """Executor worker function of CLASSIFY ... USING LABELS: :func:`zero_shot` of one model."""
    from zooql.runtime.executors import load

    return zero_shot(runtime, load(runtime, model), args["paths"], args["classes"], prompt=args["prompt"],
                     batch_size=int(args.get("batch", 64)))


def logit_scale(loaded) -> float:
    """The model's CLIP temperature (``exp(logit_scale)``), 100 when it has none."""
    import math

    ls = getattr(getattr(loaded, "module", None), "logit_scale", None)
    try:
        return float(math.exp(float(ls.detach().float().cpu().item()))) if ls is not None else 100.0
    except Exception:  # pragma: no cover - odd modules
        return 100.0


def zero_shot(runtime, loaded, image_paths: Sequence[str], classes: Sequence[str], *,
              prompt: str = DEFAULT_PROMPT, batch_size: int = 64,
              progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Zero-shot class probabilities ``[N, Y]`` of one open_clip model on image files."""
    img = embed_node_images(runtime, loaded, image_paths, batch_size=batch_size, progress=progress)
    txt = embed_captions(runtime, loaded, [prompt.format(c) for c in classes])
    return zero_shot_probs(img, txt, logit_scale(loaded))
