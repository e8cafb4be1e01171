"""Spike-stream representations and statistics: TFP voxel bins, firing rate, ISI regularity.

TFP (texture from playback) is the mean of the spikes over a window of readouts; it estimates
``gain * luminance / threshold``. A voxel grid of K bins per RGB frame splits the frame's span
of readouts into K equal bins and takes the TFP over a window centred in each bin.
"""

from __future__ import annotations

import math

import numpy as np

from search.data.errors import DataError

__all__ = [
    "LUMA",
    "interspike_cv",
    "normalise_voxels",
    "spike_gain",
    "tfp",
    "tfp_voxels",
    "voxel_windows",
]

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
"""BT.601 luma weights on linear RGB: what a monochrome spike sensor integrates."""


def voxel_windows(
    start: int,
    length: int,
    num_bins: int,
    *,
    window: int | None = None,
    total: int | None = None,
) -> np.ndarray:
    """Readout windows of the K TFP bins of one RGB frame.

    Bin ``k`` covers readouts ``[start + k*length/K, start + (k+1)*length/K)``; its window has
    ``window`` readouts centred on the bin's centre (default: the bin length rounded up, so the
    windows tile the span), shifted where needed to stay inside ``[0, total)``.

    Args:
        start: First readout of the frame's span (the exposure).
        length: Readouts in the span.
        num_bins: K.
        window: Window length in readouts (None: ``ceil(length / K)``).
        total: Readouts in the whole stream (None: ``start + length``).

    Returns:
        Int64 array (K, 2) of ``[lo, hi)`` readout ranges, all of the same length.
    """
    total = start + length if total is None else total
    if num_bins < 1 or length < 1 or start < 0 or start + length > total:
        raise DataError(
            f"bad voxel span: start {start}, length {length}, bins {num_bins}, total {total}"
        )
    win = max(1, math.ceil(length / num_bins)) if window is None else window
    if not 1 <= win <= total:
        raise DataError(f"TFP window {win} must be in [1, {total}] readouts")
    centres = start + (np.arange(num_bins) + 0.5) * (length / num_bins)  # (K,)
    lo = np.floor(centres - win / 2 + 0.5).astype(np.int64)
    lo = np.clip(lo, 0, total - win)
    return np.stack([lo, lo + win], axis=-1)  # (K, 2)


def tfp_voxels(spikes: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """TFP over each window.

    Args:
        spikes: Bool or 0/1 array (N, H, W).
        windows: Int array (..., 2) of ``[lo, hi)`` readout ranges inside ``[0, N)``.

    Returns:
        Float32 array (..., H, W) of firing rates in [0, 1].
    """
    windows = np.asarray(windows, dtype=np.int64)
    n = spikes.shape[0]
    if windows.size == 0 or windows.min() < 0 or windows.max() > n:
        raise DataError(f"TFP windows must lie in [0, {n}] readouts")
    lengths = windows[..., 1] - windows[..., 0]
    if np.any(lengths < 1):
        raise DataError("TFP windows must be non-empty")
    t0, t1 = int(windows.min()), int(windows.max())
    dtype = np.int16 if t1 - t0 < np.iinfo(np.int16).max else np.int32
    cum = np.zeros((t1 - t0 + 1, *spikes.shape[1:]), dtype=dtype)  # (N'+1, H, W)
    for i in range(t1 - t0):  # frame by frame: far faster than np.cumsum along axis 0
        np.add(cum[i], spikes[t0 + i], out=cum[i + 1], casting="unsafe")
    counts = cum[windows[..., 1] - t0] - cum[windows[..., 0] - t0]  # (..., H, W)
    scale = (1.0 / lengths[..., None, None]).astype(np.float32)
    return np.multiply(counts, scale, dtype=np.float32)


def spike_gain(voxels: np.ndarray, blurry: np.ndarray, *, gamma: float) -> float:
    """Linear luminance per unit firing rate of one clip (0 when it has no spikes).

    A firing rate is ``gain * luminance / threshold``: its scale depends on the camera and the
    light and differs from clip to clip (0.95 to 3.5 over the cpu budget's 32 training clips).
    The blurry frames integrate
    the same light over the same exposures, so their mean linear luminance over the mean firing
    rate of the voxels is the clip's scale.

    Args:
        voxels: The clip's raw TFP voxels (T, K, H, W) over its whole frames.
        blurry: The clip's blurry frames (T, 3, H, W), gamma-encoded, in [0, 1].
        gamma: The frames' encoding exponent (linear = value ** gamma).
    """
    mean_rate = float(voxels.mean())
    if mean_rate <= 0:
        return 0.0
    t, _, h, w = blurry.shape
    luminance = float(np.einsum("tchw,c->", np.power(blurry, gamma, dtype=np.float64), LUMA))
    return luminance / (t * h * w) / mean_rate


def normalise_voxels(voxels: np.ndarray, gain: float, *, gamma: float) -> np.ndarray:
    """TFP voxels on the blurry frames' intensity scale, gamma-encoded like them.

    Raw firing rates are linear and carry a scale that differs from clip to clip, while the
    frames are gamma-encoded: a network given raw rates learns nothing from the spikes in a
    short training (measured on the cpu budget's data: a 6-layer CNN gained +0.02 dB over 4000
    steps with raw voxels, +3.0 dB with these). The voxels times the clip's
    :func:`spike_gain` are linear luminance; clipped to [0, 1] and gamma-encoded, they live on
    the RGB frames' scale.

    Args:
        voxels: TFP voxels (T, K, H, W), firing rates in [0, 1].
        gain: The clip's :func:`spike_gain`.
        gamma: The frames' encoding exponent.

    Returns:
        Float32 (T, K, H, W) in [0, 1].
    """
    scaled = np.clip(voxels * np.float32(gain), 0.0, 1.0)
    return np.power(scaled, np.float32(1.0 / gamma), dtype=np.float32)


def tfp(spikes: np.ndarray, centre: int, window: int) -> np.ndarray:
    """TFP image of ``window`` readouts centred on readout ``centre`` (shifted to fit).

    Args:
        spikes: Bool array (N, H, W).
        centre: Readout index of the window centre.
        window: Window length in readouts.

    Returns:
        Float32 array (H, W).
    """
    n = spikes.shape[0]
    lo = int(np.clip(centre - window // 2, 0, max(0, n - window)))
    return tfp_voxels(spikes, np.array([lo, min(n, lo + window)]))


def interspike_cv(spikes: np.ndarray, *, min_spikes: int = 4) -> np.ndarray:
    """Coefficient of variation of each pixel's inter-spike intervals.

    A real static capture gives about 0.09 (very regular integrate-and-fire); a Poisson
    (Bernoulli) generator gives about 1.

    Args:
        spikes: Bool array (N, H, W).
        min_spikes: Pixels with fewer spikes get NaN.

    Returns:
        Float64 array (H, W): std / mean of the intervals, NaN where undefined.
    """
    n, h, w = spikes.shape
    pix, times = np.nonzero(np.asarray(spikes).reshape(n, h * w).T)  # sorted by pixel, then time
    gaps = np.diff(times).astype(np.float64)
    same = pix[1:] == pix[:-1]
    gaps, gpix = gaps[same], pix[1:][same]
    num = np.bincount(gpix, minlength=h * w).astype(np.float64)
    s1 = np.bincount(gpix, weights=gaps, minlength=h * w)
    s2 = np.bincount(gpix, weights=gaps * gaps, minlength=h * w)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / num
        var = np.maximum(s2 / num - mean * mean, 0.0)
        cv = np.sqrt(var) / mean
    cv[num < max(1, min_spikes - 1)] = np.nan
    return cv.reshape(h, w)
