"""Spike-camera data: the camera model, synthetic blur + spike clips, and real data on disk.

- :func:`simulate_spikes`: integrate-and-fire spike camera on linear luminance.
- :func:`read_dat` / :func:`write_dat`: the camera's ``.dat`` format.
- :class:`SyntheticSpec`, :func:`load_synthetic`: synthetic train/val clips generated once per
  spec and cached on disk (:class:`ClipSplits`).
- :func:`load_spk_gopro`, :func:`write_spk_gopro`: the Spk-GoPro / VRT+spike folder layout.
- :func:`synthetic_val_stats`, :func:`dataset_stats`: what a data set leaves to gain (blurry-input,
  spike-only and simple-fusion PSNR); ``python -m search.data stats`` prints them per budget.

Every data set returns ``{"blurry": (T, 3, H, W), "sharp": (T, 3, H, W), "spike": (T, K, H, W)}``
float32 tensors in [0, 1].
"""

from __future__ import annotations

from search.data.base import ClipDataset
from search.data.cache import ClipSplits, SyntheticClips, default_cache_dir, load_synthetic
from search.data.camera import simulate_spikes
from search.data.dat import read_dat, write_dat
from search.data.errors import DataError
from search.data.spikes import interspike_cv, tfp, tfp_voxels, voxel_windows
from search.data.spk_gopro import SpkGoProClips, load_spk_gopro, write_spk_gopro
from search.data.stats import DataStats, dataset_stats, synthetic_val_stats
from search.data.synthetic import ClipParams, SyntheticClip, SyntheticSpec, generate_clip

__all__ = [
    "ClipDataset",
    "ClipParams",
    "ClipSplits",
    "DataError",
    "DataStats",
    "SpkGoProClips",
    "SyntheticClip",
    "SyntheticClips",
    "SyntheticSpec",
    "dataset_stats",
    "default_cache_dir",
    "generate_clip",
    "interspike_cv",
    "load_spk_gopro",
    "load_synthetic",
    "read_dat",
    "simulate_spikes",
    "synthetic_val_stats",
    "tfp",
    "tfp_voxels",
    "voxel_windows",
    "write_dat",
    "write_spk_gopro",
]
