"""Modulated deformable convolution (DCNv2) in pure PyTorch, and VRT's flow-guided alignment.

:func:`deform_conv2d` computes exactly what ``torchvision.ops.deform_conv2d`` computes (stride 1)
with one ``F.grid_sample`` over every tap and offset group, a mask multiply and one matmul:
no torchvision, no custom kernel, runs under CPU bf16 autocast and on the meta device.
:class:`FlowGuidedDeformAlign` is the official VRT ``DCNv2PackFlowGuided`` with ``pa_frames=2``
(from BasicVSR++): offsets = flow + a bounded learned residue.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

__all__ = ["deform_conv2d", "FlowGuidedDeformAlign"]

logger = logging.getLogger(__name__)


def _sampling_grid(
    offset: torch.Tensor,
    *,
    in_hw: tuple[int, int],
    kernel: tuple[int, int],
    padding: int,
    dilation: int,
    groups: int,
) -> torch.Tensor:
    """Normalised ``grid_sample`` grid of every (group, tap) sampling point.

    Args:
        offset: (N, 2*G*K, Ho, Wo), per group and tap a (dy, dx) pair (torchvision order).
        in_hw: Input (H, W).
        kernel: (kh, kw), K = kh * kw.
        padding: Zero padding of the convolution.
        dilation: Dilation of the convolution.
        groups: G, the number of offset groups.

    Returns:
        (N*G, K*Ho, Wo, 2) grid in the offset's dtype promoted to at least float32, for
        ``align_corners=False`` with pixel centres at integers: for sizes > 1 this is the
        ``align_corners=True`` rule of the official code, and it stays exact for size 1.
    """
    h, w = in_hw
    kh, kw = kernel
    ho, wo = offset.shape[-2:]
    dtype = torch.promote_types(offset.dtype, torch.float32)  # never build coordinates in bf16
    dev = offset.device
    # Pixel p -> normalised (2p + 1) / size - 1 = p * scale + shift, per axis (y, x).
    scale = torch.tensor([2.0 / h, 2.0 / w], dtype=dtype, device=dev)
    shift = torch.tensor([1.0 / h - 1.0, 1.0 / w - 1.0], dtype=dtype, device=dev)
    tap_y = torch.arange(kh, dtype=dtype, device=dev).repeat_interleave(kw) * dilation  # (K,)
    tap_x = torch.arange(kw, dtype=dtype, device=dev).repeat(kh) * dilation  # (K,)
    out_y = torch.arange(ho, dtype=dtype, device=dev) - padding  # (Ho,)
    out_x = torch.arange(wo, dtype=dtype, device=dev) - padding  # (Wo,)
    base = torch.stack(
        (
            (tap_y[:, None, None] + out_y[None, :, None]).expand(-1, -1, wo),
            (tap_x[:, None, None] + out_x[None, None, :]).expand(-1, ho, -1),
        ),
        dim=-1,
    )  # (K, Ho, Wo, 2) undeformed sampling point (y, x) in pixels
    base = base * scale + shift  # normalised
    off = rearrange(offset, "n (g k two) h w -> (n g) k h w two", g=groups, two=2)  # (dy, dx)
    grid_yx = torch.addcmul(base, off.to(dtype), scale)  # (N*G, K, Ho, Wo, 2), one pass
    return rearrange(grid_yx.flip(-1), "ng k h w two -> ng (k h) w two")  # (x, y) order


def _check_shapes(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    *,
    padding: int,
    dilation: int,
) -> tuple[int, int, int]:
    """Check :func:`deform_conv2d`'s operands against each other.

    Returns:
        (G, Ho, Wo): the offset group count and the output size.

    Raises:
        ValueError: channel counts or shapes that do not fit together.
    """
    n, c, h, w = x.shape
    _, cin, kh, kw = weight.shape
    k = kh * kw
    ho, wo = h + 2 * padding - dilation * (kh - 1), w + 2 * padding - dilation * (kw - 1)
    if cin != c:
        raise ValueError(f"weight expects {cin} input channels, x has {c}")
    if offset.ndim != 4 or offset.shape[1] % (2 * k) or offset.shape[1] == 0:
        raise ValueError(
            f"offset channels must be a positive multiple of 2*{k}, got {offset.shape}"
        )
    groups = offset.shape[1] // (2 * k)
    if c % groups:
        raise ValueError(f"{c} input channels are not divisible by {groups} offset groups")
    if offset.shape != (n, 2 * groups * k, ho, wo) or mask.shape != (n, groups * k, ho, wo):
        raise ValueError(
            f"offset {tuple(offset.shape)} / mask {tuple(mask.shape)} do not match the output "
            f"{(n, ho, wo)} with {groups} offset groups and a {kh}x{kw} kernel"
        )
    return groups, ho, wo


def _modulated_columns(
    x: torch.Tensor, grid: torch.Tensor, mask: torch.Tensor, *, groups: int, taps: int
) -> torch.Tensor:
    """Sample ``x`` at every (group, tap) point of ``grid`` and apply the mask.

    Args:
        x: Input (N, C, H, W).
        grid: (N*G, K*Ho, Wo, 2) grid from :func:`_sampling_grid`.
        mask: (N, G*K, Ho, Wo) modulation.
        groups: Offset groups G.
        taps: Kernel taps K.

    Returns:
        (N, C*K, Ho*Wo) im2col-style columns in ``x``'s dtype, channel-major then tap.
    """
    n = x.shape[0]
    src = rearrange(x, "n (g c) h w -> (n g) c h w", g=groups).to(grid.dtype)
    sampled = F.grid_sample(
        src, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )  # (N*G, C/G, K*Ho, Wo)
    sampled = rearrange(sampled, "(n g) c (k h) w -> n g c k h w", n=n, k=taps)
    mod = rearrange(mask, "n (g k) h w -> n g 1 k h w", g=groups).to(sampled.dtype)
    if torch.is_grad_enabled() and (sampled.requires_grad or mod.requires_grad):
        sampled = sampled * mod  # the product's backward needs both factors
    else:
        sampled = sampled.mul_(mod)  # inference: save one 9x-sized buffer
    return rearrange(sampled, "n g c k h w -> n (g c k) (h w)").to(x.dtype)  # (N, C*K, Ho*Wo)


def deform_conv2d(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    padding: int = 1,
    dilation: int = 1,
) -> torch.Tensor:
    """Modulated deformable convolution, stride 1 (``torchvision.ops.deform_conv2d`` semantics).

    Output pixel (i, j) of tap (a, b) samples ``x`` bilinearly at
    ``(i - padding + a*dilation + dy, j - padding + b*dilation + dx)``, zero outside the image
    (exactly ``grid_sample`` with zeros padding and pixel centres at integers), times the tap's
    mask. Offset group g covers input channels ``[g*C/G, (g+1)*C/G)``. Sampling coordinates are
    built in at least float32 also under bf16 autocast; the sampled columns are cast back to
    ``x``'s dtype before the matmul.

    Args:
        x: Input (N, C, H, W).
        offset: (N, 2*G*kh*kw, Ho, Wo); channel ``2*(g*K + k)`` is dy, ``+1`` is dx of tap k
            (row-major over the kernel) in group g.
        mask: (N, G*kh*kw, Ho, Wo) modulation, channel ``g*K + k``.
        weight: (Cout, C, kh, kw) (no convolution groups).
        bias: Optional (Cout,).
        padding: Zero padding on every side.
        dilation: Kernel dilation.

    Returns:
        (N, Cout, Ho, Wo) with Ho = H + 2*padding - dilation*(kh-1), likewise Wo.
    """
    groups, ho, _ = _check_shapes(x, offset, mask, weight, padding=padding, dilation=dilation)
    n, c, h, w = x.shape
    cout, _, kh, kw = weight.shape
    k = kh * kw
    grid = _sampling_grid(
        offset, in_hw=(h, w), kernel=(kh, kw), padding=padding, dilation=dilation, groups=groups
    )  # (N*G, K*Ho, Wo, 2)
    cols = _modulated_columns(x, grid, mask, groups=groups, taps=k)  # (N, C*K, Ho*Wo)
    w2d = weight.reshape(cout, c * k).expand(n, -1, -1)  # (N, Cout, C*K)
    out = (
        torch.bmm(w2d, cols) if bias is None else torch.baddbmm(bias.view(1, cout, 1), w2d, cols)
    )  # (N, Cout, Ho*Wo)
    return rearrange(out, "n c (h w) -> n c h w", h=ho)


class FlowGuidedDeformAlign(nn.Module):
    """Flow-guided deformable alignment (official ``DCNv2PackFlowGuided``, ``pa_frames=2``).

    An offset network (four 3x3 convs, (2C+2) -> C -> C -> C -> 27*G, LeakyReLU 0.1 between,
    the last one zero-initialised) reads cat[warped neighbour, current, flow] and predicts, per
    offset group and tap, an offset residue ``max_residue_magnitude * tanh(.)`` added to the
    flow (as (dy, dx)) and a sigmoid mask; a 3x3 C -> C modulated deformable conv then samples
    the *unwarped* neighbour. Parameter names follow the official module (``weight``, ``bias``,
    ``conv_offset.{0,2,4,6}``).

    Args:
        dim: Feature channels C.
        deformable_groups: Offset groups G (must divide C).
        max_residue_magnitude: Bound of the learned offset residue in pixels.
    """

    kernel_size = 3

    def __init__(self, *, dim: int, deformable_groups: int, max_residue_magnitude: float) -> None:
        super().__init__()
        if dim % deformable_groups:
            raise ValueError(f"dim {dim} is not divisible by deformable_groups {deformable_groups}")
        self.dim = dim
        self.deformable_groups = deformable_groups
        self.max_residue_magnitude = float(max_residue_magnitude)
        k = self.kernel_size
        self.weight = nn.Parameter(torch.empty(dim, dim, k, k))
        self.bias = nn.Parameter(torch.empty(dim))
        self.conv_offset = nn.Sequential(
            nn.Conv2d(2 * dim + 2, dim, 3, 1, 1),
            nn.LeakyReLU(negative_slope=0.1),
            nn.Conv2d(dim, dim, 3, 1, 1),
            nn.LeakyReLU(negative_slope=0.1),
            nn.Conv2d(dim, dim, 3, 1, 1),
            nn.LeakyReLU(negative_slope=0.1),
            nn.Conv2d(dim, 3 * k * k * deformable_groups, 3, 1, 1),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Official init: weight ~ U(-1/sqrt(C*k*k), +), bias 0, last offset conv all zero."""
        stdv = 1.0 / math.sqrt(self.dim * self.kernel_size**2)
        nn.init.uniform_(self.weight, -stdv, stdv)
        nn.init.zeros_(self.bias)
        last = self.conv_offset[-1]
        assert isinstance(last, nn.Conv2d)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(
        self,
        neighbour: torch.Tensor,
        neighbour_warped: torch.Tensor,
        current: torch.Tensor,
        flow: torch.Tensor,
    ) -> torch.Tensor:
        """Align ``neighbour`` to ``current``.

        Args:
            neighbour: Neighbour features (N, C, H, W), not warped.
            neighbour_warped: ``flow_warp(neighbour, flow)`` (N, C, H, W).
            current: Features of the frame aligned to (N, C, H, W).
            flow: Flow (N, 2, H, W) (dx, dy) from the current frame to the neighbour.

        Returns:
            Aligned neighbour features (N, C, H, W).
        """
        out = self.conv_offset(
            torch.cat([neighbour_warped, current, flow.to(current.dtype)], dim=1)
        )  # (N, 27*G, H, W)
        o1, o2, mask = torch.chunk(out, 3, dim=1)  # (N, 9*G, H, W) each
        residue = self.max_residue_magnitude * torch.tanh(torch.cat((o1, o2), dim=1))
        taps = residue.shape[1] // 2  # G * 9 (dy, dx) pairs
        offset = residue + flow.flip(1).repeat(1, taps, 1, 1)  # (N, 18*G, H, W), float32+
        return deform_conv2d(
            neighbour,
            offset,
            torch.sigmoid(mask),
            self.weight,
            self.bias,
            padding=self.kernel_size // 2,
        )

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, deformable_groups={self.deformable_groups}, "
            f"max_residue_magnitude={self.max_residue_magnitude}"
        )
