"""Blur calibration: the motion scale that gives a synthetic clip its target blurry-input PSNR.

How much a given motion blurs depends as much on the texture (a smooth photograph barely changes
where grass turns to mush) as on the speed, so a fixed speed range gives clips whose blurry-input
PSNR spreads over 20 dB. Instead each clip draws a target PSNR and the clip's motion (camera
translation, rotation, zoom and sprites together) is scaled by one factor until its blurry
frames score that target against its sharp frames. The scene's paths do not change with the
factor, only how fast they are travelled (:meth:`search.data.scene.SceneMotion.scaled`).

PSNR here is :func:`search.metrics.psnr` on the uint8 frames: RGB, gamma-encoded, peak 1, the
mean over frames of each frame's PSNR.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np

__all__ = ["frames_psnr", "solve_motion_scale"]

logger = logging.getLogger(__name__)

_DB_PER_DOUBLING = 5.0  # first guess of how much PSNR one doubling of the motion costs
_MAX_STEP = 3.0  # largest step before a bracket is found, in doublings


def frames_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over frames of the per-frame PSNR (peak 1), as :func:`search.metrics.psnr`.

    Args:
        a: uint8 (T, 3, H, W) frames (or float in [0, 1]).
        b: The same shape and kind as ``a``.

    Returns:
        PSNR in dB; identical frames count as 100 dB.
    """
    scale = 1 / 255 if a.dtype == np.uint8 else 1.0
    diff = (a.astype(np.float64) - b.astype(np.float64)) * scale  # (T, 3, H, W)
    mse = np.mean(diff.reshape(len(diff), -1) ** 2, axis=1)  # (T,)
    return float(np.mean(-10 * np.log10(np.maximum(mse, 1e-10))))


_Eval = tuple[float, float]  # (x = log2(scale), psnr - target)


def _next_x(
    x1: float,
    g1: float,
    *,
    prev: _Eval | None,
    sharp: _Eval | None,
    blurred: _Eval | None,
    bounds: tuple[float, float],
) -> float | None:
    """The next ``x`` to evaluate after ``(x1, g1)``.

    Inside a bracket, the false-position point of its ends; otherwise a secant step towards
    the target (from ``prev`` if the slope is falling, else the assumed slope), at most
    ``_MAX_STEP`` doublings and clamped to ``bounds``.

    Returns:
        The next ``x``, or None when the step is clamped back to ``x1``: the target lies beyond
        a bound.
    """
    if sharp is not None and blurred is not None:  # bracketed: Illinois false position
        (xa, ga), (xb, gb) = sharp, blurred
        return xa - ga * (xb - xa) / (gb - ga)
    slope = -_DB_PER_DOUBLING  # extrapolate towards the target
    if prev is not None and prev[0] != x1 and (g1 - prev[1]) / (x1 - prev[0]) < 0:
        slope = (g1 - prev[1]) / (x1 - prev[0])
    step = max(-_MAX_STEP, min(_MAX_STEP, -g1 / slope))
    lo_x, hi_x = bounds
    x = min(max(x1 + step, lo_x), hi_x)
    return None if x == x1 else x


def _update_bracket(
    point: _Eval, *, sharp: _Eval | None, blurred: _Eval | None, side: int
) -> tuple[_Eval | None, _Eval | None, int]:
    """Move the bracket end on ``point``'s side to it (Illinois: halve a twice-kept end).

    Args:
        point: The new evaluation ``(x, psnr - target)``.
        sharp: The bracket end with too little blur (error > 0), if any.
        blurred: The bracket end with too much blur (error <= 0), if any.
        side: Which end the previous evaluation replaced (1: sharp, -1: blurred, 0: none).

    Returns:
        (sharp, blurred, side) after the evaluation.
    """
    if point[1] > 0:
        if side == 1 and blurred is not None:
            blurred = (blurred[0], blurred[1] / 2)
        return point, blurred, 1
    if side == -1 and sharp is not None:
        sharp = (sharp[0], sharp[1] / 2)
    return sharp, point, -1


def solve_motion_scale(
    psnr_at: Callable[[float], float],
    *,
    target: float,
    max_scale: float,
    min_scale: float = 1e-3,
    tol: float = 0.2,
    max_evals: int = 7,
) -> tuple[float, float]:
    """The motion scale whose blurry-input PSNR is closest to ``target``.

    Works on ``x = log2(scale)``, where PSNR falls smoothly and (nearly) monotonically: a
    secant step from the last two evaluations (at first an assumed slope) until the target is
    bracketed, then Illinois false position inside the bracket. Steps stay inside
    ``[min_scale, max_scale]``; if the target lies beyond a bound, the bound is the answer.

    Args:
        psnr_at: Blurry-input PSNR (dB) of the clip rendered with a given scale.
        target: Wanted PSNR in dB.
        max_scale: Largest allowed scale (e.g. the fastest plausible motion).
        min_scale: Smallest allowed scale.
        tol: Stop once within this many dB of ``target``.
        max_evals: Most calls of ``psnr_at``.

    Returns:
        (scale, PSNR at that scale): the evaluated scale closest to the target.
    """
    lo_x, hi_x = math.log2(min_scale), math.log2(max_scale)
    evals: list[_Eval] = []  # (x, psnr - target)

    def err(x: float) -> float:
        value = psnr_at(2.0**x) - target
        evals.append((x, value))
        return value

    x0 = min(max(0.0, lo_x), hi_x)
    g0 = err(x0)
    sharp: _Eval | None = (x0, g0) if g0 > 0 else None  # too little blur
    blurred: _Eval | None = (x0, g0) if g0 <= 0 else None  # too much blur
    x1, g1 = x0, g0
    prev: _Eval | None = None
    side = 0  # Illinois: which bracket end was kept twice in a row
    while abs(g1) > tol and len(evals) < max_evals:
        x = _next_x(x1, g1, prev=prev, sharp=sharp, blurred=blurred, bounds=(lo_x, hi_x))
        if x is None:  # the target lies beyond a bound
            break
        prev = (x1, g1)
        x1, g1 = x, err(x)
        sharp, blurred, side = _update_bracket((x1, g1), sharp=sharp, blurred=blurred, side=side)
    x_best, g_best = min(evals, key=lambda e: abs(e[1]))
    logger.debug("motion scale %.3f: %.2f dB after %d renders", 2**x_best, g_best, len(evals))
    return 2.0**x_best, g_best + target
