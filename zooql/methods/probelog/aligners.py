"""Text aligners: turn a text (``FIND ... RECOGNIZING 'text'``) into a probe descriptor.

ProbeLog's zero-shot query (Eq. 4) needs, for every probe image, a number saying how
much the image shows the text; z-normalised across the probes this vector is searched
like any logit descriptor. Three aligners produce it:

``clip``
    A registered open_clip model: cosine similarity between the text embedding and each
    probe's image embedding (the paper's method). Image embeddings are cached per probe
    set. The prompt is ``a photo of a <text>`` for texts of one or two words, else the
    text itself.
``captions``
    Probe sets created with ``CAPTIONS FROM``: the text and every caption are embedded
    with the MiniLM sentence embedder (all-MiniLM-L6-v2, offline); the descriptor is the
    similarity of the text to each probe's caption. No image model is involved.
``teacher``
    A registered classifier with labelled logits (e.g. EfficientNet-Lite0 with the
    ImageNet classes), probed with the same probe set: the text is matched to the
    teacher's class names with MiniLM, and the descriptor is the similarity-weighted sum
    of the best-matching classes' descriptors (at most ``TEACHER_TOP`` classes within
    ``TEACHER_MARGIN`` of the best match). The teacher's own logits are excluded from the
    results, since they define the query.

Choosing (:func:`resolve_aligner`, at bind time so EXPLAIN shows it): ``USING ALIGNER x``,
else the ``aligner`` setting, else ``teacher`` when a labelled classifier with at least
``TEACHER_MIN_CLASSES`` classes is already probed with the probe set, else ``captions``
when the probe set has captions, else an error saying how to set one up. ``x`` may be
``clip``, ``captions``, ``teacher``, ``clip:<model>``, ``teacher:<model>``, the name of a
registered model (open_clip -> clip, labelled classifier -> teacher) or an open_clip
source string such as ``open_clip:ViT-B-32`` naming a registered model. Results always
name the aligner that produced them; nothing is ever presented as CLIP unless an
open_clip model computed it.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np

from zooql.errors import BindError, ExecutionError

ALIGNERS = ("clip", "captions", "teacher")
TEACHER_MIN_CLASSES = 100
TEACHER_TOP = 3
TEACHER_MARGIN = 0.1
TEACHER_TEMPERATURE = 0.05
EMBEDDER = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class AlignerChoice:
    kind: str                 # clip | captions | teacher
    model: str | None = None  # the open_clip model (clip) or classifier (teacher)
    why: str = ""             # how it was chosen

    def label(self) -> str:
        if self.kind == "captions":
            return f"captions ({EMBEDDER})"
        if self.kind == "teacher":
            return f"teacher {self.model} ({EMBEDDER} class-name match)"
        return f"clip {self.model}"


# ---- bind time ---------------------------------------------------------------------------------

def open_clip_models(con) -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT name FROM models WHERE source LIKE 'open_clip:%' AND loadable ORDER BY name").fetchall()]


def teacher_models(con) -> list[tuple[str, int, int]]:
    """(name, id, classes) of loadable classifiers whose every logit has a label."""
    return [(r[0], r[1], r[2]) for r in con.execute(
        "SELECT m.name, m.id, m.num_logits FROM models m JOIN logits l ON l.model_id = m.id "
        "WHERE m.loadable AND m.num_logits IS NOT NULL AND m.num_logits >= 2 "
        "GROUP BY m.name, m.id, m.num_logits HAVING count(l.label) = m.num_logits "
        "ORDER BY m.num_logits DESC, m.name").fetchall()]


def _model_source(con, name: str) -> str | None:
    row = con.execute("SELECT source FROM models WHERE name = ?", [name]).fetchone()
    return row[0] if row else None


def _clip_model(con, name: str | None, setting: str | None) -> str:
    clips = open_clip_models(con)
    if name:
        if name in clips:
            return name
        by_source = [r[0] for r in con.execute(
            "SELECT name FROM models WHERE loadable AND (source = ? OR source = ?) ORDER BY name",
            [name, "open_clip:" + name]).fetchall()]
        if by_source:
            return by_source[0]
        if name.startswith("open_clip:"):
            raise BindError(f"no registered model has source {name!r}; register it first, e.g. "
                            f"ADD MODEL '{name}' FROM '<weights file>' AS clip")
        raise BindError(f"{name!r} is not a registered open_clip model"
                        + (f" (open_clip models: {', '.join(clips)})" if clips else ""))
    if setting and setting.lower() not in ALIGNERS:
        try:
            return _clip_model(con, setting.split(":", 1)[1] if setting.lower().startswith("clip:") else setting, None)
        except BindError:
            pass
    if len(clips) == 1:
        return clips[0]
    if not clips:
        raise BindError("the clip aligner needs a registered open_clip model, e.g. ADD MODEL "
                        "'open_clip:ViT-B-32' FROM '<weights file>' AS clip; SET aligner = 'clip'")
    raise BindError(f"several open_clip models are registered ({', '.join(clips)}); choose one with "
                    f"USING ALIGNER '<name>' or SET aligner = '<name>'")


def _teacher_model(con, name: str | None, probed: set[int]) -> str:
    teachers = teacher_models(con)
    if name:
        for n, _, _ in teachers:
            if n == name:
                return n
        raise BindError(f"{name!r} cannot be a teacher aligner: it must be a loadable classifier whose "
                        f"logits all have labels (ADD MODEL ... LABELS (...) or LABELS FROM 'file')")
    if not teachers:
        raise BindError("the teacher aligner needs a registered classifier with labelled logits, e.g. "
                        "EfficientNet-Lite0 with the ImageNet classes")
    teachers = sorted(teachers, key=lambda t: (t[1] not in probed, -t[2], t[0]))
    return teachers[0][0]


def resolve_aligner(con, requested: str | None, *, setting: str | None, ps_name: str,
                    has_captions: bool, probed: set[int]) -> AlignerChoice:
    """Pick the aligner of a RECOGNIZING query (see the module doc)."""
    why = "USING ALIGNER"
    if requested is None and setting:
        requested, why = setting, "setting aligner"
    if requested is None:
        for name, mid, classes in teacher_models(con):
            if mid in probed and classes >= TEACHER_MIN_CLASSES:
                return AlignerChoice("teacher", name, f"default: labelled classifier {name} ({classes} classes) "
                                                      f"is probed with {ps_name}")
        if has_captions:
            return AlignerChoice("captions", None, f"default: probe set {ps_name} has captions")
        raise BindError(
            f"no aligner for RECOGNIZING: probe set {ps_name} has no captions and no labelled classifier with "
            f">= {TEACHER_MIN_CLASSES} classes is probed with it",
            hint="register an open_clip model and SET aligner = '<its name>' (clip), create the probe set with "
                 "CAPTIONS FROM 'file.csv' (captions), or register a labelled classifier such as "
                 "EfficientNet-Lite0 and say USING ALIGNER teacher")
    low = requested.lower()
    if low == "captions":
        if not has_captions:
            raise BindError(f"the captions aligner needs a probe set with captions; {ps_name} has none "
                            f"(CREATE PROBE SET ... CAPTIONS FROM 'file.csv')")
        return AlignerChoice("captions", None, why)
    if low == "clip" or low.startswith("clip:"):
        return AlignerChoice("clip", _clip_model(con, requested[5:] or None if ":" in low else None,
                                                 setting if why != "setting aligner" else None), why)
    if low == "teacher" or low.startswith("teacher:"):
        named = requested[8:] or None if ":" in low else None
        model = _teacher_model(con, named, probed)
        if named is None:
            why += (f" teacher ({model} is the labelled classifier with the most classes, already probed ones "
                    f"first; name another with USING ALIGNER teacher:<model>)")
        return AlignerChoice("teacher", model, why)
    if requested.startswith("open_clip:"):
        return AlignerChoice("clip", _clip_model(con, requested, None), why)
    source = _model_source(con, requested)
    if source is not None:
        if source.startswith("open_clip:"):
            return AlignerChoice("clip", _clip_model(con, requested, None), why)
        return AlignerChoice("teacher", _teacher_model(con, requested, probed), why)
    from zooql.core.where import suggest

    raise BindError(f"unknown aligner {requested!r}{suggest(requested, list(ALIGNERS) + open_clip_models(con))}; "
                    f"use clip, captions, teacher or the name of a registered model")


# ---- run time ----------------------------------------------------------------------------------

def _embed_cached(ctx, texts: list[str]) -> np.ndarray:
    """MiniLM embeddings, cached on disk beside the catalog (keyed by the texts)."""
    from zooql.runtime.text_embed import embed_texts

    key = hashlib.sha256("\x1f".join(texts).encode()).hexdigest()[:24]
    path = str(ctx.store.file("cache", "minilm", f"{key}.npy"))
    if os.path.exists(path):
        try:
            arr = np.load(path, allow_pickle=False)
            if arr.shape[0] == len(texts):
                return arr
        except (OSError, ValueError):
            pass
    arr = embed_texts(texts)
    try:
        from zooql.methods.probelog.store import save_npy

        save_npy(path, arr)
    except OSError:
        pass
    return arr


def _flat(sims: np.ndarray, what: str) -> None:
    if float(np.std(sims)) < 1e-7:
        raise ExecutionError(f"{what}: the text is equally similar to every probe, so it gives no descriptor")


def text_query(ctx, choice: AlignerChoice, text: str, ps: dict, files, dm) -> tuple[np.ndarray, dict]:
    """Descriptor ``[n_probes]`` of ``text`` and ``info`` (aligner label, detail, models to exclude)."""
    from zooql.methods.probelog.kernels import text_descriptor

    if choice.kind == "captions":
        caps = [r[0] for r in ctx.con.execute("SELECT caption FROM probes WHERE probe_set_id = ? ORDER BY idx",
                                              [ps["id"]]).fetchall()]
        if any(c is None for c in caps):
            raise ExecutionError(f"probe set {ps['name']} lacks captions for some probes")
        ctx.report("embedding captions", 0, 1)
        c = _embed_cached(ctx, caps)
        t = _embed_cached(ctx, [text])[0]
        ctx.report("embedding captions", 1, 1)
        sims = c @ t
        _flat(sims, "captions aligner")
        best = int(np.argmax(sims))
        return text_descriptor(sims), {"aligner": choice.label(), "exclude": (),
                                       "detail": f"best caption {caps[best]!r} ({sims[best]:.2f})"}
    from zooql.storage import catalog as C

    m = C.model_row(ctx.con, choice.model)
    if m is None:
        raise ExecutionError(f"aligner model {choice.model!r} no longer exists")
    if choice.kind == "teacher":
        row = ctx.con.execute("SELECT first_col, n_cols FROM probe_runs WHERE probe_set_id = ? AND model_id = ?",
                              [ps["id"], m["id"]]).fetchone()
        if row is None:
            raise ExecutionError(f"teacher {m['name']} is not probed with {ps['name']} (probing it failed?)")
        labels = [str(x) for x in C.model_labels(ctx.con, m["id"])]
        e = _embed_cached(ctx, labels)
        t = _embed_cached(ctx, [text])[0]
        sims = e @ t
        order = np.argsort(-sims, kind="stable")[:TEACHER_TOP]
        order = order[sims[order] >= sims[order[0]] - TEACHER_MARGIN]
        w = np.exp((sims[order] - sims[order[0]]) / TEACHER_TEMPERATURE)
        w = w / w.sum()
        cols = np.arange(row[0], row[0] + row[1], dtype=np.int64)[order]
        D = np.asarray(dm.columns(cols), dtype=np.float32)
        q = text_descriptor(D @ w)
        if not np.any(q):
            raise ExecutionError(f"teacher {m['name']}: the matched classes respond identically to every probe")
        detail = "matched " + ", ".join(f"{labels[i]!r} ({sims[i]:.2f})" for i in order)
        if sims[order[0]] < 0.3:
            detail += " - a weak match: the teacher may not know this concept"
        detail += (f"; teacher {m['name']} chosen by {choice.why or 'default'}; its own logits are excluded "
                   f"from the results")
        return q, {"aligner": choice.label(), "exclude": (m["id"],), "detail": detail}
    # clip
    from zooql.methods.probelog.store import save_npy
    from zooql.runtime.loading import load_model, runtime_for

    runtime = runtime_for(ctx)
    loaded = load_model(runtime, m)
    stamp = hashlib.sha256(f"{m['source']}|{m['checkpoint']}|{ps['content_hash']}".encode()).hexdigest()[:12]
    path = files.sub("clip", f"m{m['id']}-{stamp}.npy")
    img = None
    if os.path.exists(path):
        try:
            img = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            img = None
    if img is None or img.shape[0] != ps["n_probes"]:
        img = runtime.embed_images(loaded, files.images(), batch_size=64,
                                   progress=lambda d, t: ctx.report(f"embedding probes with {m['name']}", d, t))
        try:
            save_npy(path, np.asarray(img, dtype=np.float32))
        except OSError:
            pass
    prompt = f"a photo of a {text}" if len(text.split()) <= 2 else text
    temb = np.asarray(runtime.embed_text(loaded, [prompt]), dtype=np.float32)[0]
    sims = np.asarray(img, dtype=np.float32) @ temb
    _flat(sims, f"clip aligner {m['name']}")
    weights = (m.get("tags") or {}).get("_runtime", {}).get("weights")
    detail = f"prompt {prompt!r}" + (f"; {m['name']} has random-init weights" if weights == "random-init" else "")
    return text_descriptor(sims), {"aligner": choice.label(), "exclude": (), "detail": detail}
