"""Image files: 8-bit RGB read and write through Pillow (a dependency of scikit-image)."""

from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType

import numpy as np

from search.data.errors import DataError
from search.files import atomic_path

__all__ = ["IMAGE_SUFFIXES", "read_rgb", "write_rgb", "image_size"]

logger = logging.getLogger(__name__)

#: File suffixes treated as frames.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def _pil() -> ModuleType:
    try:
        from PIL import Image
    except ImportError as err:
        raise DataError("image files need Pillow: pip install 'pillow>=10.1'") from err
    return Image


def image_size(path: str | Path) -> tuple[int, int]:
    """(H, W) of an image file, read from its header only."""
    try:
        with _pil().open(path) as img:
            return img.height, img.width
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable image ({err})") from err


def read_rgb(path: str | Path) -> np.ndarray:
    """An image as uint8 (3, H, W) RGB (grey and palette images are expanded, alpha dropped)."""
    try:
        with _pil().open(path) as img:
            arr = np.asarray(img.convert("RGB"))  # (H, W, 3)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable image ({err})") from err
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def write_rgb(path: str | Path, image: np.ndarray) -> None:
    """Write an 8-bit RGB image as a lossless PNG (atomically: temp file then rename).

    Args:
        path: Destination file (parent folders are created).
        image: uint8 (3, H, W) channel-first (the package's layout) or (H, W, 3) channel-last;
            an array that fits both, (3, W, 3), is read as channel-first.

    Raises:
        DataError: not a uint8 RGB array.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or 3 not in (image.shape[0], image.shape[2]):
        raise DataError(
            f"{path}: expected uint8 (3, H, W) or (H, W, 3), got {image.dtype} {image.shape}"
        )
    hwc = image.transpose(1, 2, 0) if image.shape[0] == 3 else image  # (H, W, 3)
    with atomic_path(path) as tmp:
        _pil().fromarray(np.ascontiguousarray(hwc)).save(tmp, compress_level=1)
