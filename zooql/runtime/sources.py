"""Model sources: parse ``kind:target`` strings, load checkpoints safely, build modules.

A *source* says where a model's architecture comes from:

===============================  ====================================================
``timm:<name>``                  ``timm.create_model(name)``; weights from FROM, else
                                 from a local timm / Hugging Face cache, else random
``open_clip:<arch>[:<tag>]``     ``open_clip.create_model_and_transforms(arch)``;
                                 weights from FROM or a locally cached tag
``torchscript:<path>``           ``torch.jit.load(path)`` (no pickled Python code)
``python:<module>:<factory>``    ``factory()`` from a dotted module or a ``.py`` file;
                                 runs arbitrary code, so only with ``trust_code``
``hf:<org/name>``, ``name:<x>``  recorded by name only, never loaded
===============================  ====================================================

Checkpoints are only ever read with ``torch.load(weights_only=True)`` or safetensors,
so a checkpoint cannot execute code; one that would need to is refused with
:class:`~zooql.errors.SecurityError`.
"""
from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib
import importlib.util
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from zooql.errors import ExecutionError, SecurityError, ZooQLError
from zooql.runtime.preprocess import Preprocess

LOADABLE_KINDS = ("timm", "open_clip", "torchscript", "python")
NAME_ONLY_PREFIXES = ("hf", "name")
SOURCE_PREFIXES = LOADABLE_KINDS + NAME_ONLY_PREFIXES
#: WITH options understood by the model builders (besides the preprocessing ones).
MODEL_OPTION_KEYS = ("num_classes",)
TRUST_HINT = "SET trust_code = true or --trust"
_STATE_DICT_WRAPPERS = ("state_dict", "model_state_dict", "model", "module", "net", "network")


# ==== source strings =======================================================================

@dataclass(frozen=True)
class SourceSpec:
    kind: str  # 'timm' | 'open_clip' | 'torchscript' | 'python' | 'hf' | 'name'
    target: str  # 'resnet18', 'ViT-B-32', a path, 'module:factory', 'org/name'
    tag: str | None = None  # open_clip pretrained tag

    @property
    def loadable(self) -> bool:
        return self.kind in LOADABLE_KINDS


def parse_source(source: str) -> SourceSpec:
    """Parse ``'kind:target'``; raises ExecutionError for an unknown prefix."""
    valid = ", ".join(p + ":" for p in SOURCE_PREFIXES)
    if not isinstance(source, str) or ":" not in source:
        raise ExecutionError(f"model source {source!r} has no prefix; valid prefixes: {valid}")
    prefix, target = source.strip().split(":", 1)
    kind = prefix.strip().lower()
    target = target.strip()
    if kind not in SOURCE_PREFIXES:
        raise ExecutionError(f"unknown model source prefix '{prefix}:' in {source!r}; valid prefixes: {valid}")
    if not target:
        raise ExecutionError(f"model source {source!r} names no model after '{prefix}:'")
    if kind == "open_clip":
        if target.startswith(("hf-hub:", "local-dir:")):
            return SourceSpec(kind, target, None)
        arch, _, tag = target.partition(":")
        if not arch.strip():
            raise ExecutionError(f"model source {source!r} names no open_clip architecture")
        return SourceSpec(kind, arch.strip(), tag.strip() or None)
    if kind == "python":
        module, sep, factory = target.rpartition(":")
        if not sep or not module.strip() or not factory.strip().isidentifier():
            raise ExecutionError(f"python model source must be 'python:<module or file.py>:<factory>', got {source!r}")
        return SourceSpec(kind, f"{module.strip()}:{factory.strip()}", None)
    return SourceSpec(kind, target, None)


# ==== checkpoints =====================================================================

def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a state dict from ``.pt/.pth/.bin`` (weights only) or ``.safetensors``.

    ``{'state_dict': ...}`` / ``{'model': ...}``-style wrappers are unwrapped, a
    ``module.`` prefix (DataParallel) is stripped and non-tensor entries are dropped."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ExecutionError(f"checkpoint file not found: {path}")
    if os.path.isdir(path):
        raise ExecutionError(f"checkpoint {path} is a directory, not a file")
    if path.endswith(".safetensors"):
        try:
            from safetensors.torch import load_file
            obj: Any = load_file(path, device="cpu")
        except Exception as exc:
            raise ExecutionError(f"checkpoint {path} is not a valid safetensors file: {_short(exc)}") from None
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            text = str(exc)
            found = re.search(r"GLOBAL ([\w.]+)", text)
            if "Unsupported global" in text or found:
                what = found.group(1) if found else "a Python object"
                raise SecurityError(
                    f"checkpoint {path} needs pickled code ({what}); refusing (weights_only=True). "
                    f"Re-save it as a plain state_dict (torch.save(model.state_dict(), ...)) or safetensors"
                ) from None
            raise ExecutionError(f"checkpoint {path} is corrupt or not a PyTorch checkpoint: {_short(exc)}") from None
    return _extract_state_dict(obj, path)


def _extract_state_dict(obj: Any, path: str) -> dict:
    if isinstance(obj, torch.jit.ScriptModule):
        obj = obj.state_dict()
    for _ in range(3):  # unwrap nested {'model': {'state_dict': ...}}-like wrappers
        if not isinstance(obj, dict) or any(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        inner = next((obj[k] for k in _STATE_DICT_WRAPPERS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict):
        raise ExecutionError(f"checkpoint {path} holds a {type(obj).__name__}, not a state dict")
    sd = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise ExecutionError(f"checkpoint {path} contains no tensors")
    for prefix in ("module.", "_orig_mod."):
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def apply_state_dict(module: torch.nn.Module, sd: dict, where: str) -> str:
    """Load ``sd`` into ``module`` strictly, trying known key conversions on mismatch.

    Returns the name of the conversion used ('' for none)."""
    attempts: list[tuple[str, Callable[[], dict]]] = [("", lambda: sd)]
    attempts += [(name, (lambda fn=fn: fn(module, sd))) for name, fn in _converters(module, sd)]
    first_error = None
    for name, make in attempts:
        try:
            candidate = make()
            if candidate is None:
                continue
            module.load_state_dict(candidate, strict=True)
            return name
        except (RuntimeError, KeyError, ValueError, TypeError, AttributeError, AssertionError) as exc:
            first_error = first_error or exc
    raise ExecutionError(f"checkpoint {where} does not fit the model: {_mismatch_summary(module, sd, first_error)}")


def _mismatch_summary(module: torch.nn.Module, sd: dict, exc: Exception | None) -> str:
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatches (checkpoint vs model, e.g. {'; '.join(shapes[:2])})")
    return "; ".join(parts) or _short(exc)


def _converters(module: torch.nn.Module, sd: dict):
    """Known checkpoint layouts that map onto this module's keys."""
    if any(k.startswith("_conv_stem.") for k in sd) and hasattr(module, "conv_stem"):
        yield "efficientnet-pytorch->timm", convert_lukemelas_efficientnet
    mod = sys.modules.get(type(module).__module__)
    fn = getattr(mod, "checkpoint_filter_fn", None) if mod and mod.__name__.startswith("timm.") else None
    if callable(fn):
        yield "timm-filter", lambda m, s: fn(dict(s), m)


def convert_lukemelas_efficientnet(model: torch.nn.Module, sd: dict) -> dict:
    """Map an ``efficientnet-pytorch`` (lukemelas) state dict onto a timm EfficientNet.

    lukemelas numbers blocks flatly (``_blocks.7``) while timm nests them by stage
    (``blocks.2.1``); the flat order is the same, so the i-th flat block is the i-th
    block of timm's nested enumeration."""
    nested = [f"blocks.{s}.{j}" for s, stage in enumerate(model.blocks) for j in range(len(stage))]
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    expand = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
              "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand", "_project_conv": "conv_pwl",
              "_bn2": "bn3"}
    no_expand = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_se_reduce": "se.conv_reduce",
                 "_se_expand": "se.conv_expand", "_project_conv": "conv_pw", "_bn2": "bn2"}
    out = {}
    for key, value in sd.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            i = int(parts[1])
            has_expand = any(k.startswith(f"_blocks.{i}._expand_conv.") for k in sd)
            table = expand if has_expand else no_expand
            out[f"{nested[i]}.{table[parts[2]]}.{'.'.join(parts[3:])}"] = value
        else:
            out[f"{top[parts[0]]}.{'.'.join(parts[1:])}"] = value
    return out


# ==== building modules ================================================================

@dataclass
class Built:
    """A freshly instantiated model, with what we learned while building it."""

    module: Any
    kind: str
    preprocess: Preprocess
    num_logits: int | None
    labels: list[str] | None = None
    family: str | None = None
    extra: dict = field(default_factory=dict)
    tokenizer: Any = None  # open_clip only
    #: False when ``num_logits`` was taken from the catalog (``known_logits``) without a
    #: forward pass: the first real batch must check it (ModelRuntime does)
    width_checked: bool = True


def _width(module: Any, pre: Preprocess, known: int | None, what: str) -> tuple[int, bool]:
    """(output width, checked by a forward pass): the recorded width when the caller gave
    one (``build(known_logits=...)``), else one blank image's."""
    if known is not None:
        return int(known), False
    return probe_num_logits(module, pre, what=what), True


def _build_timm(spec: SourceSpec, checkpoint: str | None, options: dict) -> Built:
    timm = _import("timm")
    name = spec.target
    if not timm.is_model(name):
        raise ExecutionError(f"unknown timm model '{name}'{_did_you_mean(name, timm.list_models())}")
    sd = load_checkpoint(checkpoint) if checkpoint else None
    kwargs: dict[str, Any] = {}
    num_classes = options.get("num_classes")
    if num_classes is None and sd is not None:
        num_classes = _checkpoint_num_classes(timm, name, sd)
    if num_classes is not None:
        kwargs["num_classes"] = int(num_classes)
    if options.get("channels") is not None and int(options["channels"]) != 3:
        kwargs["in_chans"] = int(options["channels"])
    extra: dict[str, Any] = {"arch": name}
    model = None
    if sd is None:
        cached = _timm_cached_weights(timm, name)
        if cached:
            with _quiet():
                model = timm.create_model(name, pretrained=True,
                                          pretrained_cfg_overlay={"state_dict": load_checkpoint(cached)}, **kwargs)
            extra.update(weights="pretrained-cache", weights_file=cached)
    if model is None:
        model = timm.create_model(name, pretrained=False, **kwargs)
        extra["weights"] = "random-init"
    if sd is not None:
        conversion = apply_state_dict(model, sd, checkpoint)
        extra["weights"] = "checkpoint"
        if conversion:
            extra["checkpoint_conversion"] = conversion
    cfg = timm.data.resolve_data_config({}, model=model)
    interp = cfg.get("interpolation", "bilinear")
    pre = Preprocess(input_size=int(cfg["input_size"][-1]), channels=int(cfg["input_size"][0]),
                     mean=tuple(cfg["mean"]), std=tuple(cfg["std"]),
                     interpolation=interp if interp in ("nearest", "bilinear", "bicubic") else "bicubic",
                     crop_pct=cfg.get("crop_pct")).with_options(options)
    num_logits = int(model.num_classes or getattr(model, "num_features", 0)) or None
    labels = imagenet_labels() if num_logits == 1000 else None
    return Built(model, "timm", pre, num_logits, labels, family=name, extra=extra)


def _checkpoint_num_classes(timm, name: str, sd: dict) -> int | None:
    """Classifier width in a checkpoint for this timm architecture (None if unknown)."""
    cfg = timm.models.get_pretrained_cfg(name)
    heads = getattr(cfg, "classifier", None) if cfg is not None else None
    for head in ([heads] if isinstance(heads, str) else list(heads or [])) + ["_fc"]:
        w = sd.get(f"{head}.weight")
        if w is not None and w.ndim >= 1:
            return int(w.shape[0])
    return None


def _timm_cached_weights(timm, name: str) -> str | None:
    """Path of already-downloaded pretrained weights for ``name`` (never downloads)."""
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        return None
    hub_id = getattr(cfg, "hf_hub_id", None)
    if hub_id:
        with contextlib.suppress(Exception):
            from huggingface_hub import try_to_load_from_cache
            names = [getattr(cfg, "hf_hub_filename", None), "model.safetensors", "pytorch_model.bin"]
            for fn in filter(None, names):
                hit = try_to_load_from_cache(hub_id, fn)
                if isinstance(hit, str) and os.path.isfile(hit):
                    return hit
    url = getattr(cfg, "url", None)
    if url:
        hit = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
        if os.path.isfile(hit):
            return hit
    return None


def _build_open_clip(spec: SourceSpec, checkpoint: str | None, options: dict) -> Built:
    open_clip = _import("open_clip")
    arch, tag = spec.target, spec.tag
    schema = arch.startswith(("hf-hub:", "local-dir:"))
    if not schema and arch not in open_clip.list_models():
        raise ExecutionError(f"unknown open_clip architecture '{arch}'{_did_you_mean(arch, open_clip.list_models())}")
    pretrained = None
    extra: dict[str, Any] = {"arch": arch, "weights": "random-init"}
    if checkpoint:
        if not checkpoint.endswith((".npz", ".npy")):
            load_checkpoint(checkpoint)  # refuses pickled code / reports corrupt files clearly
        pretrained, extra["weights"] = checkpoint, "checkpoint"
    elif tag:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        if tag not in tags:
            known = f"; known tags: {', '.join(tags)}" if tags else ""
            raise ExecutionError(f"open_clip '{arch}' has no pretrained tag '{tag}'{known}")
        pretrained = _open_clip_cached_tag(open_clip, arch, tag)
        if pretrained is None:
            raise ExecutionError(f"open_clip weights '{arch}:{tag}' are not in the local cache and ZooQL "
                                 f"works offline; give the weights file with FROM '<checkpoint>'")
        extra.update(weights="pretrained-cache", tag=tag, weights_file=pretrained)
    force = {}
    for key, name in (("mean", "image_mean"), ("std", "image_std"), ("interpolation", "image_interpolation")):
        if options.get(key) is not None:
            force[name] = tuple(options[key]) if key != "interpolation" else options[key]
    with _quiet():
        model, _, _ = open_clip.create_model_and_transforms(
            arch, pretrained=pretrained, pretrained_image=False, pretrained_text=False, weights_only=True,
            force_image_size=options.get("input_size"), **force)
    cfg = open_clip.get_model_preprocess_cfg(model) if hasattr(open_clip, "get_model_preprocess_cfg") \
        else model.visual.preprocess_cfg
    size = cfg.get("size", 224)
    size = size if isinstance(size, int) else max(size)
    interp = cfg.get("interpolation", "bicubic")
    pre = Preprocess(input_size=size, channels=3, mean=tuple(cfg["mean"]), std=tuple(cfg["std"]),
                     interpolation=interp if interp in ("nearest", "bilinear", "bicubic") else "bicubic",
                     crop_pct=None if cfg.get("resize_mode") == "squash" else 1.0).with_options(options)
    model_cfg = open_clip.get_model_config(arch) if not schema else None
    embed_dim = (model_cfg or {}).get("embed_dim") or getattr(model.visual, "output_dim", None)
    extra.update(embed_dim=int(embed_dim) if embed_dim else None, context_length=getattr(model, "context_length", None))
    tokenizer = None
    with contextlib.suppress(Exception):
        tokenizer = open_clip.get_tokenizer(arch)
    return Built(model, "open_clip", pre, None, None, family=arch, extra=extra, tokenizer=tokenizer)


def _open_clip_cached_tag(open_clip, arch: str, tag: str) -> str | None:
    cfg = open_clip.get_pretrained_cfg(arch, tag) or {}
    if cfg.get("file") and os.path.isfile(cfg["file"]):
        return cfg["file"]
    hub = cfg.get("hf_hub", "")
    if hub:
        with contextlib.suppress(Exception):
            from huggingface_hub import try_to_load_from_cache
            repo, fn = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
            for name in filter(None, [fn, "open_clip_model.safetensors", "open_clip_pytorch_model.bin"]):
                hit = try_to_load_from_cache(repo, name)
                if isinstance(hit, str) and os.path.isfile(hit):
                    return hit
    url = cfg.get("url", "")
    if url:
        hit = os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(url))
        if os.path.isfile(hit):
            return hit
    return None


def _build_python(spec: SourceSpec, checkpoint: str | None, options: dict,
                  known_logits: int | None = None) -> Built:
    module_name, factory_name = spec.target.rsplit(":", 1)
    mod = _import_user_module(module_name)
    factory = getattr(mod, factory_name, None)
    if not callable(factory):
        raise ExecutionError(f"python module '{module_name}' has no callable '{factory_name}'")
    try:
        result = factory()
    except Exception as exc:
        raise ExecutionError(f"python factory {module_name}:{factory_name}() failed: {_short(exc)}") from exc
    labels = None
    if isinstance(result, tuple) and len(result) == 2:
        result, labels = result
        labels = [str(x) for x in labels] if labels is not None else None
    if not isinstance(result, torch.nn.Module):
        raise ExecutionError(f"python factory {module_name}:{factory_name}() returned a "
                             f"{type(result).__name__}, not a torch.nn.Module (or (module, labels))")
    extra: dict[str, Any] = {"weights": "python"}
    if checkpoint:
        apply_state_dict(result, load_checkpoint(checkpoint), checkpoint)
        extra["weights"] = "checkpoint"
    pre = Preprocess.from_dict(getattr(result, "zooql_preprocess", None)).with_options(options)
    labels = labels or _module_labels(result)
    num_logits, checked = _width(result, pre, known_logits, f"python:{spec.target}")
    return Built(result, "python", pre, num_logits, labels, family=type(result).__name__, extra=extra,
                 width_checked=checked)


def _import_user_module(name: str):
    if name.endswith(".py") or os.sep in name or "/" in name:
        path = os.path.abspath(name)
        if not os.path.isfile(path):
            raise ExecutionError(f"python model file not found: {path}")
        mod_name = "zooql_user_" + hashlib.sha1(path.encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(mod_name, path)
        mod = importlib.util.module_from_spec(spec)
        folder = os.path.dirname(path)
        sys.path.insert(0, folder)  # let the file import its siblings
        try:
            sys.modules[mod_name] = mod
            spec.loader.exec_module(mod)
        except Exception as exc:
            sys.modules.pop(mod_name, None)
            raise ExecutionError(f"python model file {path} failed to import: {_short(exc)}") from exc
        finally:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)
        return mod
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ExecutionError(f"cannot import python module '{name}': {_short(exc)}") from None
    except Exception as exc:
        raise ExecutionError(f"python module '{name}' failed to import: {_short(exc)}") from exc


# ==== helpers =========================================================================

def output_tensor(out: Any) -> torch.Tensor:
    """The logits tensor in a model's output (tuple -> first, dict -> 'logits' or first)."""
    if isinstance(out, dict):
        out = out.get("logits", next(iter(out.values()), None))
    elif isinstance(out, (tuple, list)):
        out = out[0] if out else None
    elif hasattr(out, "logits"):
        out = out.logits
    if not isinstance(out, torch.Tensor):
        raise ExecutionError(f"model returned {type(out).__name__}, not a tensor of logits")
    if out.ndim == 1:
        out = out[:, None]
    elif out.ndim > 2:
        out = out.flatten(1)
    return out


def probe_num_logits(module: Any, pre: Preprocess, *, what: str) -> int:
    """Run one blank image through ``module`` to learn (and check) its output width."""
    x = torch.zeros(1, pre.channels, pre.input_size, pre.input_size)
    try:
        with torch.inference_mode():
            return int(output_tensor(module(x)).shape[1])
    except ZooQLError:
        raise
    except Exception as exc:
        raise ExecutionError(f"model {what} fails on a [1, {pre.channels}, {pre.input_size}, {pre.input_size}] "
                             f"input ({_short(exc)}); set WITH input_size / channels to what it expects") from None


_IMAGENET_FIXES = {134: "crane (bird)", 517: "crane (machine)", 639: "tank suit"}


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names (first synonym, made unique), from timm offline."""
    from timm.data import ImageNetInfo
    names = [d.split(",")[0].strip() for d in ImageNetInfo().label_descriptions()]
    for i, fixed in _IMAGENET_FIXES.items():
        names[i] = fixed
    return names


def _module_labels(module: Any) -> list[str] | None:
    labels = getattr(module, "labels", None)
    if isinstance(labels, (list, tuple)) and labels and all(isinstance(x, str) for x in labels):
        return list(labels)
    return None


def _json_or_empty(text: Any) -> dict:
    import json
    if not text:
        return {}
    try:
        d = json.loads(text if isinstance(text, str) else text.decode())
        return d if isinstance(d, dict) else {}
    except (ValueError, UnicodeDecodeError):
        return {}


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ExecutionError(f"the '{name}' package is not installed (pip install {name.replace('_', '-')})") from None


def _did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""


@contextlib.contextmanager
def _offline():
    """Forbid Hugging Face Hub downloads while building (ZooQL never fetches weights).

    Libraries then fail fast on anything not in the local cache instead of retrying
    the network for half a minute."""
    saved_env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is None:
        with contextlib.suppress(ImportError):
            import huggingface_hub.constants as constants
    saved_flag = getattr(constants, "HF_HUB_OFFLINE", None)
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if constants is not None:
            constants.HF_HUB_OFFLINE = saved_flag
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _quiet(logs: bool = True):
    """Silence the libraries' chatty logging/warnings while building a model. ``logs=False``:
    warnings only (``torch.jit.load`` logs nothing; each ``Logger.setLevel`` clears every
    logger's cache, ~0.1 ms apiece, which PROBE over 10,000 small models pays per model)."""
    import logging
    import warnings
    loggers = [logging.getLogger(n) for n in ("timm", "open_clip", "")] if logs else []
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lvl in zip(loggers, levels):
            lg.setLevel(lvl)


def _short(exc: BaseException | None, limit: int = 300) -> str:
    if exc is None:
        return "unknown error"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."
