"""Building a ``torchscript:<file>`` model source (see :func:`zooql.runtime.builders.build`):
``torch.jit.load`` onto the CPU, the preprocessing recorded in the file (``zooql.json``
extra file) overridden by WITH options, and the output width -- the catalog's when the
caller knows it (PROBE), else one blank image's."""
from __future__ import annotations

import json
import os
from typing import Any

import torch

from zooql.errors import ExecutionError
from zooql.runtime.preprocess import Preprocess
from zooql.runtime.sources import (Built, SourceSpec, _json_or_empty, _module_labels, _quiet, _short, _width,
                                   apply_state_dict, load_checkpoint)

#: the TorchScript extra file where ZooQL-made models record preprocessing, labels, family
ZOOQL_EXTRA_FILE = "zooql.json"


def build_torchscript(spec: SourceSpec, checkpoint: str | None, options: dict,
                       known_logits: int | None = None) -> Built:
    path = spec.target
    if not os.path.isfile(path):
        raise ExecutionError(f"TorchScript file not found: {path}")
    files = {ZOOQL_EXTRA_FILE: ""}
    try:
        with _quiet(logs=False):
            module = torch.jit.load(path, map_location="cpu", _extra_files=files)
    except Exception as exc:
        raise ExecutionError(f"{path} is not a loadable TorchScript file: {_short(exc)}") from None
    meta = _json_or_empty(files.get(ZOOQL_EXTRA_FILE))
    extra: dict[str, Any] = {"weights": "torchscript"}
    if checkpoint:
        apply_state_dict(module, load_checkpoint(checkpoint), checkpoint)
        extra["weights"] = "checkpoint"
    pre, defaults = _torchscript_preprocess(meta.get("preprocess"), options)
    if defaults:   # a TorchScript file does not say how it wants its images: say what was assumed
        extra["preprocess_defaults"] = defaults
    labels = meta.get("labels") or _module_labels(module)
    num_logits, checked = _width(module, pre, known_logits, f"torchscript:{path}")
    return Built(module, "torchscript", pre, num_logits, labels, family=meta.get("family"), extra=extra,
                 width_checked=checked)


#: (file's preprocessing, WITH options) as JSON -> (Preprocess, defaults note): PROBE over
#: thousands of TorchScript models builds the same few preprocessings over and over
_TS_PREPROCESS: dict[str, tuple[Preprocess, str]] = {}


def _torchscript_preprocess(stored: dict | None, options: dict) -> tuple[Preprocess, str]:
    """A TorchScript model's preprocessing (its file's, overridden by ``options``) and the
    note naming the values that were defaulted ('' when none)."""
    key = json.dumps([stored, options], sort_keys=True, default=str)
    hit = _TS_PREPROCESS.get(key)
    if hit is not None:
        return hit
    pre = Preprocess.from_dict(stored).with_options(options)
    given = set(stored or {}) | {k for k, v in options.items() if v is not None}
    defaulted = [k for k in ("input_size", "channels", "mean", "std", "interpolation") if k not in given]
    d = pre.to_dict()
    out = (pre, ", ".join(f"{k}={d[k]}" for k in defaulted))
    if len(_TS_PREPROCESS) >= 1024:
        _TS_PREPROCESS.clear()
    _TS_PREPROCESS[key] = out
    return out
