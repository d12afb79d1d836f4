"""Image files on disk: the extensions ZooQL reads and a recursive, sorted lister."""
from __future__ import annotations

import os

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def list_image_files(folder: str) -> list[str]:
    """Image files under ``folder`` (any depth, hidden files skipped): relative paths with
    ``/`` separators, in sorted order."""
    out = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        out += [os.path.relpath(os.path.join(root, n), folder) for n in names
                if n.lower().endswith(IMAGE_EXTS) and not n.startswith(".")]
    return sorted(p.replace(os.sep, "/") for p in out)
