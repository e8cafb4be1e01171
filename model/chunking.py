"""Spatial chunking of per-pixel temporal attention (the seed's ``CHUNK_*`` knobs).

The spike temporal self-attention and the temporal cross-attention fusion attend over the T frames
of each pixel independently, so the H x W pixel grid can be split into rectangles that are
processed one call at a time. Chunking is a pure latency/memory knob: every chunking computes the
same function.

Knobs (the seed system's ``MODEL.FUSE.*`` / ``MODEL.SPIKE_TSA.*`` meaning):

- ``chunk_size``: tile side in pixels (a tile is ``min(H, s) x min(W, s)``).
- ``max_batch_tokens``: cap on ``B * pixels`` per call, i.e. on the number of length-T
  sequences one attention call batches (the seed's ``B * h_chunk * w_chunk``; T is not counted).
- ``chunk_shape``: ``"square"`` tiles, or ``"rows"``: bands of whole rows holding about
  ``chunk_size ** 2`` pixels.
- ``adaptive_chunk``: shrink the tile so that one call never exceeds the cap (the seed's
  ``_derive_spatial_chunks``: area ``min(chunk_size ** 2, cap // B)``, at least one pixel).
  Without it tiles are never shrunk (one tile may exceed the cap) and neighbouring whole tiles
  are batched into one call while the batch stays within the cap.

Every call works on a rectangle of the grid, so chunks are strided views of the inputs (no copies
are made to form them); when one call covers the whole grid the function is applied directly.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from model.errors import ConfigError, VRTSpikeError

__all__ = [
    "CHUNK_SHAPES",
    "ChunkPlan",
    "ChunkShapeError",
    "Chunking",
    "apply_per_pixel",
]

logger = logging.getLogger(__name__)

CHUNK_SHAPES: tuple[str, ...] = ("square", "rows")
"""Valid values of ``chunk_shape``."""


class ChunkShapeError(VRTSpikeError, ValueError):
    """Tensors handed to :func:`apply_per_pixel` disagree on (B, T, H, W)."""


@dataclass(frozen=True)
class ChunkPlan:
    """How an H x W grid is cut into call rectangles (raster order, edges clipped).

    Attributes:
        height: Grid height H.
        width: Grid width W.
        chunk_h: Rows of one call rectangle (``1 <= chunk_h <= H``).
        chunk_w: Columns of one call rectangle (``1 <= chunk_w <= W``).
    """

    height: int
    width: int
    chunk_h: int
    chunk_w: int

    @property
    def num_chunks(self) -> int:
        """Number of calls."""
        return math.ceil(self.height / self.chunk_h) * math.ceil(self.width / self.chunk_w)

    @property
    def is_single(self) -> bool:
        """True when one call covers the whole grid."""
        return self.chunk_h >= self.height and self.chunk_w >= self.width

    def windows(self) -> Iterator[tuple[slice, slice]]:
        """Yield ``(rows, cols)`` slices of every call rectangle; together they tile the grid."""
        for hs in range(0, self.height, self.chunk_h):
            rows = slice(hs, min(hs + self.chunk_h, self.height))
            for ws in range(0, self.width, self.chunk_w):
                yield rows, slice(ws, min(ws + self.chunk_w, self.width))


@dataclass(frozen=True)
class Chunking:
    """The four chunking knobs as one value (the seed's ``CHUNK_*`` meaning, module doc).

    Attributes:
        chunk_size: Tile side in pixels.
        max_batch_tokens: Cap on ``B * pixels`` per call.
        chunk_shape: ``"square"`` or ``"rows"``.
        adaptive_chunk: Shrink tiles to honour the cap (seed); else batch whole tiles up to it.

    Raises:
        ConfigError: A knob has the wrong type or an impossible value (the message names it).
    """

    chunk_size: int = 64
    max_batch_tokens: int = 49152
    chunk_shape: str = "square"
    adaptive_chunk: bool = True

    def __post_init__(self) -> None:
        for name in ("chunk_size", "max_batch_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
        if self.chunk_shape not in CHUNK_SHAPES:
            raise ConfigError(
                f"chunk_shape must be one of {list(CHUNK_SHAPES)}, got {self.chunk_shape!r}"
            )
        if not isinstance(self.adaptive_chunk, bool):
            raise ConfigError(f"adaptive_chunk must be a bool, got {self.adaptive_chunk!r}")

    def plan(self, batch: int, height: int, width: int) -> ChunkPlan:
        """Cut an H x W grid (batch B, each pixel B sequences) into call rectangles.

        Only Python ints are used, so it works for meta tensors too.
        """
        batch = max(1, batch)
        if self.adaptive_chunk:
            area = max(1, min(self.chunk_size * self.chunk_size, self.max_batch_tokens // batch))
            th, tw = _tile(area, height, width, self.chunk_shape, split_rows=True)
            return ChunkPlan(height, width, th, tw)
        side = self.chunk_size * self.chunk_size
        th, tw = _tile(side, height, width, self.chunk_shape, split_rows=False)
        cap = self.max_batch_tokens
        if batch * th * width <= cap:  # whole bands of tiles fit: stack bands
            bands = max(1, cap // (batch * th * width))
            return ChunkPlan(height, width, min(height, th * bands), width)
        tiles = max(1, cap // (batch * th * tw))  # neighbouring tiles of one band
        return ChunkPlan(height, width, th, min(width, tw * tiles))


def _tile(
    area: int, height: int, width: int, chunk_shape: str, *, split_rows: bool
) -> tuple[int, int]:
    """Tile (rows, cols) of about ``area`` pixels in the given shape, clipped to the grid.

    A ``"rows"`` band is at least one whole row unless ``split_rows`` (then a row wider than
    ``area`` is cut into pieces of ``area`` pixels).
    """
    if chunk_shape == "rows":
        if area < width and split_rows:
            return 1, area
        return max(1, min(height, area // width)), width
    side = max(1, math.isqrt(area))
    return max(1, min(height, side)), max(1, min(width, side))


def apply_per_pixel(
    fn: Callable[..., torch.Tensor], tensors: Sequence[torch.Tensor], chunking: Chunking
) -> torch.Tensor:
    """Run a pixel-wise function over spatial chunks and assemble the result.

    ``fn`` must treat every pixel independently (e.g. attention over T per pixel, LayerNorm,
    linear layers); then the result does not depend on the chunking.

    Args:
        fn: Called as ``fn(*chunks)`` with one (B, T, h, w, C_i) view per input tensor; returns
            (B, T, h, w, C_out).
        tensors: Channels-last inputs (B, T, H, W, C_i) sharing (B, T, H, W).
        chunking: How to split the pixel grid.

    Returns:
        Contiguous (B, T, H, W, C_out), dtype of ``fn``'s output.

    Raises:
        ChunkShapeError: The inputs are not 5-D or disagree on (B, T, H, W).
    """
    lead = tuple(tensors[0].shape[:4])
    for x in tensors:
        if x.ndim != 5 or tuple(x.shape[:4]) != lead:
            shapes = [tuple(t.shape) for t in tensors]
            raise ChunkShapeError(
                f"expected (B, T, H, W, C) tensors sharing (B, T, H, W): {shapes}"
            )
    b, t, h, w = lead
    plan = chunking.plan(b, h, w)
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("per-pixel chunking %s: %d call(s) for B=%d T=%d", plan, plan.num_chunks, b, t)
    if plan.is_single:
        return fn(*tensors).contiguous()
    out: torch.Tensor | None = None
    for rows, cols in plan.windows():
        y = fn(*(x[:, :, rows, cols] for x in tensors))  # (B, T, h, w, C_out)
        if out is None:
            out = y.new_empty((b, t, h, w, y.shape[-1]))
        out[:, :, rows, cols] = y
    assert out is not None
    return out
