"""The clip data set base class: item layout, random crops and flips, reproducible by seed.

Every data set of this package returns items ``{"blurry": (T, 3, H, W), "sharp": (T, 3, H, W),
"spike": (T, K, H, W)}`` of float32 tensors in [0, 1]. The spike voxels are normalised TFP bins
(:func:`search.data.spikes.normalise_voxels`): the clip's firing rates on the blurry frames'
intensity scale, with one gain per clip computed from the whole frames, so a crop's voxels are
the crop of the whole frame's (``normalise=False`` gives the raw firing rates).

Augmentation (a random square crop, the same for every frame and for the spikes, and random
horizontal/vertical flips) is drawn from a ``torch.Generator``: either one the caller passes to
:meth:`ClipDataset.sample`, or, through ``dataset[index]``, one seeded from ``(seed, epoch,
index)``, so an item never depends on the order of access or on the number of DataLoader
workers. Call :meth:`ClipDataset.set_epoch` at the start of each epoch for fresh crops.
"""

from __future__ import annotations

import copy
import logging
from typing import Self

import numpy as np
import torch
from torch.utils.data import Dataset

from search.data.errors import DataError
from search.data.spikes import normalise_voxels, spike_gain

__all__ = ["ClipDataset", "Region"]

logger = logging.getLogger(__name__)

#: A crop as (top, left, height, width) in frame pixels.
Region = tuple[int, int, int, int]


class ClipDataset(Dataset[dict[str, torch.Tensor]]):
    """Base class: subclasses implement ``__len__``, :attr:`frame_size` and :meth:`_read`.

    Args:
        crop: Side of the random square crop (None: full frames, no cropping).
        flips: Random horizontal and vertical flips.
        seed: Seed of the per-item generators used by ``__getitem__``.
    """

    def __init__(
        self,
        *,
        crop: int | None = None,
        flips: bool = False,
        seed: int = 0,
        normalise: bool = True,
        gamma: float = 2.2,
    ) -> None:
        self.crop: int | None = None
        self.flips = flips
        self.seed = seed
        self.epoch = 0
        self.normalise, self.gamma = normalise, gamma
        self._gains: dict[int, float] = {}
        if crop is not None:
            self._set_crop(crop)

    # -- subclass interface -------------------------------------------------------------------
    @property
    def frame_size(self) -> tuple[int, int]:
        """Full frame (H, W) of every item."""
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def _read(self, index: int, region: Region) -> dict[str, torch.Tensor]:
        """Item ``index`` restricted to ``region``, before flips (float32 tensors)."""
        raise NotImplementedError

    def spike_gain(self, index: int) -> float:
        """Item ``index``'s :func:`~search.data.spikes.spike_gain`, from its whole frames."""
        if index not in self._gains:
            h, w = self.frame_size
            raw = self._read(index, (0, 0, h, w))
            self._gains[index] = spike_gain(
                raw["spike"].numpy(), raw["blurry"].numpy(), gamma=self.gamma
            )
        return self._gains[index]

    # -- augmentation ---------------------------------------------------------------------------
    def _set_crop(self, crop: int | None) -> None:
        if crop is not None:
            h, w = self.frame_size
            if not isinstance(crop, int) or not 1 <= crop <= min(h, w):
                raise DataError(f"crop must be an int in [1, {min(h, w)}] or None, got {crop!r}")
        self.crop = crop

    def with_crop(self, crop: int | None) -> Self:
        """A copy that returns random ``crop x crop`` crops (None: full frames)."""
        other = copy.copy(self)
        other._set_crop(crop)
        return other

    def with_augment(self, *, flips: bool = True, seed: int | None = None) -> Self:
        """A copy with random flips switched on or off and, optionally, a new seed."""
        other = copy.copy(self)
        other.flips = flips
        other.seed = self.seed if seed is None else seed
        return other

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose crops and flips ``__getitem__`` draws."""
        self.epoch = int(epoch)

    @property
    def augments(self) -> bool:
        """Whether items are randomly cropped or flipped."""
        return self.crop is not None or self.flips

    def item_generator(self, index: int) -> torch.Generator:
        """The generator ``dataset[index]`` uses: seeded from (seed, epoch, index)."""
        state = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(2)
        return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))

    def sample(
        self, index: int, *, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Item ``index`` with crops and flips drawn from ``generator``.

        Args:
            index: Item index.
            generator: Source of the augmentation draws (None: ``item_generator(index)``).

        Returns:
            ``{"blurry": (T, 3, h, w), "sharp": (T, 3, h, w), "spike": (T, K, h, w)}`` float32.
        """
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        h, w = self.frame_size
        region: Region = (0, 0, h, w)
        hflip = vflip = False
        if self.augments:
            g = self.item_generator(index) if generator is None else generator
            if self.crop is not None:
                top = int(torch.randint(0, h - self.crop + 1, (1,), generator=g))
                left = int(torch.randint(0, w - self.crop + 1, (1,), generator=g))
                region = (top, left, self.crop, self.crop)
            if self.flips:
                hflip, vflip = (torch.rand(2, generator=g) < 0.5).tolist()
        item = self._read(index, region)
        if self.normalise:
            voxels = normalise_voxels(
                item["spike"].numpy(), self.spike_gain(index), gamma=self.gamma
            )
            item["spike"] = torch.from_numpy(voxels)
        dims = [d for d, on in ((-1, hflip), (-2, vflip)) if on]
        if dims:
            item = {k: v.flip(dims) for k, v in item.items()}
        return item

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.sample(index)
