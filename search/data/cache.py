"""Synthetic data sets generated once per spec and cached on disk, shared by every trial.

Cache layout (one folder per spec, named by :meth:`SyntheticSpec.folder_name`)::

    <cache_dir>/<folder>/meta.json               spec, generator version, per-clip draws
    <cache_dir>/<folder>/{train,val}/blurry.npy   uint8 (N, T, 3, H, W)
    <cache_dir>/<folder>/{train,val}/sharp.npy    uint8 (N, T, 3, H, W)
    <cache_dir>/<folder>/{train,val}/spikes.npy   uint8 (N, T*S*R, H, ceil(W/8)), bits packed
                                                  along W, least-significant bit first
    <cache_dir>/<folder>/{train,val}/windows.npy  int64 (N, T, K, 2) TFP readout windows

The raw spike stream is stored (bit-packed, about 8x smaller than K = 32 float voxels would be)
and the voxels are computed per item, on the crop only. A folder is written under a temporary
name and renamed into place, so processes that generate the same spec at once never see a
partial cache: the first rename wins and the others discard their copy. Arrays are read through
memory maps, so the data set costs little memory and pickles cheaply into DataLoader workers.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from search.data.base import ClipDataset, Region
from search.data.errors import DataError
from search.data.spikes import tfp_voxels
from search.data.synthetic import GENERATOR_VERSION, ClipParams, SyntheticSpec, generate_clip

__all__ = ["CACHE_ENV", "ClipSplits", "SyntheticClips", "default_cache_dir", "load_synthetic"]

logger = logging.getLogger(__name__)

#: Environment variable overriding the default cache folder.
CACHE_ENV = "VRTSPIKE_DATA_CACHE"
_ARRAYS = ("blurry", "sharp", "spikes", "windows")


def default_cache_dir() -> Path:
    """``$VRTSPIKE_DATA_CACHE`` if set, else ``studies/data_cache`` under the working directory."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.cwd() / "studies" / "data_cache"


class SyntheticClips(ClipDataset):
    """One split of a cached synthetic data set (see :class:`ClipDataset` for items).

    Args:
        folder: The split's cache folder (holding the ``.npy`` arrays).
        spec: The data set's spec.
        params: Each clip's random draws.
        crop: Random square crop side, or None for full frames.
        flips: Random horizontal/vertical flips.
        seed: Augmentation seed.
        normalise: Normalised spike voxels (the default) or raw firing rates.
    """

    def __init__(
        self,
        folder: str | Path,
        spec: SyntheticSpec,
        params: tuple[ClipParams, ...],
        *,
        crop: int | None = None,
        flips: bool = False,
        seed: int = 0,
        normalise: bool = True,
    ) -> None:
        self.folder = Path(folder)
        self.spec = spec
        self.params = params
        self._arrays: dict[str, np.ndarray] | None = None
        super().__init__(crop=crop, flips=flips, seed=seed, normalise=normalise, gamma=spec.gamma)

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.spec.height, self.spec.width

    def __len__(self) -> int:
        return len(self.params)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_arrays"] = None  # reopen the memory maps in the worker
        return state

    def _array(self, name: str) -> np.ndarray:
        if self._arrays is None:
            self._arrays = {
                k: np.load(self.folder / f"{k}.npy", mmap_mode="r" if len(self) else None)
                for k in _ARRAYS
            }
        return self._arrays[name]

    def _read(self, index: int, region: Region) -> dict[str, torch.Tensor]:
        top, left, h, w = region
        rows, cols = slice(top, top + h), slice(left, left + w)
        blurry = np.asarray(self._array("blurry")[index, :, :, rows, cols])  # (T, 3, h, w) u8
        sharp = np.asarray(self._array("sharp")[index, :, :, rows, cols])
        windows = np.asarray(self._array("windows")[index])  # (T, K, 2)
        t0, t1 = int(windows.min()), int(windows.max())
        b0, b1 = left // 8, (left + w + 7) // 8
        packed = self._array("spikes")[index, t0:t1, rows, b0:b1]  # (t1-t0, h, bytes)
        bits = np.unpackbits(packed, axis=-1, bitorder="little")  # (t1-t0, h, 8*bytes)
        spikes = bits[:, :, left - 8 * b0 : left - 8 * b0 + w]  # (t1-t0, h, w)
        voxels = tfp_voxels(spikes, windows - t0)  # (T, K, h, w)
        return {
            "blurry": torch.from_numpy(blurry.astype(np.float32) / 255.0),
            "sharp": torch.from_numpy(sharp.astype(np.float32) / 255.0),
            "spike": torch.from_numpy(voxels),
        }

    def spikes(self, index: int) -> np.ndarray:
        """Clip ``index``'s whole spike stream, bool (T*S*R, H, W)."""
        packed = np.asarray(self._array("spikes")[index])
        bits = np.unpackbits(packed, axis=-1, bitorder="little")
        return bits[..., : self.spec.width].astype(bool)


@dataclass(frozen=True)
class ClipSplits:
    """The fixed train/validation splits of one synthetic data set.

    Attributes:
        train: Training clips; flips on, crop as requested (change with ``train.with_crop``).
        val: Validation clips: full frames, no augmentation.
        spec: The spec that generated them.
        path: The cache folder.
    """

    train: SyntheticClips
    val: SyntheticClips
    spec: SyntheticSpec
    path: Path


def _write_split(folder: Path, spec: SyntheticSpec, *, split: str, count: int) -> list[ClipParams]:
    folder.mkdir(parents=True)
    t, k, h, w = spec.clip_len, spec.num_bins, spec.height, spec.width
    shapes = {
        "blurry": ((count, t, 3, h, w), np.uint8),
        "sharp": ((count, t, 3, h, w), np.uint8),
        "spikes": ((count, spec.total_readouts, h, (w + 7) // 8), np.uint8),
        "windows": ((count, t, k, 2), np.int64),
    }
    if count == 0:
        for name, (shape, dtype) in shapes.items():
            np.save(folder / f"{name}.npy", np.zeros(shape, dtype))
        return []
    arrays = {
        name: np.lib.format.open_memmap(folder / f"{name}.npy", "w+", dtype, shape)
        for name, (shape, dtype) in shapes.items()
    }
    params = []
    start = time.perf_counter()
    for i in range(count):
        clip = generate_clip(spec, split=split, index=i)
        arrays["blurry"][i] = clip.blurry
        arrays["sharp"][i] = clip.sharp
        arrays["spikes"][i] = np.packbits(clip.spikes, axis=-1, bitorder="little")
        arrays["windows"][i] = clip.windows
        params.append(clip.params)
        if (i + 1) % 16 == 0 or i + 1 == count:
            rate = (i + 1) / (time.perf_counter() - start)
            logger.info("%s: generated %d/%d clips (%.2f clips/s)", split, i + 1, count, rate)
    for arr in arrays.values():
        arr.flush()
    return params


def _generate(spec: SyntheticSpec, final: Path) -> None:
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    logger.info("generating synthetic data set %s", final)
    try:
        params = {
            "train": _write_split(tmp / "train", spec, split="train", count=spec.num_train),
            "val": _write_split(tmp / "val", spec, split="val", count=spec.num_val),
        }
        meta = {
            "generator_version": GENERATOR_VERSION,
            "key": spec.key(),
            "spec": spec.to_dict(),
            "params": {s: [dataclasses.asdict(p) for p in ps] for s, ps in params.items()},
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "meta.json").is_file():
                raise
            logger.info("another process cached %s first; using its copy", final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_synthetic(
    spec: SyntheticSpec,
    *,
    cache_dir: str | Path | None = None,
    crop: int | None = None,
    seed: int | None = None,
    normalise: bool = True,
) -> ClipSplits:
    """The spec's train/val splits, generated on first use and read from the cache afterwards.

    Args:
        spec: What to generate.
        cache_dir: Cache root (default :func:`default_cache_dir`).
        crop: Random square crop side for training items (None: full frames).
        seed: Augmentation seed of the training split (default ``spec.seed``).
        normalise: Spike voxels on the blurry frames' scale (default) or raw firing rates.

    Returns:
        The splits; ``train`` crops (if asked) and flips, ``val`` returns full clips.

    Raises:
        DataError: the cache folder holds data of another spec or cannot be read.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = root / spec.folder_name()
    if not (final / "meta.json").is_file():
        root.mkdir(parents=True, exist_ok=True)
        _generate(spec, final)
    meta_path = final / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"{meta_path}: unreadable cache metadata ({err})") from err
    if meta.get("key") != spec.key() or SyntheticSpec.from_dict(meta["spec"]) != spec:
        raise DataError(f"{meta_path}: cache holds another spec (key {meta.get('key')})")
    params = {s: tuple(ClipParams(**p) for p in meta["params"][s]) for s in ("train", "val")}
    aug_seed = spec.seed if seed is None else seed
    train = SyntheticClips(
        final / "train", spec, params["train"], flips=True, seed=aug_seed, normalise=normalise
    )
    return ClipSplits(
        train=train.with_crop(crop) if crop is not None else train,
        val=SyntheticClips(final / "val", spec, params["val"], normalise=normalise),
        spec=spec,
        path=final,
    )
