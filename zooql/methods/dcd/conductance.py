"""DCD: Directional Conductance Divergence for choosing a vision-language model.

*Model-Specific Task Similarity for Vision-Language Model Selection via Layer Conductance*
(Yang, Xie, Tan, Li, Lian & Chen, 2026). A task is represented, for each model ``m``, by the
layer conductance of the coarse blocks of ``m``'s visual encoder on a few of the task's
images; a target task's ranks are predicted from the known ranks of ``m`` on source tasks
whose conductance profile covers the target's important blocks.

Task representation (Eq. 2-4), :func:`conductance_vectors` / :func:`task_vector`
    For each block ``l`` (ResNet stages or transformer residual blocks, see
    :func:`coarse_blocks`), captum's ``LayerConductance`` of the scalar objective
    ``F(x) = ||f_m(x)||_2`` (the unnormalised image embedding) with an all-zero baseline
    (the mean image after preprocessing); per image the mean absolute attribution over the
    block's units; averaged over the task's images: ``v_{m,tau}`` in ``R^L``.
Numerical method (pure numpy, Eq. 5-11)
    * Eq. 5 :func:`normalise` ``u = v / max(||v||_2, eps)``
    * Eq. 6-7 :func:`importance` ``alpha = softmax(eta * u)`` (``eta = 2``)
    * Eq. 8 :func:`divergence` ``D_m(tau -> sigma) = sum_i alpha_i |v_tau,i - v_sigma,i| / (|v_tau,i| + eps)``
      (asymmetric: ``alpha`` and the denominator come from the target ``tau``)
    * Eq. 9-10 :func:`source_weights` ``w_sigma = softmin(gamma * D)`` (``gamma = 5``)
    * Eq. 11 :func:`predicted_rank` ``r_hat_m(tau) = sum_sigma w_sigma r_m(sigma)``, the weighted
      mean of the model's true ranks on the source tasks (:func:`true_ranks`: rank 1 = best
      score among the ranked models, ties share their mean rank).

Torch and captum are imported inside the conductance functions only; the numerical part
and :func:`vector_fingerprint` are importable without them (the binder uses the latter).
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np

from scipy.stats import rankdata as _scipy_rankdata

EPS = 1e-8
DEFAULT_ETA = 2.0
DEFAULT_GAMMA = 5.0
DEFAULT_STEPS = 50
#: bump when the task representation changes meaning: cached vectors are recomputed
VECTOR_VERSION = 1


# ==== Eq. 5-11 ==================================================================================

def normalise(v: Any, eps: float = EPS) -> np.ndarray:
    """Eq. 5: ``u = v / max(||v||_2, eps)``."""
    v = np.asarray(v, dtype=np.float64)
    return v / max(float(np.linalg.norm(v)), eps)


def softmax(z: Any) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def importance(v: Any, eta: float = DEFAULT_ETA, eps: float = EPS) -> np.ndarray:
    """Eq. 6-7: the target-conditioned block importance ``alpha = softmax(eta * u)``."""
    return softmax(eta * normalise(v, eps))


def divergence(v_target: Any, v_source: Any, eta: float = DEFAULT_ETA, eps: float = EPS) -> float:
    """Eq. 8: ``D(tau -> sigma) = sum_i alpha_i |v_tau,i - v_sigma,i| / (|v_tau,i| + eps)``."""
    vt = np.asarray(v_target, dtype=np.float64)
    vs = np.asarray(v_source, dtype=np.float64)
    if vt.shape != vs.shape or vt.ndim != 1:
        raise ValueError(f"task vectors must be 1-d and of one length, got {vt.shape} and {vs.shape}")
    alpha = importance(vt, eta, eps)
    return float(np.sum(alpha * np.abs(vt - vs) / (np.abs(vt) + eps)))


def cosine_distance(v_target: Any, v_source: Any, eps: float = EPS) -> float:
    """Ablation (symmetric): ``1 - cos(v_tau, v_sigma)`` in place of Eq. 8."""
    a, b = np.asarray(v_target, dtype=np.float64), np.asarray(v_source, dtype=np.float64)
    return float(1.0 - a @ b / max(float(np.linalg.norm(a) * np.linalg.norm(b)), eps))


def js_divergence(v_target: Any, v_source: Any, eps: float = EPS) -> float:
    """Ablation (symmetric): Jensen-Shannon divergence (nats) of the block profiles
    normalised to distributions, ``p = |v| / sum |v|``, in place of Eq. 8."""
    p = np.abs(np.asarray(v_target, dtype=np.float64))
    q = np.abs(np.asarray(v_source, dtype=np.float64))
    p, q = p / max(p.sum(), eps), q / max(q.sum(), eps)
    m = (p + q) / 2

    def kl(a, b):
        ok = a > 0
        return float(np.sum(a[ok] * np.log(a[ok] / b[ok])))
    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


DIVERGENCES = ("dcd", "cosine", "jsd")


def task_divergence(kind: str, v_target: Any, v_source: Any, eta: float = DEFAULT_ETA) -> float:
    """Eq. 8 (``'dcd'``, the method) or the paper's symmetric ablations ``'cosine'`` / ``'jsd'``."""
    if kind == "dcd":
        return divergence(v_target, v_source, eta)
    if kind == "cosine":
        return cosine_distance(v_target, v_source)
    if kind == "jsd":
        return js_divergence(v_target, v_source)
    raise ValueError(f"unknown divergence {kind!r} (divergences: {', '.join(DIVERGENCES)})")


def source_weights(divergences: Any, gamma: float = DEFAULT_GAMMA) -> np.ndarray:
    """Eq. 9-10: softmin over source tasks, ``w_sigma = exp(-gamma D_sigma) / sum exp(-gamma D)``.

    NaN divergences (a source the model has no rank on) get weight 0; the others are
    renormalised."""
    d = np.asarray(divergences, dtype=np.float64)
    ok = np.isfinite(d)
    w = np.zeros_like(d)
    if ok.any():
        w[ok] = softmax(-gamma * d[ok])
    return w


def predicted_rank(weights: Any, ranks: Any) -> float:
    """Eq. 11: the weighted mean of the true source ranks (NaN ranks are left out)."""
    w = np.asarray(weights, dtype=np.float64)
    r = np.asarray(ranks, dtype=np.float64)
    ok = np.isfinite(r) & (w > 0)
    if not ok.any():
        return float("nan")
    return float(np.sum(w[ok] * r[ok]) / np.sum(w[ok]))


def true_ranks(scores: Any) -> np.ndarray:
    """Rank 1 = highest score; tied scores share their mean rank; NaN (no score) stays NaN."""
    s = np.asarray(scores, dtype=np.float64)
    out = np.full(s.shape, np.nan)
    ok = np.isfinite(s)
    if ok.any():
        out[ok] = _rank0(-s[ok]) + 1
    return out


def rank_models(target: dict[str, Any], sources: dict[str, dict[str, Any]], source_scores: dict[str, dict[str, float]],
                *, eta: float = DEFAULT_ETA, gamma: float = DEFAULT_GAMMA, kind: str = "dcd") -> list[dict]:
    """Predict every model's rank on the target task.

    ``target``: model -> v_{m,tau}; ``sources``: source task -> model -> v_{m,sigma};
    ``source_scores``: source task -> model -> score (higher is better). True ranks are
    taken among the models of ``target``. Returns one dict per model, best predicted first:
    model, predicted_rank, divergences, weights, ranks (dicts by source task). ``kind``
    replaces Eq. 8 by an ablation (:func:`task_divergence`)."""
    models = list(target)
    names = list(sources)
    ranks = {}
    for s in names:
        sc = np.array([source_scores.get(s, {}).get(m, np.nan) for m in models], dtype=np.float64)
        ranks[s] = dict(zip(models, true_ranks(sc)))
    out = []
    for m in models:
        r = np.array([ranks[s][m] for s in names])
        d = np.array([task_divergence(kind, target[m], sources[s][m], eta) if np.isfinite(r[k]) else np.nan
                      for k, s in enumerate(names)])
        w = source_weights(d, gamma)
        out.append({"model": m, "predicted_rank": predicted_rank(w, r),
                    "divergences": dict(zip(names, d.tolist())), "weights": dict(zip(names, w.tolist())),
                    "ranks": dict(zip(names, r.tolist()))})
    out.sort(key=lambda x: (np.inf if not np.isfinite(x["predicted_rank"]) else x["predicted_rank"], x["model"]))
    return out


def rank_models_draws(targets: list[dict[str, Any]], sources: dict[str, dict[str, Any]],
                      source_scores: dict[str, dict[str, float]], *, eta: float = DEFAULT_ETA,
                      gamma: float = DEFAULT_GAMMA, kind: str = "dcd") -> list[dict]:
    """``RANK ... OPTIONS (draws = k)``: :func:`rank_models` once per target draw (``targets``
    = k dicts model -> v_{m,tau}), averaged. Per model: ``predicted_rank`` = the mean of the
    k Eq. 11 predictions, ``rank_std`` their standard deviation (ddof 0), ``positions`` =
    (best, worst) place in the k rankings, ``weights`` / ``divergences`` the means over the
    draws, ``draws`` the k predictions. Best mean first (ties by name)."""
    per = [rank_models(t, sources, source_scores, eta=eta, gamma=gamma, kind=kind) for t in targets]
    places = [{r["model"]: i + 1 for i, r in enumerate(p)} for p in per]
    by = [{r["model"]: r for r in p} for p in per]
    out = []
    for m in targets[0]:
        preds = np.array([b[m]["predicted_rank"] for b in by])
        names = list(by[0][m]["weights"])
        with np.errstate(invalid="ignore"):
            w = {s: float(np.mean([b[m]["weights"][s] for b in by])) for s in names}
            d = {s: float(np.nanmean([b[m]["divergences"][s] for b in by]))
                 if np.isfinite([b[m]["divergences"][s] for b in by]).any() else float("nan") for s in names}
        pos = [pl[m] for pl in places]
        out.append({"model": m, "predicted_rank": float(np.mean(preds)), "rank_std": float(np.std(preds)),
                    "positions": (min(pos), max(pos)), "weights": w, "divergences": d,
                    "ranks": by[0][m]["ranks"], "draws": preds.tolist()})
    out.sort(key=lambda x: (np.inf if not np.isfinite(x["predicted_rank"]) else x["predicted_rank"], x["model"]))
    return out


# ==== cache identity (no torch) =================================================================

def vector_fingerprint(task_fingerprint: str, source: str, checkpoint: str | None, steps: int) -> str:
    """What a cached v_{m,tau} depends on: the task's images, the model (source, checkpoint
    file and its stamp), the captum steps and :data:`VECTOR_VERSION`."""
    stamp: list = []
    if checkpoint:
        try:
            st = os.stat(checkpoint)
            stamp = [st.st_size, st.st_mtime_ns]
        except OSError:
            stamp = ["missing"]
    blob = json.dumps([VECTOR_VERSION, task_fingerprint, source, checkpoint, stamp, int(steps),
                       "l2norm", "zeros", "mean_abs"])
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


# ==== conductance (torch + captum, imported lazily) =============================================

def coarse_blocks(model: Any) -> list[tuple[str, Any]]:
    """The coarse blocks of an open_clip visual encoder: ``(name, module)`` in depth order.

    Transformer towers: every residual block of ``visual.transformer.resblocks``; ResNet
    towers (``ModifiedResNet``): the stages ``layer1..layer4``; timm towers: the trunk's
    ``stages`` / ``layers`` / ``blocks``."""
    from zooql.errors import ExecutionError

    visual = getattr(model, "visual", None)
    if visual is None:
        raise ExecutionError(f"{type(model).__name__} has no visual encoder (not an open_clip model)")
    tr = getattr(visual, "transformer", None)
    if tr is not None and hasattr(tr, "resblocks"):
        if not getattr(tr, "batch_first", True):
            raise ExecutionError("this open_clip visual transformer is not batch-first; layer conductance "
                                 "needs the batch on the first axis")
        return [(f"transformer.resblocks.{i}", b) for i, b in enumerate(tr.resblocks)]
    stages = [(f"layer{i}", getattr(visual, f"layer{i}")) for i in range(1, 5) if hasattr(visual, f"layer{i}")]
    if stages:
        return stages
    trunk = getattr(visual, "trunk", None)
    for attr in ("stages", "layers", "blocks"):
        seq = getattr(trunk, attr, None) if trunk is not None else None
        if seq is not None and len(seq):
            return [(f"trunk.{attr}.{i}", b) for i, b in enumerate(seq)]
    raise ExecutionError(f"cannot find the coarse blocks of visual encoder {type(visual).__name__} "
                         f"(expected transformer resblocks, ResNet stages or a timm trunk)")


def embedding_norm(model: Any):
    """The scalar objective of Eq. 2: ``x -> ||encode_image(x)||_2`` per image."""
    def forward(x):
        return model.encode_image(x, normalize=False).float().norm(dim=-1)
    return forward


def conductance_vectors(model: Any, x: Any, *, steps: int = DEFAULT_STEPS, batch_size: int = 8,
                        internal_batch_size: int | None = None, progress=None) -> np.ndarray:
    """Per image, per block: mean |layer conductance| of ``||f(x)||`` -> ``[N, L]`` float64.

    ``x``: a preprocessed float tensor ``[N, C, H, W]`` (on the model's device)."""
    import torch
    from captum.attr import LayerConductance

    blocks = coarse_blocks(model)
    fwd = embedding_norm(model)
    n = int(x.shape[0])
    out = np.zeros((n, len(blocks)), dtype=np.float64)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            for start in range(0, n, max(1, int(batch_size))):
                xb = x[start:start + batch_size]
                for j, (_, block) in enumerate(blocks):
                    attr = LayerConductance(fwd, block).attribute(
                        xb, baselines=torch.zeros_like(xb), n_steps=int(steps),
                        internal_batch_size=internal_batch_size)
                    if isinstance(attr, tuple):
                        attr = attr[0]
                    out[start:start + len(xb), j] = attr.detach().abs().flatten(1).mean(1).double().cpu().numpy()
                if progress is not None:
                    progress(min(start + batch_size, n), n)
    finally:
        model.train(was_training)
    return out


def task_vector(model: Any, x: Any, **kw) -> np.ndarray:
    """Eq. 4: ``v_{m,tau}``, the mean over the task's images of :func:`conductance_vectors`."""
    return conductance_vectors(model, x, **kw).mean(axis=0)


def _rank0(x):
    """0-based ascending ranks; tied values share their mean rank (scipy's 'average')."""
    return _scipy_rankdata(x, method="average") - 1.0
