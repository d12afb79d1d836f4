"""Model registry runtime: inspect models for ADD MODEL, load them (LRU-cached) and run them.

* :func:`inspect_model` instantiates a model once and returns the :class:`ModelInfo`
  that ADD MODEL records (parameter count, logits, preprocessing, labels...).
* :class:`ModelRuntime` loads models on demand, keeps the most recently used ones in
  memory within a byte budget, and runs image batches through them under
  ``torch.inference_mode()``: logits for classifiers, L2-normalised embeddings for
  open_clip models (plus :meth:`ModelRuntime.embed_text` for CLIP aligners).

Source parsing, checkpoint loading and module construction live in
:mod:`zooql.runtime.sources`; image preprocessing in :mod:`zooql.runtime.preprocess`.
"""
from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from zooql.errors import ExecutionError, ZooQLError
from zooql.runtime.preprocess import PREPROCESS_OPTION_KEYS, Preprocess, as_batch
from zooql.runtime.builders import build
from zooql.runtime.sources import (MODEL_OPTION_KEYS, SOURCE_PREFIXES, TRUST_HINT, Built, SourceSpec,
                                  apply_state_dict, load_checkpoint, output_tensor, parse_source,
                                  probe_num_logits)

__all__ = [
    "SourceSpec", "parse_source", "Preprocess", "ModelInfo", "inspect_model", "LoadedModel", "ModelRuntime",
    "load_checkpoint", "apply_state_dict", "OPTION_KEYS", "SOURCE_PREFIXES", "TRUST_HINT",
]

#: every WITH option key ADD MODEL understands
OPTION_KEYS = PREPROCESS_OPTION_KEYS + MODEL_OPTION_KEYS

ProgressFn = Callable[[int, int], None]
#: bytes of preprocessed inputs a runtime keeps (ModelRuntime.run's ``inputs_key``)
INPUTS_BUDGET_BYTES = 256 << 20


@dataclass
class ModelInfo:
    """What ADD MODEL records about a model."""

    loadable: bool
    param_count: int | None = None
    num_logits: int | None = None  # None for embedding models (open_clip) and name-only ones
    input_size: int | None = None
    preprocess: dict | None = None  # Preprocess.to_dict()
    labels: list[str] | None = None
    family: str | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelInfo":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def inspect_model(source: str, *, checkpoint: str | None = None, labels: list[str] | None = None,
                  options: dict | None = None, trust_code: bool = False) -> ModelInfo:
    """Instantiate ``source`` once (with ``checkpoint``) and describe it.

    Name-only sources (``hf:``...) are not loaded: ``loadable=False``.  User labels win
    over known ones but must match the number of logits."""
    spec = parse_source(source)
    labels = _check_labels(labels)
    if not spec.loadable:
        pre = Preprocess().with_options(options).to_dict() if _has_preprocess_options(options) else None
        return ModelInfo(loadable=False, input_size=(pre or {}).get("input_size"), preprocess=pre,
                         labels=labels, family=spec.kind, extra={"target": spec.target})
    built = build(spec, checkpoint=checkpoint, options=options, trust_code=trust_code)
    if built.kind == "timm":  # check the preprocessing actually fits the model
        probed = probe_num_logits(built.module, built.preprocess, what=source)
        if built.num_logits != probed:
            built.num_logits = probed
            built.labels = None
    if labels is not None and built.num_logits is not None and len(labels) != built.num_logits:
        raise ExecutionError(f"model {source} has {built.num_logits} logits but {len(labels)} labels were given")
    params = list(built.module.parameters())
    extra = dict(built.extra)
    extra.update(kind=built.kind, param_bytes=_module_bytes(built.module),
                 dtype=str(params[0].dtype).replace("torch.", "") if params else None)
    return ModelInfo(
        loadable=True,
        param_count=sum(p.numel() for p in params),
        num_logits=built.num_logits,
        input_size=built.preprocess.input_size,
        preprocess=built.preprocess.to_dict(),
        labels=labels if labels is not None else built.labels,
        family=built.family or built.kind,
        extra=extra,
    )


@dataclass
class LoadedModel:
    """A model in memory, ready to run."""

    name: str
    module: Any  # torch.nn.Module / ScriptModule / open_clip model
    preprocess: Preprocess
    kind: str
    num_logits: int | None
    labels: list[str] | None = None
    source: str = ""
    checkpoint: str | None = None
    nbytes: int = 0
    tokenizer: Any = None  # open_clip text tokenizer
    extra: dict = field(default_factory=dict)
    #: False while ``num_logits`` is the catalog's recorded width, not yet seen in an output
    #: (``ModelRuntime.load(num_logits=...)``): the first batch :meth:`ModelRuntime.run` runs checks it
    width_checked: bool = True

    @property
    def is_embedding(self) -> bool:
        return self.kind == "open_clip"


class ModelRuntime:
    """Loads models on demand and runs them; keeps an LRU cache within a memory budget."""

    def __init__(self, device: str = "cpu", memory_budget_bytes: int = 2 << 30, trust_code: bool = False,
                 max_models: int = 256):
        self.device = _resolve_device(device)
        self.memory_budget_bytes = int(memory_budget_bytes)
        #: at most this many models stay loaded, however small (a module costs more than its
        #: parameters: PROBE over 10,000 tiny models must not keep 10,000 modules)
        self.max_models = max(1, int(max_models))
        self.trust_code = bool(trust_code)
        self._cache: OrderedDict[tuple, LoadedModel] = OrderedDict()
        self._bytes = 0   # sum of the cached models' nbytes (kept as they come and go)
        self._lock = threading.RLock()
        #: preprocessed input batches by (content key, preprocessing, batch): PROBE runs
        #: thousands of models over the same probes, most with the same preprocessing
        self._inputs: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self.inputs_budget_bytes = INPUTS_BUDGET_BYTES

    # ---- cache ---------------------------------------------------------------------------
    def load(self, name: str, source: str, checkpoint: str | None = None,
             options: dict | None = None, num_logits: int | None = None) -> LoadedModel:
        """The model ``name`` loaded from ``source`` (cached; least recently used evicted).

        ``num_logits``: the output width recorded in the catalog. TorchScript and Python
        models then skip the blank-image forward pass that learns it; the first batch
        :meth:`run` runs is checked against it instead (ExecutionError on a mismatch)."""
        key = _cache_key(name, source, checkpoint, options)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
            spec = parse_source(source)
            built: Built = build(spec, checkpoint=checkpoint, options=options, trust_code=self.trust_code,
                                 known_logits=num_logits)
            try:   # TorchScript files load onto the CPU (map_location): no walk over the parameters
                on_device = self.device == "cpu" and built.kind == "torchscript"
                module = built.module if on_device else built.module.to(self.device)
            except Exception as exc:
                raise ExecutionError(f"model '{name}' cannot be moved to {self.device}: {exc}") from None
            loaded = LoadedModel(name=name, module=module, preprocess=built.preprocess, kind=built.kind,
                                 num_logits=built.num_logits, labels=built.labels, source=source,
                                 checkpoint=checkpoint, nbytes=_module_bytes(module), tokenizer=built.tokenizer,
                                 extra=built.extra, width_checked=built.width_checked)
            self._cache[key] = loaded
            self._bytes += loaded.nbytes
            self._evict(keep=key)
            return loaded

    def _evict(self, keep: tuple) -> None:
        while (self._bytes > self.memory_budget_bytes or len(self._cache) > self.max_models) \
                and len(self._cache) > 1:
            oldest = next(iter(self._cache))
            if oldest == keep:  # the model just loaded is never evicted, even if it alone is too big
                break
            self._bytes -= self._cache.pop(oldest).nbytes
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def cached_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def cached_names(self) -> list[str]:
        """Names of the models in memory, least recently used first."""
        with self._lock:
            return [m.name for m in self._cache.values()]

    def evict(self, name: str | None = None) -> int:
        """Drop ``name`` (or everything) from the cache; returns how many were dropped."""
        with self._lock:
            keys = [k for k, m in self._cache.items() if name is None or m.name == name]
            for k in keys:
                self._bytes -= self._cache.pop(k).nbytes
            return len(keys)

    # ---- running -------------------------------------------------------------------------
    def run(self, loaded_or_record: Any, images: Any, *, batch_size: int = 64,
            progress: ProgressFn | None = None, inputs_key: str | None = None) -> np.ndarray:
        """float32 ``[N, L]``: logits, or normalised image embeddings for open_clip models.

        ``images``: an ``[N,H,W]`` / ``[N,H,W,C]`` array or a sequence of images (arrays,
        PIL images, paths).  ``progress(done, total)`` is called after each batch and may
        raise (e.g. :class:`~zooql.errors.Cancelled`) to stop. ``inputs_key``: a name of the
        images' content (the same key must mean the same images): their preprocessed batches
        are kept (LRU, ``inputs_budget_bytes``) for the next model with the same preprocessing."""
        model = self._resolve(loaded_or_record)
        if model.kind == "open_clip":
            return self.embed_images(model, images, batch_size=batch_size, progress=progress)
        return self._batched(model, images, batch_size, progress,
                             lambda x: output_tensor(model.module(x)), model.num_logits, inputs_key)

    def embed_images(self, loaded_or_record: Any, images: Any, *, batch_size: int = 64,
                     progress: ProgressFn | None = None) -> np.ndarray:
        """L2-normalised image embeddings ``[N, D]`` of an open_clip model."""
        model = self._resolve(loaded_or_record)
        if model.kind != "open_clip":
            raise ExecutionError(f"model '{model.name}' is a {model.kind} classifier, not an image-text "
                                 f"embedding model (open_clip)")
        return self._batched(model, images, batch_size, progress,
                             lambda x: model.module.encode_image(x, normalize=True), model.extra.get("embed_dim"))

    def embed_text(self, loaded_or_record: Any, texts: Sequence[str], *, batch_size: int = 256) -> np.ndarray:
        """L2-normalised text embeddings ``[T, D]`` of an open_clip model."""
        model = self._resolve(loaded_or_record)
        if model.kind != "open_clip":
            raise ExecutionError(f"model '{model.name}' has no text encoder (only open_clip models do)")
        if model.tokenizer is None:
            raise ExecutionError(f"model '{model.name}': no tokenizer is available offline for this architecture")
        texts = [texts] if isinstance(texts, str) else [str(t) for t in texts]
        out = []
        try:
            with torch.inference_mode():
                for i in range(0, len(texts), max(1, int(batch_size))):
                    tokens = model.tokenizer(texts[i:i + batch_size]).to(self.device)
                    out.append(model.module.encode_text(tokens, normalize=True).float().cpu().numpy())
        except ZooQLError:
            raise
        except Exception as exc:
            raise ExecutionError(f"model '{model.name}' failed to embed text: {exc}") from None
        dim = model.extra.get("embed_dim") or 0
        return np.concatenate(out, axis=0) if out else np.zeros((0, dim), dtype=np.float32)

    def _batched(self, model: LoadedModel, images: Any, batch_size: int, progress: ProgressFn | None,
                 forward: Callable[[torch.Tensor], torch.Tensor], width: int | None,
                 inputs_key: str | None = None) -> np.ndarray:
        images = as_batch(images)
        total = len(images)
        batch_size = max(1, int(batch_size))
        out: list[np.ndarray] = []
        for start in range(0, total, batch_size):
            chunk = images[start:start + batch_size]
            try:
                where = (inputs_key, total, start, batch_size)
                x = self._input(model.preprocess, chunk, where)
                version = x._version
                with torch.inference_mode():
                    y = forward(x)
                if x._version != version:   # the model wrote into its input: not a cached batch any more
                    self._forget_input(model.preprocess, where)
            except ZooQLError:
                raise
            except Exception as exc:
                hint = ""
                size = getattr(model.preprocess, "input_size", None)
                if not model.width_checked and size:   # its first batch: no blank pass checked the input shape
                    hint = (f" (it was given [{len(chunk)}, {model.preprocess.channels}, {size}, {size}] inputs; "
                            f"if it expects others, register it again WITH input_size / channels)")
                raise ExecutionError(f"model '{model.name}' failed on images {start}..{start + len(chunk) - 1}: "
                                     f"{' '.join(str(exc).split())[:300]}{hint}") from None
            if not model.width_checked and model.kind != "open_clip":
                _check_width(model, y)
            out.append(y.float().cpu().numpy())
            if progress is not None:
                progress(min(start + batch_size, total), total)
        if not out:
            return np.zeros((0, width or 0), dtype=np.float32)
        return np.ascontiguousarray(np.concatenate(out, axis=0), dtype=np.float32)

    def _input(self, preprocess: Preprocess, chunk: Any, where: tuple) -> torch.Tensor:
        """``preprocess(chunk)`` on the device, from the inputs cache when ``where[0]`` (the
        content key) is given. A cached batch is handed out as it is (no copy): a model that
        writes into its input bumps the tensor's version counter, and :meth:`_batched` then
        drops the batch from the cache (:meth:`_forget_input`)."""
        if where[0] is None:
            return preprocess(chunk).to(self.device)
        key = where + (preprocess, self.device)
        with self._lock:
            hit = self._inputs.get(key)
            if hit is not None:
                self._inputs.move_to_end(key)
                return hit
        x = preprocess(chunk).to(self.device)
        size = x.element_size() * x.nelement()
        if size <= self.inputs_budget_bytes // 2:
            with self._lock:
                self._inputs[key] = x
                used = sum(t.element_size() * t.nelement() for t in self._inputs.values())
                while used > self.inputs_budget_bytes and len(self._inputs) > 1:
                    _, old = self._inputs.popitem(last=False)
                    used -= old.element_size() * old.nelement()
        return x

    def _forget_input(self, preprocess: Preprocess, where: tuple) -> None:
        if where[0] is not None:
            with self._lock:
                self._inputs.pop(where + (preprocess, self.device), None)

    def _resolve(self, obj: Any) -> LoadedModel:
        if isinstance(obj, LoadedModel):
            return obj
        get = obj.get if isinstance(obj, dict) else (lambda k, d=None: getattr(obj, k, d))
        name, source = get("name"), get("source")
        if not name or not source:
            raise ExecutionError(f"cannot run {type(obj).__name__}: need a LoadedModel or a record with name and source")
        return self.load(name, source, get("checkpoint"), get("options"))


# ---- helpers -----------------------------------------------------------------------------

def _resolve_device(device: str) -> str:
    device = (device or "cpu").strip().lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ExecutionError(f"device '{device}' requested but CUDA is not available; use device 'cpu'")
        return device
    if device != "cpu":
        raise ExecutionError(f"unknown device '{device}'; use 'cpu', 'cuda' or 'auto'")
    return device


def _module_bytes(module: Any) -> int:
    """Bytes held by parameters and buffers (what the LRU budget counts)."""
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def _check_width(model: LoadedModel, y: torch.Tensor) -> None:
    """The first batch of a model loaded with its recorded width: the width must match."""
    got = int(y.shape[1]) if y.ndim == 2 else None
    if got != model.num_logits:
        raise ExecutionError(f"model '{model.name}' returns {got if got is not None else tuple(y.shape)} logits "
                             f"per image but the catalog records {model.num_logits} (its file changed since ADD "
                             f"MODELS?); register it again (DROP MODEL, then ADD MODEL)")
    model.width_checked = True


def _file_stamp(path: str | None) -> tuple:
    if not path:
        return ()
    try:
        st = os.stat(path)
        return (st.st_mtime_ns, st.st_size)
    except OSError:
        return ()


def _cache_key(name: str, source: str, checkpoint: str | None, options: dict | None) -> tuple:
    """Cache identity; file stamps make an edited checkpoint / script reload."""
    opts = json.dumps(options or {}, sort_keys=True, default=str)
    src_path = source.split(":", 1)[1] if source.startswith("torchscript:") else None
    return (name, source, checkpoint, opts, _file_stamp(checkpoint), _file_stamp(src_path))


def _check_labels(labels: Any) -> list[str] | None:
    if labels is None:
        return None
    if isinstance(labels, str) or not isinstance(labels, (list, tuple)):
        raise ExecutionError("labels must be a list of strings")
    return [str(x) for x in labels]


def _has_preprocess_options(options: dict | None) -> bool:
    return bool(options) and any(options.get(k) is not None for k in PREPROCESS_OPTION_KEYS)
