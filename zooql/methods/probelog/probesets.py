"""The built-in natural-image probe set.

Honest description: these probes are **about twenty photographs and scientific images
that ship inside scikit-image** (``skimage.data``: astronaut, chelsea the cat, coffee,
rocket, camera man, coins, Hubble deep field, retina, moon, grass, gravel, brick, clock,
motorcycle stereo pair, ...), **augmented** with deterministic random crops (scale and
aspect jitter), flips, 90-degree rotations, occasional 2x2 mosaics of crops, grayscale,
channel permutations and brightness/contrast/saturation jitter.  They are *not* a
diverse natural-image data set like COCO (what the ProbeLog paper uses): the visual
content is limited to those few source images, so concepts absent from them (most
ImageNet classes) are probed only through textures and colours.  For serious use
supply your own probe images (e.g. a few thousand COCO images).

The set is deterministic: probe ``i`` depends only on ``(seed, i)`` and ``size``, so
``builtin_probes(n=100)`` is the first 100 images of ``builtin_probes(n=1000)``.
"""
from __future__ import annotations

import functools
import hashlib

import numpy as np

__all__ = ["builtin_probes", "probe_hashes", "source_images", "PROBESET_VERSION"]

#: Bump when the generator changes (descriptors from different versions are incomparable).
PROBESET_VERSION = 1

_SOURCES = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "hubble_deep_field",
            "immunohistochemistry", "retina", "moon", "grass", "gravel", "brick", "clock",
            "cell", "colorwheel", "logo", "text", "page", "stereo_motorcycle")


def _to_rgb(im: np.ndarray) -> np.ndarray:
    im = np.asarray(im)
    if im.dtype == bool:
        im = im.astype(np.uint8) * 255
    elif im.dtype != np.uint8:
        im = np.clip(im * (255.0 if im.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if im.ndim == 2:
        im = np.stack([im] * 3, axis=-1)
    if im.shape[-1] == 4:
        im = im[..., :3]
    return np.ascontiguousarray(im)


@functools.lru_cache(maxsize=1)
def source_images() -> tuple[tuple[str, np.ndarray], ...]:
    """The source photographs as RGB uint8 arrays (those this scikit-image ships)."""
    import skimage.data as skd

    out = []
    for name in _SOURCES:
        fn = getattr(skd, name, None)
        if fn is None:
            continue
        try:
            im = fn()
        except Exception:  # images that need a download are skipped
            continue
        if isinstance(im, tuple):  # stereo pair: (left, right, disparity)
            out.append((name + "_left", _to_rgb(im[0])))
            out.append((name + "_right", _to_rgb(im[1])))
        else:
            out.append((name, _to_rgb(im)))
    if not out:
        raise RuntimeError("scikit-image ships no sample images here; cannot build probes")
    return tuple(out)


def _resize(im: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR), dtype=np.uint8)


def _crop(rng: np.random.Generator, im: np.ndarray, size: int) -> np.ndarray:
    h, w = im.shape[:2]
    area = h * w * rng.uniform(0.04, 1.0)
    ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    ch = int(min(h, max(8, round(np.sqrt(area / ratio)))))
    cw = int(min(w, max(8, round(np.sqrt(area * ratio)))))
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    return _resize(im[y:y + ch, x:x + cw], size)


def _one_probe(i: int, size: int, seed: int, sources) -> np.ndarray:
    rng = np.random.default_rng([int(seed), int(i), PROBESET_VERSION])
    if rng.random() < 0.15 and size >= 8:  # 2x2 mosaic of crops from different images
        half = size // 2
        tiles = [_crop(rng, sources[int(rng.integers(len(sources)))][1], half) for _ in range(4)]
        img = np.zeros((size, size, 3), np.uint8)
        img[:half, :half], img[:half, half:2 * half] = tiles[0], tiles[1]
        img[half:2 * half, :half], img[half:2 * half, half:2 * half] = tiles[2], tiles[3]
        if size % 2:
            img = _resize(img[:2 * half, :2 * half], size)
    else:
        img = _crop(rng, sources[int(rng.integers(len(sources)))][1], size)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    if rng.random() < 0.15:
        img = np.rot90(img, k=int(rng.integers(1, 4)))
    f = img.astype(np.float32)
    if rng.random() < 0.15:
        f = f[..., rng.permutation(3)]
    gray = f.mean(axis=-1, keepdims=True)
    if rng.random() < 0.1:
        f = np.repeat(gray, 3, axis=-1)
    else:
        sat = rng.uniform(0.6, 1.4)
        f = gray + (f - gray) * sat
    contrast = rng.uniform(0.7, 1.3)
    brightness = rng.uniform(-30, 30)
    f = (f - f.mean()) * contrast + f.mean() + brightness
    return np.clip(np.rint(f), 0, 255).astype(np.uint8)


def builtin_probes(n: int = 1000, size: int = 224, seed: int = 0) -> np.ndarray:
    """``n`` deterministic probe images, uint8 ``[n, size, size, 3]`` (see module doc)."""
    n, size = int(n), int(size)
    if n < 0 or size < 4:
        raise ValueError("need n >= 0 and size >= 4")
    sources = source_images()
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        out[i] = _one_probe(i, size, seed, sources)
    return out


def probe_hashes(images: np.ndarray) -> list[str]:
    """sha256 (hex) of each probe's bytes (shape and dtype included), one per probe."""
    imgs = np.asarray(images)
    out = []
    for im in imgs:
        h = hashlib.sha256()
        h.update(f"{im.dtype.str}{im.shape}".encode())
        h.update(np.ascontiguousarray(im).tobytes())
        out.append(h.hexdigest())
    return out
