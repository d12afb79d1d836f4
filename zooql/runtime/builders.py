"""Instantiating a model from its source: :func:`build` dispatches on the source's kind to
the builders of :mod:`zooql.runtime.sources` (timm, open_clip, python) and
:mod:`zooql.runtime.torchscript_source` (its own module, which imports the shared pieces of
``sources``; this module sits above both, so neither imports the other back)."""
from __future__ import annotations

import contextlib

from zooql.errors import ExecutionError, SecurityError, ZooQLError
from zooql.runtime.sources import (TRUST_HINT, Built, SourceSpec, _build_open_clip, _build_python, _build_timm,
                                   _offline, _short)
from zooql.runtime.torchscript_source import build_torchscript

__all__ = ["build"]


def build(spec: SourceSpec, *, checkpoint: str | None = None, options: dict | None = None,
          trust_code: bool = False, known_logits: int | None = None) -> Built:
    """Instantiate the model a source names (raises ZooQLError subclasses only).

    ``known_logits``: the output width recorded for this model at ADD MODELS time; when
    given, TorchScript and Python models skip the blank-image forward pass that learns it
    (the result's ``width_checked`` is then False: the caller checks the first real batch)."""
    options = dict(options or {})
    builders = {"timm": _build_timm, "open_clip": _build_open_clip,
                "torchscript": build_torchscript, "python": _build_python}
    if spec.kind not in builders:
        raise ExecutionError(f"source '{spec.kind}:{spec.target}' is registered by name only and cannot be loaded")
    if spec.kind == "python" and not trust_code:
        raise SecurityError(f"source 'python:{spec.target}' runs arbitrary Python code; refusing. "
                            f"To allow it: {TRUST_HINT}")
    try:
        # TorchScript files never reach the Hugging Face Hub: no offline environment to set
        with (contextlib.nullcontext() if spec.kind == "torchscript" else _offline()):
            if spec.kind in ("torchscript", "python"):
                built = builders[spec.kind](spec, checkpoint, options, known_logits)
            else:
                built = builders[spec.kind](spec, checkpoint, options)
    except ZooQLError:
        raise
    except Exception as exc:  # a library failing on a user's model is a user error
        raise ExecutionError(f"model '{spec.kind}:{spec.target}' failed to load: {_short(exc)}") from exc
    built.module.eval()
    return built
