"""PSNR and SSIM as VRT/KAIR compute them, on images in [0, 1].

KAIR (``utils/utils_image.py``, used by VRT's ``main_test_vrt.py``) evaluates in float64 on RGB
images: PSNR from the mean squared error over all pixels and channels, SSIM with an 11x11
Gaussian window (sigma 1.5) over the 'valid' region, computed per channel and averaged, with
``C1 = (0.01 L)^2`` and ``C2 = (0.03 L)^2``. KAIR works on a 0-255 scale; both metrics are
scale-invariant once ``L`` follows the scale, so here ``L = 1``. Nothing is quantised: callers
that want KAIR's uint8 protocol round first (``(x * 255).round() / 255``).

Layouts: numpy arrays are (H, W, C) or (H, W); torch tensors are (..., C, H, W). A stack of
images (leading dimensions of a tensor) gives the mean of the per-image values, as VRT averages
per-frame PSNR over a clip.
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from model.errors import VRTSpikeError

__all__ = ["MetricError", "psnr", "ssim", "psnr_per_image", "ssim_per_image", "rgb_to_y"]

Image: TypeAlias = np.ndarray | torch.Tensor

_WINDOW = 11
_SIGMA = 1.5
_C1 = 0.01**2
_C2 = 0.03**2
# ITU-R BT.601 luma on [0, 1] RGB, as KAIR's ``bgr2ycbcr(..., only_y=True)`` (reordered for RGB).
_Y_WEIGHTS = (65.481 / 255.0, 128.553 / 255.0, 24.966 / 255.0)
_Y_OFFSET = 16.0 / 255.0


class MetricError(VRTSpikeError, ValueError):
    """Inputs that cannot be compared (shape mismatch, wrong layout, too small for the window)."""


def _as_nchw(x: Image, name: str) -> torch.Tensor:
    """Any accepted layout -> float64 CPU tensor (N, C, H, W)."""
    if isinstance(x, np.ndarray):
        t = torch.from_numpy(np.asarray(x, dtype=np.float64))
        if t.ndim == 2:
            t = t[..., None]  # (H, W, 1)
        if t.ndim != 3:
            raise MetricError(f"{name}: numpy images must be (H, W, C) or (H, W), got {x.shape}")
        return rearrange(t, "h w c -> 1 c h w")
    if isinstance(x, torch.Tensor):
        t = x.detach().to(device="cpu", dtype=torch.float64)
        if t.ndim < 3:
            raise MetricError(f"{name}: tensors must be (..., C, H, W), got {tuple(x.shape)}")
        return t.reshape(-1, *t.shape[-3:])  # (N, C, H, W)
    raise MetricError(f"{name}: expected a numpy array or a torch tensor, got {type(x).__name__}")


def _prepare(
    a: Image, b: Image, *, border: int, y_channel: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate, convert, optionally take luma, crop the border. Returns two (N, C, H, W)."""
    ta, tb = _as_nchw(a, "a"), _as_nchw(b, "b")
    if ta.shape != tb.shape:
        raise MetricError(f"shape mismatch: {tuple(ta.shape)} vs {tuple(tb.shape)} (as N,C,H,W)")
    if border < 0:
        raise MetricError(f"border must be >= 0, got {border}")
    if y_channel:
        ta, tb = rgb_to_y(ta), rgb_to_y(tb)
    if border:
        h, w = ta.shape[-2:]
        if 2 * border >= min(h, w):
            raise MetricError(f"border {border} leaves nothing of a {h}x{w} image")
        ta = ta[..., border : h - border, border : w - border]
        tb = tb[..., border : h - border, border : w - border]
    return ta, tb


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of RGB in [0, 1], as KAIR's ``bgr2ycbcr(only_y=True) / 255``.

    Args:
        x: (..., 3, H, W) RGB.

    Returns:
        (..., 1, H, W) luma in [16/255, 235/255].
    """
    if x.shape[-3] != 3:
        raise MetricError(f"the Y channel needs 3 RGB channels, got {x.shape[-3]}")
    w = torch.tensor(_Y_WEIGHTS, dtype=x.dtype, device=x.device)
    return torch.einsum("...chw,c->...hw", x, w).unsqueeze(-3) + _Y_OFFSET


def psnr_per_image(a: Image, b: Image, *, border: int = 0, y_channel: bool = False) -> torch.Tensor:
    """PSNR in dB of every image of a stack (peak 1.0; ``inf`` where the images are equal).

    Args:
        a: Image(s): numpy (H, W, C) or tensor (..., C, H, W), values in [0, 1].
        b: Same layout and shape as ``a``.
        border: Pixels cropped from each side before comparing.
        y_channel: Compare the BT.601 luma instead of RGB.

    Returns:
        (N,) float64 PSNR per image, N = product of the leading dimensions (1 for numpy).
    """
    ta, tb = _prepare(a, b, border=border, y_channel=y_channel)
    mse = (ta - tb).square().mean(dim=(1, 2, 3))  # (N,)
    with np.errstate(divide="ignore"):
        return torch.from_numpy(-10.0 * np.log10(mse.numpy()))


def ssim_per_image(a: Image, b: Image, *, border: int = 0, y_channel: bool = False) -> torch.Tensor:
    """SSIM of every image of a stack (Gaussian 11x11, sigma 1.5, valid region, channel mean).

    Args:
        a: Image(s): numpy (H, W, C) or tensor (..., C, H, W), values in [0, 1].
        b: Same layout and shape as ``a``.
        border: Pixels cropped from each side before comparing.
        y_channel: Compare the BT.601 luma instead of RGB.

    Returns:
        (N,) float64 SSIM per image.
    """
    ta, tb = _prepare(a, b, border=border, y_channel=y_channel)
    n, c, h, w = ta.shape
    if min(h, w) < _WINDOW:
        raise MetricError(f"SSIM needs images of at least {_WINDOW}x{_WINDOW}, got {h}x{w}")
    g = _gaussian_window(_WINDOW, _SIGMA)  # (11, 11)
    kernel = g.expand(c, 1, _WINDOW, _WINDOW)  # (C, 1, 11, 11), depthwise

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, kernel, groups=c)  # (N, C, H-10, W-10)

    mu_a, mu_b = blur(ta), blur(tb)
    var_a = blur(ta * ta) - mu_a.square()
    var_b = blur(tb * tb) - mu_b.square()
    cov = blur(ta * tb) - mu_a * mu_b
    num = (2 * mu_a * mu_b + _C1) * (2 * cov + _C2)
    den = (mu_a.square() + mu_b.square() + _C1) * (var_a + var_b + _C2)
    return (num / den).mean(dim=(2, 3)).mean(dim=1)  # (N,) channel mean of the map means


def psnr(a: Image, b: Image, *, border: int = 0, y_channel: bool = False) -> float:
    """Mean PSNR in dB over the images of ``a`` and ``b`` (see :func:`psnr_per_image`)."""
    return float(psnr_per_image(a, b, border=border, y_channel=y_channel).mean())


def ssim(a: Image, b: Image, *, border: int = 0, y_channel: bool = False) -> float:
    """Mean SSIM over the images of ``a`` and ``b`` (see :func:`ssim_per_image`)."""
    return float(ssim_per_image(a, b, border=border, y_channel=y_channel).mean())


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    """Normalised 2-D Gaussian (size, size), the outer product of OpenCV's 1-D kernel."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)
