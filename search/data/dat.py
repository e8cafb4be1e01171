"""The spike camera's ``.dat`` format: read and write binary spike streams.

Format (as the public spike-camera toolkits read and write it, checked on real captures): frames
back to back
with no header; each frame holds ``ceil(H * W / 8)`` bytes; pixels in row-major order, 8 pixels
per byte, pixel ``8k + b`` in bit ``b`` (least-significant bit first); when ``H * W`` is not a
multiple of 8 the last byte of each frame is zero-padded. Every frame is stored upside down
(the camera's inverted image), so the reader flips rows back and the writer flips them before
saving.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from search.data.errors import DataError
from search.files import atomic_path

__all__ = ["frame_bytes", "dat_frame_count", "read_dat", "write_dat"]

logger = logging.getLogger(__name__)


def frame_bytes(height: int, width: int) -> int:
    """Bytes per spike frame of ``height x width`` pixels (the last byte zero-padded)."""
    if height <= 0 or width <= 0:
        raise DataError(f"spike frame size must be positive, got {height}x{width}")
    return (height * width + 7) // 8


def dat_frame_count(path: str | Path, height: int, width: int) -> int:
    """Number of spike frames in a ``.dat`` file, checking the file is whole frames.

    Raises:
        DataError: the file is missing or its size is not a whole number of frames.
    """
    path = Path(path)
    per_frame = frame_bytes(height, width)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DataError(f"{path}: spike file not found") from None
    if size % per_frame:
        raise DataError(
            f"{path}: {size} bytes is not a whole number of {height}x{width} spike frames "
            f"({per_frame} bytes each; {size // per_frame} frames + {size % per_frame} bytes)"
        )
    return size // per_frame


def read_dat(
    path: str | Path,
    height: int,
    width: int,
    *,
    flipud: bool = True,
    start: int = 0,
    count: int | None = None,
) -> np.ndarray:
    """Read a spike stream.

    Args:
        path: The ``.dat`` file.
        height: Spike frame height H.
        width: Spike frame width W.
        flipud: Undo the camera's upside-down storage (True for every known writer).
        start: First frame to read.
        count: Frames to read (None: to the end).

    Returns:
        Bool array (N, H, W), True where a pixel fired.

    Raises:
        DataError: missing file, size not whole frames, or a frame range outside the file.
    """
    total = dat_frame_count(path, height, width)
    count = total - start if count is None else count
    if start < 0 or count < 0 or start + count > total:
        raise DataError(f"{path}: frames [{start}, {start + count}) outside the file's {total}")
    per_frame = frame_bytes(height, width)
    with open(path, "rb") as f:
        f.seek(start * per_frame)
        buf = np.frombuffer(f.read(count * per_frame), dtype=np.uint8)
    bits = np.unpackbits(buf.reshape(count, per_frame), axis=1, bitorder="little")  # (N, 8*bytes)
    spikes = bits[:, : height * width].reshape(count, height, width).astype(bool)
    return spikes[:, ::-1] if flipud else spikes


def write_dat(path: str | Path, spikes: np.ndarray, *, flipud: bool = True) -> None:
    """Write a spike stream in the camera's format (atomically: temp file then rename).

    Args:
        path: Destination ``.dat`` file (parent folders are created).
        spikes: Array (N, H, W) of bools or 0/1 integers.
        flipud: Store frames upside down, as the camera does (the reader undoes it).

    Raises:
        DataError: ``spikes`` is not 3-D or holds values other than 0 and 1.
    """
    spikes = np.asarray(spikes)
    if spikes.ndim != 3:
        raise DataError(f"{path}: spikes must be (N, H, W), got shape {spikes.shape}")
    if spikes.dtype != bool:
        if spikes.size and (spikes.min() < 0 or spikes.max() > 1):
            raise DataError(f"{path}: spikes must be 0 or 1")
        spikes = spikes.astype(bool)
    n, h, w = spikes.shape
    if flipud:
        spikes = spikes[:, ::-1]
    flat = np.ascontiguousarray(spikes).reshape(n, h * w)
    packed = np.packbits(flat, axis=1, bitorder="little")  # (N, ceil(H*W/8)), zero-padded
    with atomic_path(path) as tmp:
        tmp.write_bytes(packed.tobytes())
    logger.debug("wrote %d spike frames of %dx%d to %s", n, h, w, path)
