"""Loading a catalog model row into the model runtime (shared by every operator that runs
models: PROBE, FIND's on-demand probing, LABEL MODELS, CLASSIFY, RANK ... USING CONDUCTANCE)."""
from __future__ import annotations

from typing import Any


def model_options(m: dict) -> dict:
    """WITH options reproducing how a registered model was inspected (for ModelRuntime.load)."""
    opts = {k: v for k, v in (m.get("preprocess") or {}).items() if v is not None}
    if str(m.get("source", "")).startswith("timm:") and m.get("num_logits"):
        opts["num_classes"] = int(m["num_logits"])
    return opts


_RUNTIMES: dict[tuple, Any] = {}


def runtime_for(ctx, device: str | None = None):
    """The hub's model runtime, or a runtime for another device (PROBE ... DEVICE 'x')."""
    rt = ctx.runtime
    if not device or device == getattr(rt, "device", "cpu"):
        return rt
    from zooql.runtime.models import ModelRuntime

    key = (device, bool(ctx.setting("trust_code", False)))
    if key not in _RUNTIMES:
        _RUNTIMES[key] = ModelRuntime(device=device, trust_code=key[1])
    return _RUNTIMES[key]


def load_model(runtime, m: dict):
    """Load catalog row ``m`` (a dict of the models table) into ``runtime``."""
    return runtime.load(m["name"], m["source"], m["checkpoint"], model_options(m))
