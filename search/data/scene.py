"""Moving scenes rendered at a high sub-frame rate: a textured background under a smooth random
camera trajectory (translation, rotation, zoom) plus independently moving sprites.

Rendering happens in linear light with bilinear sampling (``F.grid_sample``); textures are first
resized with an anti-aliasing filter so sampling never minifies by more than a little. Sampling
coordinates are computed in float64 NumPy, so a clip is bit-identical for a seed whatever the
thread count.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["SceneMotion", "smooth_path", "resize_texture", "make_sprite", "render_scene"]

logger = logging.getLogger(__name__)

_SPRITE_CHUNK = 8  # sub-frames sampled together within one sprite bounding box


@dataclass(frozen=True)
class SceneMotion:
    """Motion magnitudes of one clip (per RGB frame period).

    Attributes:
        speed: Camera translation speed in output pixels per frame period.
        rotation: Camera rotation speed in radians per frame period.
        zoom: Camera zoom speed in log-scale per frame period.
        sprite_speed: Typical sprite speed in output pixels per frame period.
    """

    speed: float
    rotation: float
    zoom: float
    sprite_speed: float

    def scaled(self, factor: float) -> SceneMotion:
        """Every magnitude times ``factor`` (> 0): the same paths, travelled faster or slower."""
        return SceneMotion(
            speed=self.speed * factor,
            rotation=self.rotation * factor,
            zoom=self.zoom * factor,
            sprite_speed=self.sprite_speed * factor,
        )


def smooth_path(
    rng: np.random.Generator, times: np.ndarray, *, speed: float, dims: int, turn: float = 0.5
) -> np.ndarray:
    """A smooth random path whose speed stays near ``speed``.

    The velocity is drawn at every whole frame period (a random direction, then a slowly
    turning random walk) and linearly interpolated; the path is its integral, centred so it
    passes through 0 at the middle time. Position is C1-smooth. For ``speed > 0`` the draws do
    not depend on ``speed``: the same generator state gives the same path scaled by ``speed``.

    Args:
        rng: Random generator.
        times: Float array (N,) of evenly spaced times in frame periods.
        speed: Mean speed in units per frame period.
        dims: Path dimensions (2 for translation, 1 for an angle or a log-scale).
        turn: How fast the velocity changes from one frame period to the next (relative).

    Returns:
        Float64 array (N, dims).
    """
    n_knots = int(math.ceil(float(times[-1]))) + 2
    v = np.empty((n_knots, dims))
    direction = rng.normal(size=dims)
    v[0] = direction / max(np.linalg.norm(direction), 1e-12) * speed
    for k in range(1, n_knots):
        step = v[k - 1] + turn * speed * rng.normal(size=dims)
        norm = np.linalg.norm(step)
        v[k] = step / norm * speed * rng.uniform(0.8, 1.2) if norm > 1e-12 else v[k - 1]
    knots = np.arange(n_knots, dtype=np.float64)
    vel = np.stack([np.interp(times, knots, v[:, d]) for d in range(dims)], axis=-1)  # (N, dims)
    dt = float(times[1] - times[0]) if len(times) > 1 else 1.0
    pos = np.cumsum(vel, axis=0) * dt  # (N, dims)
    return pos - pos[len(pos) // 2]


def resize_texture(texture: np.ndarray, scale: float) -> np.ndarray:
    """Resize a (C, h, w) texture by ``scale`` with anti-aliasing; returns float32 (C, h', w')."""
    c, h, w = texture.shape
    size = (max(2, round(h * scale)), max(2, round(w * scale)))
    if size == (h, w):
        return texture.astype(np.float32)
    x = torch.from_numpy(np.ascontiguousarray(texture, dtype=np.float32))[None]  # (1, C, h, w)
    out = F.interpolate(x, size=size, mode="bilinear", antialias=scale < 1, align_corners=False)
    return out[0].clamp_(0.0, 1.0).numpy()


def make_sprite(
    rng: np.random.Generator, texture: np.ndarray, *, height: int, width: int
) -> np.ndarray:
    """A sprite: a random crop of ``texture`` with a soft super-ellipse alpha mask.

    Args:
        rng: Random generator.
        texture: Float32 (3, h, w) linear texture, at least ``height x width``.
        height: Sprite height in output pixels.
        width: Sprite width in output pixels.

    Returns:
        Float32 array (4, height, width): linear RGB premultiplied by alpha, then alpha in
        [0, 1] (premultiplied so bilinear sampling leaves no dark fringe).
    """
    _, th, tw = texture.shape
    y0 = int(rng.integers(0, th - height + 1))
    x0 = int(rng.integers(0, tw - width + 1))
    rgb = texture[:, y0 : y0 + height, x0 : x0 + width]  # (3, hs, ws)
    power = rng.choice([2.0, 2.0, 3.0, 6.0])  # ellipse .. rounded rectangle
    yy = (np.arange(height) + 0.5 - height / 2) / (height / 2)
    xx = (np.arange(width) + 0.5 - width / 2) / (width / 2)
    radius = (np.abs(yy)[:, None] ** power + np.abs(xx)[None, :] ** power) ** (1 / power)
    edge = 2.0 / min(height, width)  # about one pixel of soft edge
    alpha = np.clip((1.0 - radius) / edge + 0.5, 0.0, 1.0)[None]  # (1, hs, ws)
    return np.concatenate([rgb * alpha, alpha], axis=0).astype(np.float32)


def _sample(
    image: np.ndarray,
    coef_x: np.ndarray,
    coef_y: np.ndarray,
    *,
    ys: np.ndarray,
    xs: np.ndarray,
    padding: str,
) -> torch.Tensor:
    """Bilinear samples of an affine warp of ``image``.

    Args:
        image: Float32 (C, h, w).
        coef_x: Float64 (N, 3): source x in pixels = ``a + b * px + c * py`` for frame n, where
            (px, py) are output pixel coordinates relative to the output centre.
        coef_y: Float64 (N, 3): the same for source y.
        ys: Float (H,) output row coordinates relative to the output centre.
        xs: Float (W,) output column coordinates relative to the output centre.
        padding: ``grid_sample`` padding mode.

    Returns:
        Float32 tensor (N, C, H, W).
    """
    _, h, w = image.shape
    py = ys.astype(np.float32)[None, :, None]  # (1, H, 1)
    px = xs.astype(np.float32)[None, None, :]  # (1, 1, W)
    grid = np.empty((len(coef_x), len(ys), len(xs), 2), dtype=np.float32)  # (N, H, W, 2)
    for d, (coef, size) in enumerate(((coef_x, w), (coef_y, h))):
        # normalised coordinate (2 q + 1) / size - 1 (align_corners=False), folded into the coefs
        norm = np.concatenate([(2 * coef[:, :1] + 1) / size - 1, 2 * coef[:, 1:] / size], axis=1)
        a, b, c = (norm[:, i, None, None].astype(np.float32) for i in range(3))  # (N, 1, 1)
        np.add(a + b * px, c * py, out=grid[..., d])
    src = torch.from_numpy(np.ascontiguousarray(image))[None].expand(len(coef_x), -1, -1, -1)
    return F.grid_sample(src, torch.from_numpy(grid), "bilinear", padding, align_corners=False)


def _span(coords: np.ndarray, lo: float, hi: float) -> slice:
    """Index range of sorted ``coords`` inside ``[lo, hi]``."""
    return slice(int(np.searchsorted(coords, lo)), int(np.searchsorted(coords, hi, side="right")))


def _camera_coefs(
    rng: np.random.Generator, times: np.ndarray, *, motion: SceneMotion, texture_hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the camera's trajectory; the background's affine sampling coefficients.

    Args:
        rng: Random generator (draws the translation, then the rotation, then the zoom path).
        times: Float (N,) sub-frame times in frame periods.
        motion: Motion magnitudes (a zero rotation or zoom draws no path).
        texture_hw: The background's (h, w).

    Returns:
        (coef_x, coef_y), float64 (N, 3) each, as :func:`_sample` takes them.
    """
    n = len(times)
    shift = smooth_path(rng, times, speed=motion.speed, dims=2)  # (N, 2)
    angle = smooth_path(rng, times, speed=motion.rotation, dims=1)[:, 0] if motion.rotation else 0
    log_zoom = smooth_path(rng, times, speed=motion.zoom, dims=1)[:, 0] if motion.zoom else 0
    zoom = np.exp(np.zeros(n) + log_zoom)
    cos, sin = zoom * np.cos(angle), zoom * np.sin(angle)  # (N,)
    th, tw = texture_hw
    coef_x = np.stack([tw / 2 - 0.5 + shift[:, 0], cos, -sin], axis=1)  # (N, 3)
    coef_y = np.stack([th / 2 - 0.5 + shift[:, 1], sin, cos], axis=1)  # (N, 3)
    return coef_x, coef_y


def _sprite_path(
    rng: np.random.Generator,
    times: np.ndarray,
    *,
    motion: SceneMotion,
    sprite_hw: tuple[int, int],
    frame_hw: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one sprite's trajectory and spin; its sampling coefficients and centre.

    Args:
        rng: Random generator (draws the start, the path, the spin, then the start angle).
        times: Float (N,) sub-frame times in frame periods.
        motion: Motion magnitudes.
        sprite_hw: The sprite's (hs, ws).
        frame_hw: The output's (H, W).

    Returns:
        (coef_x, coef_y) float64 (N, 3) each, as :func:`_sample` takes them, and the centre
        float64 (N, 2) as (x, y) relative to the output centre.
    """
    sh, sw = sprite_hw
    height, width = frame_hw
    n = len(times)
    start = rng.uniform([-0.35 * width, -0.35 * height], [0.35 * width, 0.35 * height])
    centre = start + smooth_path(rng, times, speed=motion.sprite_speed, dims=2, turn=0.8)
    spin = rng.uniform(-1, 1) * max(motion.rotation * 3, 0.05)
    phi = rng.uniform(0, 2 * np.pi) + spin * (times - times[n // 2])  # (N,)
    c, s = np.cos(phi), np.sin(phi)
    cx, cy = centre[:, 0], centre[:, 1]
    # sprite coords = R(-phi) (p - centre) + sprite centre
    coef_x = np.stack([sw / 2 - 0.5 - c * cx - s * cy, c, s], axis=1)  # (N, 3)
    coef_y = np.stack([sh / 2 - 0.5 + s * cx - c * cy, -s, c], axis=1)  # (N, 3)
    return coef_x, coef_y, centre


def _paste_sprite(
    frames: torch.Tensor,
    sprite: np.ndarray,
    coef_x: np.ndarray,
    coef_y: np.ndarray,
    centre: np.ndarray,
    *,
    ys: np.ndarray,
    xs: np.ndarray,
) -> None:
    """Composite a sprite over ``frames`` in place, sampling only its bounding box.

    Args:
        frames: Float32 (M, 3, H, W) linear frames, written in place.
        sprite: Float32 (4, hs, ws) premultiplied RGBA sprite.
        coef_x: Float64 (M, 3) sprite x sampling coefficients of each frame.
        coef_y: Float64 (M, 3) the same for y.
        centre: Float64 (M, 2) sprite centre (x, y) relative to the output centre.
        ys: Float (H,) output row coordinates relative to the output centre.
        xs: Float (W,) output column coordinates relative to the output centre.
    """
    _, sh, sw = sprite.shape
    cx, cy = centre[:, 0], centre[:, 1]  # (M,)
    reach = 0.5 * math.hypot(sh, sw) + 1.0
    m = len(coef_x)
    for f0 in range(0, m, _SPRITE_CHUNK):  # sample only the sprite's bounding box
        sl = slice(f0, min(m, f0 + _SPRITE_CHUNK))
        rows = _span(ys, cy[sl].min() - reach, cy[sl].max() + reach)
        cols = _span(xs, cx[sl].min() - reach, cx[sl].max() + reach)
        if rows.start >= rows.stop or cols.start >= cols.stop:
            continue
        rgba = _sample(sprite, coef_x[sl], coef_y[sl], ys=ys[rows], xs=xs[cols], padding="zeros")
        target = frames[sl, :, rows, cols]  # (n', 3, h', w') view
        target.mul_(1.0 - rgba[:, 3:]).add_(rgba[:, :3])  # premultiplied "over", linear light


def render_scene(
    rng: np.random.Generator,
    *,
    height: int,
    width: int,
    times: np.ndarray,
    background: np.ndarray,
    sprites: Sequence[np.ndarray],
    motion: SceneMotion,
    select: np.ndarray | None = None,
) -> np.ndarray:
    """Render the sub-frames of a clip.

    The trajectories are drawn for all of ``times`` whatever ``select`` is, so a generator in the
    same state renders the selected rows of the full render exactly; and, for positive
    magnitudes, ``motion.scaled(f)`` makes the same draws: the same paths travelled ``f`` times
    as fast (only the sprites' spin keeps its floor of 0.05 rad per frame period).

    Args:
        rng: Random generator (draws the trajectories and the sprites' start positions).
        height: Output height H.
        width: Output width W.
        times: Float array (N,) of sub-frame times in frame periods, evenly spaced.
        background: Float32 (3, h, w) linear texture, already at output pixel scale.
        sprites: Float32 (4, hs, ws) premultiplied RGBA sprites from :func:`make_sprite`.
        motion: Motion magnitudes.
        select: Int array (M,) of the indices into ``times`` to render (None: all).

    Returns:
        Float32 array (M, 3, H, W), linear light in [0, 1] (M = N without ``select``).
    """
    n = len(times)
    rows_out = np.arange(n) if select is None else np.asarray(select, dtype=np.int64)  # (M,)
    coef_x, coef_y = _camera_coefs(rng, times, motion=motion, texture_hw=background.shape[1:])
    ys = np.arange(height) + 0.5 - height / 2  # (H,) centred pixel coordinates
    xs = np.arange(width) + 0.5 - width / 2  # (W,)
    frames = _sample(
        background, coef_x[rows_out], coef_y[rows_out], ys=ys, xs=xs, padding="reflection"
    )  # (M, 3, H, W)
    for sprite in sprites:
        coef_x, coef_y, centre = _sprite_path(
            rng, times, motion=motion, sprite_hw=sprite.shape[1:], frame_hw=(height, width)
        )  # (N, 3), (N, 3), (N, 2)
        _paste_sprite(
            frames, sprite, coef_x[rows_out], coef_y[rows_out], centre[rows_out], ys=ys, xs=xs
        )
    return frames.clamp_(0.0, 1.0).numpy()
