"""Real spike data on disk in the Spk-GoPro / VRT+spike layout: a loader and a writer.

RGB frames, either the GOPRO_Large layout ``<root>/<split>/<clip>/{blur,sharp}/<frame>.png``
(``blur_dir`` may be ``blur_gamma``) or the KAIR layout ``<root>/<split>_GT_blurred/<clip>/`` and
``<root>/<split>_GT/<clip>/``. Spikes: one ``.dat`` per RGB frame, named like it, in
``<spike_root>/<split>/<clip>/spike/``; ``<spike_root>/config.yaml`` (or
``<spike_root>/<split>/config.yaml``) gives ``spike_h``, ``spike_w`` and optionally
``spike_flipud`` (default true). Each ``.dat`` holds the spike frames of that RGB frame's
exposure; its K voxel bins split the file's frames evenly. Spikes are mapped onto the RGB crop
proportionally and resampled bilinearly to its size (exact slicing when sizes agree).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from search.data.base import ClipDataset, Region
from search.data.dat import dat_frame_count, frame_bytes, read_dat, write_dat
from search.data.errors import DataError
from search.data.images import IMAGE_SUFFIXES, image_size, read_rgb, write_rgb
from search.data.spikes import tfp_voxels, voxel_windows
from search.data.synthetic import GENERATOR_VERSION, SyntheticSpec, generate_clip

__all__ = ["SpikeConfig", "SpkGoProClips", "read_spike_config", "load_spk_gopro", "write_spk_gopro"]

logger = logging.getLogger(__name__)

#: Folder names the writer uses for the synthetic train and validation splits (GoPro's).
WRITE_SPLITS = {"train": "train", "val": "test"}


@dataclass(frozen=True)
class SpikeConfig:
    """The spike stream's ``config.yaml``: sensor size and storage orientation."""

    spike_h: int
    spike_w: int
    spike_flipud: bool = True

    @property
    def size(self) -> tuple[int, int]:
        """(spike_h, spike_w)."""
        return self.spike_h, self.spike_w


def read_spike_config(spike_root: str | Path, split: str) -> SpikeConfig:
    """Read ``<spike_root>/config.yaml`` (or ``<spike_root>/<split>/config.yaml``).

    Raises:
        DataError: no config file, or missing/invalid ``spike_h``/``spike_w``.
    """
    candidates = [Path(spike_root) / "config.yaml", Path(spike_root) / split / "config.yaml"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise DataError(
            f"spike config not found: expected {candidates[0]} or {candidates[1]} "
            "with spike_h and spike_w"
        )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise DataError(f"{path}: invalid YAML ({err})") from err
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping with spike_h and spike_w")
    for key in ("spike_h", "spike_w"):
        value = data.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise DataError(f"{path}: {key} must be a positive int, got {value!r}")
    flip = data.get("spike_flipud", True)
    if not isinstance(flip, bool):
        raise DataError(f"{path}: spike_flipud must be true or false, got {flip!r}")
    return SpikeConfig(data["spike_h"], data["spike_w"], flip)


def _frames(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes)


@dataclass(frozen=True)
class _Clip:
    name: str
    blurry: tuple[Path, ...]
    sharp: tuple[Path, ...]
    spikes: tuple[Path, ...]


def _rgb_folders(
    root: Path, split: str, clip: str, *, blur_dir: str, sharp_dir: str
) -> tuple[Path, Path]:
    if (root / split).is_dir():
        return root / split / clip / blur_dir, root / split / clip / sharp_dir
    return root / f"{split}_GT_blurred" / clip, root / f"{split}_GT" / clip


def _scan(
    root: Path, spike_root: Path, split: str, *, blur_dir: str, sharp_dir: str
) -> list[_Clip]:
    if (root / split).is_dir():
        names = sorted(p.name for p in (root / split).iterdir() if p.is_dir())
    elif (root / f"{split}_GT").is_dir():
        names = sorted(p.name for p in (root / f"{split}_GT").iterdir() if p.is_dir())
    else:
        raise DataError(
            f"no RGB frames for split {split!r}: expected {root / split}/<clip>/{blur_dir}/ "
            f"or {root / (split + '_GT')}/<clip>/"
        )
    clips = []
    for name in names:
        blur_folder, sharp_folder = _rgb_folders(
            root, split, name, blur_dir=blur_dir, sharp_dir=sharp_dir
        )
        spike_folder = spike_root / split / name / "spike"
        blurry = _frames(blur_folder, IMAGE_SUFFIXES)
        sharp = _frames(sharp_folder, IMAGE_SUFFIXES)
        spikes = _frames(spike_folder, (".dat",))
        counts = (len(blurry), len(sharp), len(spikes))
        if len(set(counts)) != 1:
            raise DataError(
                f"clip {name!r}: mismatched frame counts: {counts[0]} blurry in {blur_folder}, "
                f"{counts[1]} sharp in {sharp_folder}, {counts[2]} .dat in {spike_folder}"
            )
        for b, s, d in zip(blurry, sharp, spikes, strict=True):
            if not b.stem == s.stem == d.stem:
                raise DataError(
                    f"clip {name!r}: frame names differ: {b.name}, {s.name}, {d.name} "
                    "(expected one blurry, sharp and .dat file per frame, same names)"
                )
        clips.append(_Clip(name, tuple(blurry), tuple(sharp), tuple(spikes)))
    return clips


class SpkGoProClips(ClipDataset):
    """Windows of ``clip_len`` consecutive frames from Spk-GoPro-layout clips.

    Items are as in :class:`ClipDataset`; build it with :func:`load_spk_gopro`.
    """

    def __init__(
        self,
        clips: list[_Clip],
        config: SpikeConfig,
        *,
        clip_len: int,
        num_bins: int,
        stride: int,
        tfp_window: int | None,
        crop: int | None,
        flips: bool,
        seed: int,
        normalise: bool = True,
    ) -> None:
        self.clips = clips
        self.config = config
        self.clip_len = clip_len
        self.num_bins = num_bins
        self.tfp_window = tfp_window
        self.starts = [
            (c, s)
            for c, clip in enumerate(clips)
            for s in range(0, len(clip.blurry) - clip_len + 1, stride)
        ]
        if not self.starts:
            raise DataError(f"no clip has {clip_len} frames (clips: {[c.name for c in clips]})")
        self._size = image_size(clips[self.starts[0][0]].blurry[0])
        super().__init__(crop=crop, flips=flips, seed=seed, normalise=normalise)

    @property
    def frame_size(self) -> tuple[int, int]:
        return self._size

    def __len__(self) -> int:
        return len(self.starts)

    def _spike_voxels(self, path: Path, region: Region) -> np.ndarray:
        cfg, (big_h, big_w) = self.config, self._size
        spikes = read_dat(path, cfg.spike_h, cfg.spike_w, flipud=cfg.spike_flipud)  # (N, h, w)
        n = spikes.shape[0]
        if n == 0:
            raise DataError(f"{path}: no spike frames")
        windows = voxel_windows(0, n, self.num_bins, window=self.tfp_window, total=n)  # (K, 2)
        top, left, h, w = region
        if (cfg.spike_h, cfg.spike_w) == (big_h, big_w):
            return tfp_voxels(spikes[:, top : top + h, left : left + w], windows)
        # spike coordinates of the crop's pixel centres (half-pixel convention, like cv2.resize)
        ys = (top + np.arange(h) + 0.5) * cfg.spike_h / big_h - 0.5
        xs = (left + np.arange(w) + 0.5) * cfg.spike_w / big_w - 0.5
        y0, y1 = max(0, int(np.floor(ys[0]))), min(cfg.spike_h, int(np.ceil(ys[-1])) + 1)
        x0, x1 = max(0, int(np.floor(xs[0]))), min(cfg.spike_w, int(np.ceil(xs[-1])) + 1)
        box = torch.from_numpy(tfp_voxels(spikes[:, y0:y1, x0:x1], windows))  # (K, bh, bw)
        gy = (2 * (ys - y0) + 1) / (y1 - y0) - 1  # (h,) normalised, align_corners=False
        gx = (2 * (xs - x0) + 1) / (x1 - x0) - 1  # (w,)
        grid = np.stack(np.broadcast_arrays(gx[None, :], gy[:, None]), axis=-1)  # (h, w, 2)
        out = F.grid_sample(
            box[None],
            torch.from_numpy(grid[None].astype(np.float32)),
            mode="bilinear",
            padding_mode="border",
            align_corners=False,
        )  # (1, K, h, w)
        return out[0].numpy()

    def _read(self, index: int, region: Region) -> dict[str, torch.Tensor]:
        c, start = self.starts[index]
        clip = self.clips[c]
        top, left, h, w = region
        blurry, sharp, spike = [], [], []
        for f in range(start, start + self.clip_len):
            for path, out in ((clip.blurry[f], blurry), (clip.sharp[f], sharp)):
                img = read_rgb(path)  # (3, H, W)
                if img.shape[1:] != self._size:
                    raise DataError(f"{path}: size {img.shape[1:]}, expected {self._size}")
                out.append(img[:, top : top + h, left : left + w])
            spike.append(self._spike_voxels(clip.spikes[f], region))
        return {
            "blurry": torch.from_numpy(np.stack(blurry).astype(np.float32) / 255.0),
            "sharp": torch.from_numpy(np.stack(sharp).astype(np.float32) / 255.0),
            "spike": torch.from_numpy(np.stack(spike)),
        }


def load_spk_gopro(
    root: str | Path,
    *,
    spike_root: str | Path | None = None,
    split: str,
    clip_len: int,
    num_bins: int,
    crop: int | None = None,
    flips: bool = False,
    stride: int | None = None,
    blur_dir: str = "blur",
    sharp_dir: str = "sharp",
    tfp_window: int | None = None,
    seed: int = 0,
    normalise: bool = True,
) -> SpkGoProClips:
    """A data set over real (or written synthetic) clips in the Spk-GoPro layout.

    Args:
        root: RGB root (GOPRO_Large or KAIR layout, see the module docstring).
        spike_root: Spike root (default: ``root``).
        split: Split folder name, e.g. "train" or "test".
        clip_len: Frames per item T.
        num_bins: Voxel bins per frame K.
        crop: Random square crop side (None: full frames).
        flips: Random horizontal/vertical flips.
        stride: Frames between consecutive items of a clip (default ``clip_len``).
        blur_dir: Blurry folder name in the GOPRO_Large layout ("blur" or "blur_gamma").
        sharp_dir: Sharp folder name in the GOPRO_Large layout.
        tfp_window: TFP window per bin in spike frames (None: the bin length).
        seed: Augmentation seed.
        normalise: Spike voxels on the blurry frames' scale (default) or raw firing rates.

    Raises:
        DataError: missing folders or config, mismatched frame counts or names, a ``.dat``
            whose size is not a whole number of frames; each message names the path.
    """
    root = Path(root)
    spike_root = root if spike_root is None else Path(spike_root)
    if clip_len < 1 or num_bins < 1 or (stride is not None and stride < 1):
        raise DataError("clip_len, num_bins and stride must be >= 1")
    config = read_spike_config(spike_root, split)
    clips = _scan(root, spike_root, split, blur_dir=blur_dir, sharp_dir=sharp_dir)
    for clip in clips:  # fail early on truncated spike files (a stat per file)
        for path in clip.spikes:
            dat_frame_count(path, config.spike_h, config.spike_w)
    logger.info("%s/%s: %d clips, spike %dx%d", root, split, len(clips), *config.size)
    return SpkGoProClips(
        clips,
        config,
        clip_len=clip_len,
        num_bins=num_bins,
        stride=clip_len if stride is None else stride,
        tfp_window=tfp_window,
        crop=crop,
        flips=flips,
        seed=seed,
        normalise=normalise,
    )


def write_spk_gopro(out: str | Path, spec: SyntheticSpec) -> Path:
    """Write the spec's synthetic clips in the Spk-GoPro layout (train -> "train", val -> "test").

    Each clip gets ``blur/``, ``sharp/`` (PNG) and ``spike/`` (one ``.dat`` per frame holding the
    spike frames of its exposure) plus ``params.yaml`` (the clip's random draws); ``config.yaml``
    at ``out`` gives the spike size and the generator spec. The clips are the same as those of
    :func:`load_synthetic` for the spec.

    Returns:
        ``out``.
    """
    out = Path(out)
    counts = {"train": spec.num_train, "val": spec.num_val}
    for split, folder in WRITE_SPLITS.items():
        for i in range(counts[split]):
            clip = generate_clip(spec, split=split, index=i)
            base = out / folder / f"clip_{i:04d}"
            for t in range(spec.clip_len):
                write_rgb(base / "blur" / f"{t:06d}.png", clip.blurry[t])
                write_rgb(base / "sharp" / f"{t:06d}.png", clip.sharp[t])
                a, b = clip.exposures[t]
                write_dat(base / "spike" / f"{t:06d}.dat", clip.spikes[a:b])
            (base / "params.yaml").write_text(yaml.safe_dump(dataclasses.asdict(clip.params)))
        logger.info("wrote %d %s clips under %s", counts[split], split, out / folder)
    config = {
        "spike_h": spec.height,
        "spike_w": spec.width,
        "spike_flipud": True,
        "spike_frame_bytes": frame_bytes(spec.height, spec.width),
        "synthetic": {"generator_version": GENERATOR_VERSION, "spec": spec.to_dict()},
    }
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return out
