"""Textures for synthetic scenes: real photographs bundled with scikit-image, plus procedural ones.

The photographs listed in :data:`PHOTO_TEXTURES` ship inside the scikit-image wheel and load with
no network (checked on scikit-image 0.26). Procedural
"dead leaves" textures (occluding discs with power-law sizes, some striped) complement them.
All textures are returned in linear light (sRGB values raised to the power ``gamma``).
"""

from __future__ import annotations

import functools
import logging
from types import ModuleType

import numpy as np

from search.data.errors import DataError

__all__ = [
    "PHOTO_TEXTURES",
    "SMOOTH_TEXTURES",
    "BLUR_TEXTURES",
    "PROCEDURAL",
    "photo_texture",
    "dead_leaves",
    "srgb_to_linear",
]

logger = logging.getLogger(__name__)

#: Real photographs bundled in the scikit-image wheel (colour first, then grey textures).
PHOTO_TEXTURES: tuple[str, ...] = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "motorcycle_left",
    "motorcycle_right",
    "brick",
    "grass",
    "gravel",
    "camera",
    "moon",
)
#: Photographs too smooth to blur like GoPro frames at plausible speeds: at 64x64 and 10 px of
#: motion per frame period their blurry frames score about 40 dB where the others score 23-30.
SMOOTH_TEXTURES: tuple[str, ...] = ("retina", "moon")
#: The photographs synthetic clips draw from by default.
BLUR_TEXTURES: tuple[str, ...] = tuple(t for t in PHOTO_TEXTURES if t not in SMOOTH_TEXTURES)
#: Name that selects a procedural dead-leaves texture.
PROCEDURAL = "dead_leaves"


def srgb_to_linear(img: np.ndarray, gamma: float = 2.2) -> np.ndarray:
    """uint8 or [0, 1] float sRGB-ish values -> float32 linear light (power-law CRF)."""
    x = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
    return np.power(np.clip(x, 0.0, 1.0), gamma)


def _skimage_data() -> ModuleType:
    try:
        import skimage.data
    except ImportError as err:
        raise DataError(
            "synthetic textures need scikit-image (a declared dependency): "
            "pip install 'scikit-image>=0.26,<0.27'"
        ) from err
    return skimage.data


@functools.lru_cache(maxsize=32)
def _photo_uint8(name: str) -> np.ndarray:
    data = _skimage_data()
    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = data.stereo_motorcycle()
        img = left if name == "motorcycle_left" else right
    elif name in PHOTO_TEXTURES:
        img = getattr(data, name)()
    else:
        raise DataError(f"unknown texture {name!r}; valid: {', '.join(PHOTO_TEXTURES)}")
    img = np.asarray(img)
    if img.ndim == 3:
        img = img[..., :3]  # drop alpha
    img = img if img.ndim == 3 else img[..., None]  # (H, W, C), C in {1, 3}
    img = np.ascontiguousarray(np.moveaxis(img, -1, 0))  # (C, H, W)
    img.setflags(write=False)
    return img


def photo_texture(name: str, *, gamma: float = 2.2) -> np.ndarray:
    """A bundled photograph in linear light.

    Args:
        name: One of :data:`PHOTO_TEXTURES`.
        gamma: CRF exponent used to linearise.

    Returns:
        Float32 array (C, H, W), C = 3 for colour photographs and 1 for grey ones.
    """
    return srgb_to_linear(_photo_uint8(name), gamma)


def dead_leaves(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A procedural dead-leaves texture in linear light.

    Discs with radii drawn from a power law (density ~ r^-3) fall on top of each other; each is a
    flat colour or a sinusoidal stripe pattern between two colours; a smooth shading gradient
    and fine grain are added. Edges are anti-aliased over one pixel.

    Args:
        rng: Random generator.
        height: Output height.
        width: Output width.

    Returns:
        Float32 array (3, H, W) in [0, 1].
    """
    img = np.empty((3, height, width), dtype=np.float32)
    img[:] = rng.uniform(0.05, 0.6, size=(3, 1, 1))
    size = min(height, width)
    r_min, r_max = max(1.5, size / 60), size / 4
    n_discs = int(np.clip(6 * height * width / (r_min * r_max * np.pi), 40, 1500))
    u = rng.random(n_discs)
    radii = r_min * r_max / (r_max - u * (r_max - r_min))  # inverse CDF of the r^-3 law
    for r in radii:
        cy, cx = rng.uniform(-r, height + r), rng.uniform(-r, width + r)
        y0, y1 = max(0, int(cy - r - 1)), min(height, int(cy + r + 2))
        x0, x1 = max(0, int(cx - r - 1)), min(width, int(cx + r + 2))
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dist = np.hypot(yy - cy, xx - cx)
        alpha = np.clip(r + 0.5 - dist, 0.0, 1.0)  # (h, w) anti-aliased disc
        colour = rng.uniform(0.0, 1.0, size=(3, 1, 1)) ** 1.5
        if rng.random() < 0.35:  # striped leaf
            other = rng.uniform(0.0, 1.0, size=(3, 1, 1)) ** 1.5
            angle, period = rng.uniform(0, np.pi), rng.uniform(2.5, max(3.0, r))
            phase = (xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / period)
            mix = 0.5 + 0.5 * np.sin(phase)
            fill = colour * mix + other * (1 - mix)  # (3, h, w)
        else:
            fill = colour
        patch = img[:, y0:y1, x0:x1]
        patch += alpha * (fill - patch)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    g = rng.normal(size=2) / max(height, width)
    shading = 1.0 + 0.4 * np.tanh(g[0] * yy + g[1] * xx)  # smooth illumination gradient
    img *= shading
    img += rng.normal(0.0, 0.01, size=img.shape).astype(np.float32)  # fine grain
    return np.clip(img, 0.0, 1.0)
