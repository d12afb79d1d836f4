"""Image preprocessing: turn whatever images the caller has into a model's input tensor.

One :class:`Preprocess` value describes the whole inference pipeline of a model:

1. **decode** — numpy arrays (``uint8`` / ``uint16`` / ``bool`` / float already in
   ``[0, 1]``), PIL images, image file paths or torch tensors are turned into float
   ``[C, H, W]`` tensors in ``[0, 1]`` (``uint8`` is divided by 255);
2. **channels** — grey is repeated to RGB, RGB is turned to grey with ITU-R 601-2
   luma weights (as PIL's ``convert('L')``), an alpha channel is dropped;
3. **resize** — with ``crop_pct=None`` the image is squashed to ``input_size`` x
   ``input_size``; with a ``crop_pct`` (timm / open_clip style) the shorter side is
   resized to ``floor(input_size / crop_pct)`` and the centre ``input_size`` square is
   cropped.  An image that already has the target size is left untouched, so e.g. the
   8x8 digits demo models see exactly the tensors they were trained on;
4. **normalise** — ``(x - mean) / std`` per channel.

The result is a float32 tensor ``[N, channels, input_size, input_size]``.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from zooql.errors import ExecutionError

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
#: WITH options of ADD MODEL that describe preprocessing (all optional).
PREPROCESS_OPTION_KEYS = ("input_size", "channels", "mean", "std", "interpolation", "crop_pct")
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class Preprocess:
    """How a model wants its images (see the module docstring for the pipeline)."""

    input_size: int = 224
    channels: int = 3
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    crop_pct: float | None = None  # None: squash-resize; else shorter side + centre crop

    def __post_init__(self) -> None:
        try:
            size, channels = int(self.input_size), int(self.channels)
        except (TypeError, ValueError):
            raise ExecutionError(f"preprocessing: input_size and channels must be integers, "
                                 f"got {self.input_size!r} and {self.channels!r}") from None
        if size < 1 or size > 8192:
            raise ExecutionError(f"preprocessing: input_size must be between 1 and 8192, got {size}")
        if channels not in (1, 3):
            raise ExecutionError(f"preprocessing: channels must be 1 or 3, got {channels}")
        object.__setattr__(self, "input_size", size)
        object.__setattr__(self, "channels", channels)
        object.__setattr__(self, "mean", _fit_stats("mean", self.mean, channels))
        object.__setattr__(self, "std", _fit_stats("std", self.std, channels))
        if any(s <= 0 for s in self.std):
            raise ExecutionError(f"preprocessing: std values must be positive, got {list(self.std)}")
        interp = str(self.interpolation).lower()
        if interp not in INTERPOLATIONS:
            raise ExecutionError(f"preprocessing: interpolation must be one of "
                                 f"{', '.join(INTERPOLATIONS)}; got {self.interpolation!r}")
        object.__setattr__(self, "interpolation", interp)
        if self.crop_pct is not None:
            try:
                crop = float(self.crop_pct)
            except (TypeError, ValueError):
                raise ExecutionError(f"preprocessing: crop_pct must be a number, got {self.crop_pct!r}") from None
            if not 0.0 < crop <= 1.0:
                raise ExecutionError(f"preprocessing: crop_pct must be in (0, 1], got {crop}")
            object.__setattr__(self, "crop_pct", crop)

    # -- (de)serialisation -------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict | None) -> "Preprocess":
        """Build from a dict (unknown keys are ignored, missing keys take defaults)."""
        if not d:
            return cls()
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known and v is not None})

    def with_options(self, options: dict | None) -> "Preprocess":
        """This preprocessing overridden by the user's WITH options (those present).

        When ``channels`` changes but mean/std are not given, the statistics are adapted
        (averaged to one channel, or repeated to three)."""
        if not options:
            return self
        d = self.to_dict()
        for key in PREPROCESS_OPTION_KEYS:
            if options.get(key) is not None:
                d[key] = options[key]
        if options.get("channels") is not None:
            try:
                channels = int(options["channels"])
            except (TypeError, ValueError):
                raise ExecutionError(f"preprocessing: channels must be 1 or 3, got {options['channels']!r}") from None
            for key in ("mean", "std"):
                if options.get(key) is None:
                    d[key] = _adapt_stats(d[key], channels)
        return Preprocess.from_dict(d)

    # -- the pipeline ------------------------------------------------------------------
    def __call__(self, images: Any) -> torch.Tensor:
        """Preprocess a batch; returns float32 ``[N, channels, input_size, input_size]``."""
        images = as_batch(images)
        if isinstance(images, (np.ndarray, torch.Tensor)):
            batch = _batch_tensor(images)
            if batch.shape[0] == 0:
                return torch.zeros((0, self.channels, self.input_size, self.input_size))
            return self._finish(self._channels(batch))
        out = [self._finish(self._channels(_decode_one(im))) for im in images]
        if not out:
            return torch.zeros((0, self.channels, self.input_size, self.input_size))
        return torch.cat(out, dim=0)

    def _channels(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c == 4:  # drop alpha, as PIL's RGBA -> RGB
            x, c = x[:, :3], 3
        elif c == 2:  # grey + alpha
            x, c = x[:, :1], 1
        if c == self.channels:
            return x
        if c == 1:
            return x.expand(-1, 3, -1, -1)
        if c == 3:
            w = torch.tensor(_LUMA, dtype=x.dtype).view(1, 3, 1, 1)
            return (x * w).sum(dim=1, keepdim=True)
        raise ExecutionError(f"images have {c} channels; expected 1, 3 or 4")

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        x = self._resize(x.contiguous())
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        return ((x - mean) / std).contiguous()

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        s = self.input_size
        h, w = x.shape[-2:]
        if (h, w) == (s, s):
            return x
        if self.crop_pct is None:
            return self._interpolate(x, (s, s))
        short = math.floor(s / self.crop_pct)
        if h <= w:
            size = (short, max(short, int(short * w / h)))
        else:
            size = (max(short, int(short * h / w)), short)
        if size != (h, w):
            x = self._interpolate(x, size)
        top = int(round((x.shape[-2] - s) / 2.0))
        left = int(round((x.shape[-1] - s) / 2.0))
        return x[..., top:top + s, left:left + s]

    def _interpolate(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if self.interpolation == "nearest":
            return F.interpolate(x, size=size, mode="nearest")
        y = F.interpolate(x, size=size, mode=self.interpolation, align_corners=False, antialias=True)
        return y.clamp_(0.0, 1.0) if self.interpolation == "bicubic" else y


# -- helpers -------------------------------------------------------------------------------

def as_batch(images: Any) -> Any:
    """The caller's images as something indexable per image (an array batch or a list).

    A single image is wrapped: a path, a PIL image, a 2-d array, or a 3-d numpy array
    that is one colour image ``[H, W, 3|4]`` (H, W > 4); any other 3-d array is a batch
    of grey images ``[N, H, W]``."""
    if isinstance(images, (str, os.PathLike)) or _is_pil(images):
        return [images]
    if isinstance(images, (np.ndarray, torch.Tensor)):
        single = images.ndim == 2 or (isinstance(images, np.ndarray) and images.ndim == 3
                                      and images.shape[-1] in (3, 4) and min(images.shape[:2]) > 4)
        return images[None] if single else images
    if hasattr(images, "__len__") and hasattr(images, "__getitem__"):
        return images
    if isinstance(images, Iterable):
        return list(images)
    raise ExecutionError(f"cannot preprocess images of type {type(images).__name__}")


def _fit_stats(name: str, values: Any, channels: int) -> tuple:
    if isinstance(values, (int, float)):
        values = (values,)
    try:
        vals = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ExecutionError(f"preprocessing: {name} must be a number or a list of numbers, got {values!r}") from None
    if len(vals) == 1 and channels > 1:
        vals = vals * channels
    if len(vals) != channels:
        raise ExecutionError(f"preprocessing: {name} has {len(vals)} values but channels = {channels}")
    return vals


def _adapt_stats(values: Sequence[float], channels: int) -> list:
    values = list(values) if not isinstance(values, (int, float)) else [values]
    if len(values) == channels or len(values) == 1:
        return values
    if channels == 1:
        return [sum(values) / len(values)]
    return values


def _is_pil(obj: Any) -> bool:
    return type(obj).__module__.startswith("PIL.")


def _batch_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A batch array -> float tensor [N, C, H, W] in [0, 1].

    numpy arrays are ``[N,H,W]`` (grey) or ``[N,H,W,C]``; torch tensors may also be
    ``[N,C,H,W]`` (recognised by C in 1..4 at dim 1 and not at the last dim)."""
    batch = _to_float_tensor(images)
    if batch.ndim == 3:
        return batch.unsqueeze(1)
    if batch.ndim != 4:
        raise ExecutionError(f"images must be [N,H,W] or [N,H,W,C] arrays, got shape {tuple(batch.shape)}")
    if isinstance(images, torch.Tensor) and batch.shape[1] in (1, 2, 3, 4) and batch.shape[-1] not in (1, 2, 3, 4):
        return batch
    if batch.shape[-1] not in (1, 2, 3, 4):
        raise ExecutionError(f"images [N,H,W,C] must have C = 1, 3 or 4, got shape {tuple(batch.shape)}")
    return batch.permute(0, 3, 1, 2)


def _to_float_tensor(a: Any) -> torch.Tensor:
    """Array / tensor -> float32 tensor scaled to [0, 1] by dtype."""
    if isinstance(a, torch.Tensor):
        t = a.detach().cpu()
        if t.dtype == torch.uint8:
            return t.float().div_(255.0)
        if t.dtype == torch.bool:
            return t.float()
        if t.is_floating_point():
            return t.float()
        raise ExecutionError(f"unsupported image tensor dtype {t.dtype}")
    a = np.asarray(a)
    if a.dtype == np.uint8:
        return torch.from_numpy(a.astype(np.float32)).div_(255.0)
    if a.dtype == np.uint16:
        return torch.from_numpy(a.astype(np.float32)).div_(65535.0)
    if a.dtype == np.bool_ or np.issubdtype(a.dtype, np.floating):
        return torch.from_numpy(a.astype(np.float32))  # (a copy: callers' arrays stay untouched)
    raise ExecutionError(f"unsupported image dtype {a.dtype}: use uint8 (0..255) or float in [0, 1]")


def _decode_one(im: Any) -> torch.Tensor:
    """One image (path, PIL image, array or tensor) -> float tensor [1, C, H, W] in [0, 1]."""
    if isinstance(im, (str, os.PathLike)):
        from PIL import Image, UnidentifiedImageError
        try:
            with Image.open(im) as pil:
                pil.load()
                im = pil.copy()
        except FileNotFoundError:
            raise ExecutionError(f"image file not found: {os.fspath(im)}") from None
        except (UnidentifiedImageError, OSError) as exc:
            raise ExecutionError(f"cannot read image {os.fspath(im)}: {exc}") from None
    if _is_pil(im):
        if im.mode not in ("L", "RGB", "RGBA", "LA"):
            im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
        im = np.asarray(im)
    t = _to_float_tensor(im)
    if t.ndim == 2:
        t = t[None]
    elif t.ndim == 3:
        if not isinstance(im, torch.Tensor) or (t.shape[-1] in (1, 2, 3, 4) and t.shape[0] not in (1, 2, 3, 4)):
            t = t.permute(2, 0, 1)  # HWC -> CHW (tensors may already be CHW)
    else:
        raise ExecutionError(f"an image must be [H,W] or [H,W,C], got shape {tuple(t.shape)}")
    if t.shape[0] not in (1, 2, 3, 4):
        raise ExecutionError(f"an image must have 1, 3 or 4 channels, got {t.shape[0]}")
    return t[None]
