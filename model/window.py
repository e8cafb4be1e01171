"""3-D window helpers for TMSA: window clamping, padding, partition, shift masks, position codes.

Features are channels-last ``(B, D, H, W, C)`` (D = frames). Windows are ``(Wd, Wh, Ww)``; a window
larger than the input along an axis shrinks to the input size and that axis is not shifted, as in
VRT. Unlike VRT, the relative-position index and the sine code are built for the window actually
used, so a clamped spatial window stays exact instead of slicing the full-window index.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange

__all__ = [
    "Window",
    "clamp_window",
    "pad_to_windows",
    "window_partition",
    "window_reverse",
    "relative_position_index",
    "shift_mask",
    "ShiftMask",
    "edge_shift_mask",
    "sine_position_encoding",
]

Window = tuple[int, int, int]

MASK_VALUE = -100.0  # VRT's additive value between tokens of different shift regions


def clamp_window(size: Window, window: Window, shift: Window) -> tuple[Window, Window]:
    """Shrink ``window`` to ``size`` where the input is not larger, disabling the shift there."""
    win = tuple(min(s, w) for s, w in zip(size, window, strict=True))
    sh = tuple(0 if s <= w else h for s, w, h in zip(size, window, shift, strict=True))
    return win, sh  # type: ignore[return-value]


def padded_size(size: Window, window: Window) -> Window:
    """``size`` rounded up to whole windows."""
    return tuple(math.ceil(s / w) * w for s, w in zip(size, window, strict=True))  # type: ignore[return-value]


def pad_to_windows(x: torch.Tensor, window: Window) -> torch.Tensor:
    """Zero-pad (B, D, H, W, C) at the end of D, H, W to whole windows."""
    _, d, h, w, _ = x.shape
    pd, ph, pw = (p - s for p, s in zip(padded_size((d, h, w), window), (d, h, w), strict=True))
    if pd or ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph, 0, pd))
    return x


def window_partition(x: torch.Tensor, window: Window) -> torch.Tensor:
    """(B, D, H, W, C) with D, H, W multiples of ``window`` -> (B, nW, N, C), N = Wd*Wh*Ww."""
    wd, wh, ww = window
    return rearrange(x, "b (d wd) (h wh) (w ww) c -> b (d h w) (wd wh ww) c", wd=wd, wh=wh, ww=ww)


def window_reverse(windows: torch.Tensor, window: Window, size: Window) -> torch.Tensor:
    """(B, nW, N, C) -> (B, D, H, W, C) for the padded ``size``."""
    wd, wh, ww = window
    d, h, w = (s // k for s, k in zip(size, window, strict=True))
    return rearrange(
        windows,
        "b (d h w) (wd wh ww) c -> b (d wd) (h wh) (w ww) c",
        d=d, h=h, w=w, wd=wd, wh=wh, ww=ww,
    )  # fmt: skip


def _device_cached(fn):  # type: ignore[no-untyped-def]
    """Cache a CPU-built constant per (arguments, device); meta tensors are built fresh."""
    cpu_fn = functools.lru_cache(maxsize=256)(fn)
    per_device: dict[tuple, torch.Tensor] = {}

    @functools.wraps(fn)
    def wrapper(*args, device: torch.device | str = "cpu"):  # type: ignore[no-untyped-def]
        device = torch.device(device)
        key = (*args, str(device))
        # built on the CPU as normal tensors, even inside inference mode (a later training
        # forward can save them for backward) or a meta default device (the values are needed)
        with torch.inference_mode(False), torch.device("cpu"):
            if device.type == "meta":
                return cpu_fn(*args).to(device)
            if key not in per_device:
                per_device[key] = cpu_fn(*args).to(device)
        return per_device[key]

    return wrapper


@_device_cached
def relative_position_index(window: Window, table_window: Window) -> torch.Tensor:
    """Index (N, N) into a relative-position table sized for ``table_window``.

    The table has (2Td-1)(2Th-1)(2Tw-1) rows; ``window`` (<= ``table_window``) is the window in use.
    """
    coords = torch.stack(torch.meshgrid(*(torch.arange(w) for w in window), indexing="ij")).flatten(
        1
    )  # (3, N)
    rel = coords[:, :, None] - coords[:, None, :]  # (3, N, N)
    td, th, tw = table_window
    rel = rel + torch.tensor([td - 1, th - 1, tw - 1])[:, None, None]
    return rel[0] * (2 * th - 1) * (2 * tw - 1) + rel[1] * (2 * tw - 1) + rel[2]


@_device_cached
def shift_mask(size: Window, window: Window, shift: Window) -> torch.Tensor:
    """Additive mask (nW, N, N): 0 inside a shift region, -100 across regions (Swin/VRT).

    Args:
        size: Padded (D, H, W).
        window: Window in use.
        shift: Cyclic shift in use.
    """
    img = torch.zeros(1, *size, 1)
    cnt = 0
    spans = [
        (slice(-w), slice(-w, -s), slice(-s, None)) if s > 0 else (slice(None),)
        for w, s in zip(window, shift, strict=True)
    ]
    for d in spans[0]:
        for h in spans[1]:
            for w in spans[2]:
                img[:, d, h, w, :] = cnt
                cnt += 1
    regions = window_partition(img, window)[0, :, :, 0]  # (nW, N)
    diff = regions[:, None, :] - regions[:, :, None]  # (nW, N, N)
    return torch.where(diff != 0, MASK_VALUE, 0.0)


class ShiftMask(NamedTuple):
    """The shift mask of a shifted block, kept only where it is not zero, by distinct pattern.

    Only the windows that straddle a shift-region boundary (the last window along each shifted
    axis) have a nonzero mask, and they share a few patterns (at most 7 in 3-D: which of the
    shifted axes they straddle). Every window attends with the bias alone; the edge windows of
    each pattern are recomputed with the bias plus that one (N, N) mask, which broadcasts over
    them. Materialising the mask of every window per head costs (nW, heads, N, N) of memory
    traffic per shifted block, several times the attention itself at deployment sizes (at
    5x256x256 with window 2x8x8: 1.2 GB per block).

    Attributes:
        windows: Indices (nE,) of the windows with a nonzero mask, grouped by pattern.
        bounds: Per pattern, the (start, stop) slice of ``windows`` that has it.
        patterns: The distinct nonzero masks (nP, N, N), in the order of ``bounds``.
        full: The masks of all windows (nW, N, N), zero where not listed.
    """

    windows: torch.Tensor
    bounds: tuple[tuple[int, int], ...]
    patterns: torch.Tensor
    full: torch.Tensor

    @property
    def use_full(self) -> bool:
        """Attend every window with the full mask instead: when over a quarter of the windows
        straddle a boundary and the mask is small (training crops), one pass costs less than
        recomputing them."""
        return 4 * len(self.windows) > len(self.full) and self.full.numel() <= _SMALL_MASK


_SMALL_MASK = 1 << 20  # elements of a (nW, N, N) mask that the full pass may build per head


def _edges(mask: torch.Tensor) -> torch.Tensor:
    return mask.ne(0).flatten(1).any(1)


def _edge_groups(size: Window, window: Window, shift: Window) -> tuple[torch.Tensor, ...]:
    """The edge windows grouped by mask pattern (nE,), their pattern numbers (nE,) and the
    patterns (nP, N, N)."""
    mask = shift_mask(size, window, shift)
    edges = _edges(mask).nonzero().flatten()
    patterns, inverse = torch.unique(mask[edges].flatten(1), dim=0, return_inverse=True)
    order = inverse.sort(stable=True)
    return edges[order.indices], order.values, patterns.view(-1, *mask.shape[1:])


@_device_cached
def _edge_windows(size: Window, window: Window, shift: Window) -> torch.Tensor:
    return _edge_groups(size, window, shift)[0]


@_device_cached
def _edge_patterns(size: Window, window: Window, shift: Window) -> torch.Tensor:
    return _edge_groups(size, window, shift)[2]


@functools.lru_cache(maxsize=256)
def _pattern_bounds(size: Window, window: Window, shift: Window) -> tuple[tuple[int, int], ...]:
    """Per pattern, the slice of :func:`_edge_windows` that has it (plain ints: no tensor of
    this call outlives it, so the inference-mode care of :func:`_device_cached` is not needed)."""
    counts = _edge_groups(size, window, shift)[1].bincount().tolist()
    stops = list(itertools.accumulate(counts))
    return tuple((stop - n, stop) for n, stop in zip(counts, stops, strict=True))


def edge_shift_mask(
    size: Window, window: Window, shift: Window, *, device: torch.device | str = "cpu"
) -> ShiftMask:
    """:func:`shift_mask` of the windows where it is not zero, by pattern (:class:`ShiftMask`),
    cached."""
    return ShiftMask(
        _edge_windows(size, window, shift, device=device),
        _pattern_bounds(size, window, shift),
        _edge_patterns(size, window, shift, device=device),
        shift_mask(size, window, shift, device=device),
    )


@_device_cached
def sine_position_encoding(height: int, width: int, dim: int) -> torch.Tensor:
    """Normalised 2-D sine position code (H*W, dim): y code then x code, dim // 2 features each."""
    feats = dim // 2
    y = torch.arange(1, height + 1, dtype=torch.float32) / (height + 1e-6) * 2 * math.pi
    x = torch.arange(1, width + 1, dtype=torch.float32) / (width + 1e-6) * 2 * math.pi
    dim_t = 10000 ** (2 * (torch.arange(feats) // 2) / feats)

    even = torch.arange(feats) % 2 == 0

    def code(pos: torch.Tensor) -> torch.Tensor:
        p = pos[:, None] / dim_t  # (L, feats): sin on even features, cos on odd ones
        return torch.where(even, p.sin(), p.cos())

    cy = code(y)[:, None, :].expand(height, width, -1)
    cx = code(x)[None, :, :].expand(height, width, -1)
    out = torch.cat((cy, cx), dim=-1).reshape(height * width, -1)  # (H*W, 2*feats)
    if out.shape[1] < dim:  # odd dim: pad the last channel
        out = F.pad(out, (0, dim - out.shape[1]))
    return out
