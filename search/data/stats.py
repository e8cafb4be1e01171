"""What a data set leaves to gain: blurry-input, spike-only and simple-fusion PSNR.

Three reference restorations of the sharp frame, none learned, scored per clip (the mean over
its frames of each frame's PSNR, peak 1, as :func:`search.metrics.psnr`), then summarised over
the clips by mean, min and max:

- **blurry**: the blurry input itself, RGB (what training reports as ``input_psnr_db``); also in
  grey, to compare with the spike-only number.
- **spike-only (grey)**: the spikes alone. The spike camera is monochrome, so this compares grey
  images: the *central TFP*, the mean of the central half of the K voxel bins the model receives
  (:func:`central_bins`; a window centred on the sharp frame's instant), times one gain per clip
  fitted by least squares to map the exposure's TFP (all K bins) onto the blurry frames'
  linear luminance (the blurry input, not the ground truth, so a real user could do the same),
  gamma-encoded, against the sharp frame's gamma-encoded linear luminance. Luminance is
  :data:`search.data.spikes.LUMA` on linear RGB, what the simulated camera integrates.
- **fusion (RGB)**: the S-SDM ratio model in linear light,
  ``sharp ~= blurry * (TFP_central + e) / (TFP_exposure + e)`` with one ratio for the three
  channels, ``e`` one spike in the central window (it pulls the ratio towards 1 where few
  spikes fell; measured without it, the fusion scored below the blurry input), clamped to [0, 1],
  gamma-encoded, against the sharp RGB frame.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from search.data.blur import frames_psnr
from search.data.errors import DataError
from search.data.spikes import LUMA
from search.data.synthetic import SyntheticSpec, generate_clip

__all__ = [
    "ClipScores",
    "DataStats",
    "Summary",
    "central_bins",
    "clip_scores",
    "dataset_stats",
    "format_header",
    "format_row",
    "ratio_fusion",
    "spike_luminance",
    "synthetic_val_stats",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Summary:
    """Mean, min and max of per-clip values."""

    mean: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        """Summary of a non-empty sequence."""
        arr = np.asarray(values, dtype=np.float64)
        return cls(mean=float(arr.mean()), min=float(arr.min()), max=float(arr.max()))


@dataclass(frozen=True)
class ClipScores:
    """The PSNRs (dB) of one clip, each the mean over its frames."""

    blurry: float
    blurry_grey: float
    spike_grey: float
    fusion: float


@dataclass(frozen=True)
class DataStats:
    """Per-clip scores summarised over a set of clips.

    Attributes:
        label: What was measured (e.g. a budget name).
        num_clips: Clips scored.
        frame_size: (H, W) of the frames.
        clip_len: Frames per clip T.
        num_bins: Voxel bins per frame K.
        central: The voxel bins averaged into the central TFP, ``[start, stop)``.
        blurry: Blurry input vs sharp, RGB.
        blurry_grey: Blurry input vs sharp, grey.
        spike_grey: Spike-only reconstruction vs sharp, grey.
        fusion: Ratio fusion vs sharp, RGB.
    """

    label: str
    num_clips: int
    frame_size: tuple[int, int]
    clip_len: int
    num_bins: int
    central: tuple[int, int]
    blurry: Summary
    blurry_grey: Summary
    spike_grey: Summary
    fusion: Summary


def central_bins(num_bins: int) -> slice:
    """The central half of K voxel bins, symmetric about the exposure's middle.

    ``m = K // 2`` bins, one more when ``K - m`` is odd, so the window is centred: K = 4 -> bins
    1-2, K = 8 -> 2-5, K = 32 -> 8-23; K = 1 or 2 -> all bins.
    """
    if num_bins < 1:
        raise DataError(f"num_bins must be >= 1, got {num_bins}")
    m = max(1, num_bins // 2)
    m += (num_bins - m) % 2
    start = (num_bins - m) // 2
    return slice(start, start + m)


def _luminance(rgb_lin: np.ndarray) -> np.ndarray:
    """(..., 3, H, W) linear RGB -> (..., H, W) linear luminance."""
    return np.einsum("...chw,c->...hw", rgb_lin, LUMA.astype(np.float64))


def spike_luminance(voxels: np.ndarray, blurry_lin: np.ndarray) -> np.ndarray:
    """Spike-only estimate of the sharp frames' linear luminance.

    Args:
        voxels: (T, K, H, W) TFP voxel bins over each frame's exposure.
        blurry_lin: (T, 3, H, W) blurry frames in linear light (only to fit the gain).

    Returns:
        Float64 (T, H, W): the central TFP times the clip's least-squares gain, in [0, 1].
    """
    vox = np.asarray(voxels, dtype=np.float64)
    exposure = vox.mean(axis=1)  # (T, H, W) TFP over the whole exposure
    target = _luminance(blurry_lin)  # (T, H, W)
    denom = float(np.sum(exposure * exposure))
    gain = float(np.sum(exposure * target)) / denom if denom > 0 else 0.0
    return np.clip(gain * vox[:, central_bins(vox.shape[1])].mean(axis=1), 0.0, 1.0)


def ratio_fusion(voxels: np.ndarray, blurry_lin: np.ndarray, *, bin_readouts: int) -> np.ndarray:
    """S-SDM ratio fusion: ``blurry * (TFP_central + e) / (TFP_exposure + e)`` in linear light.

    Args:
        voxels: (T, K, H, W) TFP voxel bins tiling each frame's exposure.
        blurry_lin: (T, 3, H, W) blurry frames in linear light.
        bin_readouts: Readouts in each bin's TFP window; ``e`` is one spike in the central
            window, ``1 / (m * bin_readouts)`` for ``m`` central bins.

    Returns:
        Float64 (T, 3, H, W) restored frames in linear light, in [0, 1].
    """
    vox = np.asarray(voxels, dtype=np.float64)
    central = central_bins(vox.shape[1])
    eps = 1.0 / max(1, (central.stop - central.start) * bin_readouts)
    ratio = (vox[:, central].mean(axis=1) + eps) / (vox.mean(axis=1) + eps)  # (T, H, W)
    return np.clip(np.asarray(blurry_lin, dtype=np.float64) * ratio[:, None], 0.0, 1.0)


def _numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def clip_scores(
    item: Mapping[str, np.ndarray | torch.Tensor], *, bin_readouts: int, gamma: float = 2.2
) -> ClipScores:
    """Score one clip.

    Args:
        item: ``{"blurry": (T, 3, H, W), "sharp": (T, 3, H, W), "spike": (T, K, H, W)}`` in
            [0, 1], gamma-encoded frames and raw TFP voxels (firing rates: a data set item
            loaded with ``normalise=False``).
        bin_readouts: Readouts in each voxel bin's TFP window (sets the fusion's ``e``).
        gamma: CRF exponent (linear = encoded ** gamma).

    Returns:
        The clip's four PSNRs.
    """
    blurry = _numpy(item["blurry"]).astype(np.float64)
    sharp = _numpy(item["sharp"]).astype(np.float64)
    voxels = _numpy(item["spike"])
    blurry_lin, sharp_lin = blurry**gamma, sharp**gamma

    def grey(lum: np.ndarray) -> np.ndarray:
        return np.clip(lum, 0.0, 1.0)[:, None] ** (1 / gamma)  # (T, 1, H, W)

    sharp_grey = grey(_luminance(sharp_lin))
    fused = ratio_fusion(voxels, blurry_lin, bin_readouts=bin_readouts) ** (1 / gamma)
    return ClipScores(
        blurry=frames_psnr(blurry, sharp),
        blurry_grey=frames_psnr(grey(_luminance(blurry_lin)), sharp_grey),
        spike_grey=frames_psnr(grey(spike_luminance(voxels, blurry_lin)), sharp_grey),
        fusion=frames_psnr(fused, sharp),
    )


def dataset_stats(
    items: Iterable[Mapping[str, np.ndarray | torch.Tensor]],
    *,
    label: str,
    bin_readouts: Iterable[int],
    gamma: float = 2.2,
) -> DataStats:
    """Scores of some clips, summarised.

    Args:
        items: Data set items (see :func:`clip_scores`), all of one shape.
        label: Name for the report.
        bin_readouts: Each clip's readouts per voxel bin window.
        gamma: CRF exponent.

    Returns:
        The summary.

    Raises:
        DataError: no items.
    """
    scores, shape = [], None
    for item, readouts in zip(items, bin_readouts, strict=False):
        scores.append(clip_scores(item, bin_readouts=readouts, gamma=gamma))
        shape = tuple(item["spike"].shape)  # (T, K, H, W)
    if not scores or shape is None:
        raise DataError(f"{label}: no clips to score")
    t, k, h, w = shape
    central = central_bins(k)

    def summary(name: str) -> Summary:
        values = [getattr(s, name) for s in scores]
        if not all(math.isfinite(v) for v in values):
            logger.warning("%s: non-finite %s PSNR", label, name)
        return Summary.of(values)

    return DataStats(
        label=label,
        num_clips=len(scores),
        frame_size=(h, w),
        clip_len=t,
        num_bins=k,
        central=(central.start, central.stop),
        blurry=summary("blurry"),
        blurry_grey=summary("blurry_grey"),
        spike_grey=summary("spike_grey"),
        fusion=summary("fusion"),
    )


def synthetic_val_stats(spec: SyntheticSpec, *, num_clips: int, label: str) -> DataStats:
    """Scores of the first ``num_clips`` validation clips of a synthetic spec.

    The clips are generated directly (the same clips :func:`search.data.load_synthetic` caches,
    without generating the training split or writing anything).

    Args:
        spec: The data set.
        num_clips: Validation clips to score (at most ``spec.num_val``).
        label: Name for the report.

    Returns:
        The summary.
    """
    count = min(num_clips, spec.num_val)
    start = time.perf_counter()
    clips = [generate_clip(spec, split="val", index=i) for i in range(count)]
    items = (
        {"blurry": c.blurry / 255.0, "sharp": c.sharp / 255.0, "spike": c.voxels()} for c in clips
    )
    readouts = [int(c.windows[0, 0, 1] - c.windows[0, 0, 0]) for c in clips]
    stats = dataset_stats(items, label=label, bin_readouts=readouts, gamma=spec.gamma)
    logger.info("%s: scored %d clips in %.1f s", label, count, time.perf_counter() - start)
    return stats


def format_header() -> list[str]:
    """The lines above a table of :func:`format_row` lines: what each column measures."""
    return [
        "PSNR (dB) vs the sharp frame: per clip the mean over frames; mean [min, max] over clips.",
        "  blurry      the blurry input, RGB; grey: gamma-encoded linear luminance, to compare",
        "  spike-only  central TFP (the central half of the K voxel bins: 'bins') x a per-clip",
        "              least-squares gain fitted to the blurry frames' luminance, gamma-encoded;",
        "              grey vs the sharp frame's grey",
        "  fusion      S-SDM ratio in linear light,",
        "              blurry * (TFP_central + e) / (TFP_exposure + e), e = one spike in the",
        "              central window; gamma-encoded, RGB",
        f"{'data':8s} {'frames':>7s} {'T':>2s} {'K':>3s} {'bins':>6s} {'clips':>5s}  "
        f"{'blurry RGB':22s} {'blurry grey':22s} {'spike-only grey':22s} fusion RGB",
    ]


def format_row(stats: DataStats) -> str:
    """One table line for :func:`format_header`."""

    def cell(s: Summary) -> str:
        return f"{s.mean:6.2f} [{s.min:5.2f}, {s.max:5.2f}]"

    h, w = stats.frame_size
    bins = f"{stats.central[0]}-{stats.central[1] - 1}"
    return (
        f"{stats.label:8s} {f'{h}x{w}':>7s} {stats.clip_len:2d} {stats.num_bins:3d} {bins:>6s} "
        f"{stats.num_clips:5d}  {cell(stats.blurry):22s} {cell(stats.blurry_grey):22s} "
        f"{cell(stats.spike_grey):22s} {cell(stats.fusion)}"
    )
