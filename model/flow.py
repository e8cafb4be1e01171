"""Optical flow: flow warping, a SpyNet-style pyramid estimator, and image pre-alignment.

Conventions follow the official VRT (Liang et al., 2022): a flow (N, 2, H, W) is in pixels,
channel 0 = dx (along W), channel 1 = dy (along H), and ``flow_warp(x, flow)`` samples ``x`` at
``p + flow(p)``. ``SpyNet(ref, supp)`` returns the flow that warps ``supp`` onto ``ref``.

No pretrained weights can be downloaded, so :class:`SpyNet` starts by predicting exactly zero
flow (identity warps) and is trained with the rest of the model.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

__all__ = ["flow_warp", "SpyNet", "compute_flows", "align_images", "FLOW_SCALES"]

logger = logging.getLogger(__name__)

#: Downsampling factors of the flows returned by :class:`SpyNet` (and :func:`compute_flows`).
FLOW_SCALES: tuple[int, ...] = (1, 2, 4, 8)

_WARP_MODES = ("bilinear", "nearest", "nearest4")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_PYRAMID_LEVELS = 6
_RETURN_LEVELS = (5, 4, 3, 2)  # pyramid levels of scales 1, 1/2, 1/4, 1/8 (level 5 = finest)


def _coord_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """Dtype for sampling coordinates: at least float32 (bf16 coordinates are off by pixels)."""
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def _normalise(coord: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel coordinate (pixel centres at integers) -> grid_sample coordinate in [-1, 1].

    Used with ``align_corners=False``. For ``size > 1`` this is exactly the official
    ``align_corners=True`` rule (``2 * coord / (size - 1) - 1``); unlike that rule it stays
    correct for ``size == 1`` (the official one ignores the flow there).
    """
    return (2.0 * coord + 1.0) / size - 1.0


def flow_warp(
    x: torch.Tensor,
    flow: torch.Tensor,
    *,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """Warp an image or feature map with optical flow (official VRT ``flow_warp``).

    Coordinates are built in float32 (float64 for float64 inputs) even under bf16 autocast;
    the result has ``x``'s dtype.

    Args:
        x: Input (N, C, H, W).
        flow: Flow (N, 2, H, W) in pixels; channel 0 = dx, channel 1 = dy.
        mode: ``"bilinear"``, ``"nearest"`` or ``"nearest4"`` (the official 4-nearest-neighbour
            sampling: the pixels at (floor x, floor y), (floor x, ceil y), (ceil x, floor y),
            (ceil x, ceil y), concatenated on channels; no gradient reaches the flow).
        padding_mode: ``grid_sample`` padding (``"zeros"``, ``"border"``, ``"reflection"``).

    Returns:
        (N, C, H, W), or (N, 4*C, H, W) for ``"nearest4"``.
    """
    if mode not in _WARP_MODES:
        raise ValueError(f"flow_warp mode must be one of {_WARP_MODES}, got {mode!r}")
    n, _, h, w = x.shape
    if flow.shape != (n, 2, h, w):
        raise ValueError(f"flow must have shape {(n, 2, h, w)}, got {tuple(flow.shape)}")
    dtype = _coord_dtype(x, flow)
    gy, gx = torch.meshgrid(
        torch.arange(h, dtype=dtype, device=x.device),
        torch.arange(w, dtype=dtype, device=x.device),
        indexing="ij",
    )
    px = gx + flow[:, 0].to(dtype)  # (N, H, W) sampling x in pixels
    py = gy + flow[:, 1].to(dtype)  # (N, H, W)
    src = x.to(dtype)
    if mode == "nearest4":
        xs = (torch.floor(px), torch.floor(px), torch.ceil(px), torch.ceil(px))
        ys = (torch.floor(py), torch.ceil(py), torch.floor(py), torch.ceil(py))
        grids = [
            torch.stack((_normalise(a, w), _normalise(b, h)), dim=-1)
            for a, b in zip(xs, ys, strict=True)
        ]
        grid = torch.cat(grids, dim=1)  # (N, 4*H, W, 2): the four corners stacked along H
        out = F.grid_sample(
            src, grid, mode="nearest", padding_mode=padding_mode, align_corners=False
        )  # (N, C, 4*H, W)
        out = rearrange(out, "n c (f h) w -> n (f c) h w", f=4)
    else:
        grid = torch.stack((_normalise(px, w), _normalise(py, h)), dim=-1)  # (N, H, W, 2)
        out = F.grid_sample(src, grid, mode=mode, padding_mode=padding_mode, align_corners=False)
    return out.to(x.dtype)


class BasicModule(nn.Module):
    """One SpyNet level: five 7x7 convs 8 -> 32 -> 64 -> 32 -> 16 -> 2 with ReLU between.

    Input: cat[ref (3), warped supp (3), upsampled flow (2)] (N, 8, h, w); output: the flow
    residual (N, 2, h, w).
    """

    def __init__(self) -> None:
        super().__init__()
        chans = (8, 32, 64, 32, 16, 2)
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(chans[:-1], chans[1:], strict=True)):
            layers.append(nn.Conv2d(cin, cout, kernel_size=7, stride=1, padding=3))
            if i < len(chans) - 2:
                layers.append(nn.ReLU(inplace=False))
        self.basic_module = nn.Sequential(*layers)  # name kept from the official SpyNet
        last = self.basic_module[-1]
        assert isinstance(last, nn.Conv2d)
        nn.init.zeros_(last.weight)  # start with zero residual flow
        nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 8, h, w) -> (N, 2, h, w)."""
        return self.basic_module(x)


class SpyNet(nn.Module):
    """SpyNet-style coarse-to-fine flow estimator (6-level average-pool pyramid).

    Inputs in [0, 1] are normalised with ImageNet mean/std and resized (bilinear) to a multiple
    of 32; each level refines the upsampled coarser flow by a residual predicted from
    cat[ref, supp warped by the current flow (border padding), flow]. Every level's last conv is
    zero-initialised, so a fresh SpyNet predicts exactly zero flow. Parameter and buffer names
    match the official ``SpyNet`` (``basic_module.{level}.basic_module.{i}``, ``mean``, ``std``).
    The flow is accumulated in at least float32, also under bf16 autocast.
    """

    def __init__(self) -> None:
        super().__init__()
        self.basic_module = nn.ModuleList(BasicModule() for _ in range(_PYRAMID_LEVELS))
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, ref: torch.Tensor, supp: torch.Tensor) -> list[torch.Tensor]:
        """Estimate the flow that warps ``supp`` onto ``ref``.

        Args:
            ref: Reference frames (N, 3, H, W) in [0, 1].
            supp: Supporting frames (N, 3, H, W) in [0, 1].

        Returns:
            Flows at scales 1, 1/2, 1/4, 1/8 (:data:`FLOW_SCALES`): list of
            (N, 2, H // s, W // s), in pixels of that scale.
        """
        if ref.shape != supp.shape or ref.ndim != 4 or ref.shape[1] != 3:
            raise ValueError(
                f"ref and supp must both be (N, 3, H, W), got {tuple(ref.shape)} "
                f"and {tuple(supp.shape)}"
            )
        h, w = ref.shape[-2:]
        h32, w32 = -(-h // 32) * 32, -(-w // 32) * 32
        ref_p = [self._preprocess(ref, h32, w32)]
        supp_p = [self._preprocess(supp, h32, w32)]
        for _ in range(_PYRAMID_LEVELS - 1):  # index 0 = coarsest (1/32) after the loop
            ref_p.insert(0, F.avg_pool2d(ref_p[0], kernel_size=2, stride=2))
            supp_p.insert(0, F.avg_pool2d(supp_p[0], kernel_size=2, stride=2))

        dtype = _coord_dtype(ref_p[0])
        outputs: dict[int, torch.Tensor] = {}
        flow = ref_p[0].new_zeros((ref.shape[0], 2, *ref_p[0].shape[-2:]), dtype=dtype)
        for level in range(_PYRAMID_LEVELS):
            if level == 0:
                up = flow  # zeros at the coarsest level: warping is the identity
                warped = supp_p[0]
            else:
                size = ref_p[level].shape[-2:]
                up = 2.0 * F.interpolate(flow, size=size, mode="bilinear", align_corners=True)
                warped = flow_warp(supp_p[level], up, mode="bilinear", padding_mode="border")
            inp = torch.cat([ref_p[level], warped, up.to(ref_p[level].dtype)], dim=1)  # (N, 8, ..)
            flow = self.basic_module[level](inp).to(dtype) + up  # (N, 2, h_l, w_l)
            if level in _RETURN_LEVELS:
                outputs[level] = self._resize_flow(flow, h, w, h32, w32, 2 ** (5 - level))
        return [outputs[level] for level in _RETURN_LEVELS]

    def _preprocess(self, x: torch.Tensor, h32: int, w32: int) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> normalised (N, 3, h32, w32)."""
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        if x.shape[-2:] != (h32, w32):
            x = F.interpolate(x, size=(h32, w32), mode="bilinear", align_corners=False)
        return x

    @staticmethod
    def _resize_flow(
        flow: torch.Tensor, h: int, w: int, h32: int, w32: int, scale: int
    ) -> torch.Tensor:
        """Flow at (h32 / s, w32 / s) -> (h // s, w // s), rescaling the vectors to match."""
        ho, wo = h // scale, w // scale
        hi, wi = h32 // scale, w32 // scale
        if (ho, wo) == (hi, wi):
            return flow
        flow = F.interpolate(flow, size=(ho, wo), mode="bilinear", align_corners=False)
        factor = torch.tensor([wo / wi, ho / hi], dtype=flow.dtype, device=flow.device)
        return flow * factor.view(1, 2, 1, 1)


def compute_flows(
    spynet: SpyNet, frames: torch.Tensor
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Flows between consecutive frames in both directions (official ``get_flow_2frames``).

    ``backward[t] = spynet(x_t, x_{t+1})`` (warps frame t+1 onto t) and
    ``forward[t] = spynet(x_{t+1}, x_t)`` (warps frame t onto t+1); both directions run as one
    batched SpyNet call.

    Args:
        spynet: The flow estimator.
        frames: Frames (B, T, 3, H, W) in [0, 1]; H, W multiples of 8.

    Returns:
        ``(flows_backward, flows_forward)``, each a list over :data:`FLOW_SCALES` of
        (B, T-1, 2, H // s, W // s). For T == 1 the tensors are empty (T-1 == 0).
    """
    b, t, _, h, w = frames.shape
    if t < 2:
        empty = [frames.new_zeros((b, 0, 2, h // s, w // s)) for s in FLOW_SCALES]
        return empty, [e.clone() for e in empty]
    cur = rearrange(frames[:, :-1], "b t c h w -> (b t) c h w")
    nxt = rearrange(frames[:, 1:], "b t c h w -> (b t) c h w")
    flows = spynet(torch.cat([cur, nxt], dim=0), torch.cat([nxt, cur], dim=0))
    backward, forward = [], []
    for f in flows:  # (2*B*(T-1), 2, h_s, w_s)
        fb, ff = rearrange(f, "(d b t) c h w -> d b t c h w", d=2, b=b).unbind(0)
        backward.append(fb)
        forward.append(ff)
    return backward, forward


def align_images(
    frames: torch.Tensor, flows_backward0: torch.Tensor, flows_forward0: torch.Tensor
) -> torch.Tensor:
    """Image-level pre-alignment of the neighbours (official ``get_aligned_image_2frames``).

    Frame t+1 is warped onto t with ``flows_backward0[:, t]`` and frame t-1 onto t with
    ``flows_forward0[:, t-1]``, both with ``"nearest4"`` sampling; the missing neighbours of
    the boundary frames are zeros. One batched warp for all frames and both directions.

    Args:
        frames: Frames (B, T, 3, H, W).
        flows_backward0: Full-scale backward flows (B, T-1, 2, H, W).
        flows_forward0: Full-scale forward flows (B, T-1, 2, H, W).

    Returns:
        (B, T, 27, H, W) = cat[frame (3), backward-aligned (12), forward-aligned (12)].
    """
    b, t, c, h, w = frames.shape
    zeros = frames.new_zeros((b, 1, 4 * c, h, w))
    if t < 2:
        return torch.cat([frames, zeros, zeros], dim=2)
    neighbours = torch.cat([frames[:, 1:], frames[:, :-1]], dim=1)  # (B, 2(T-1), C, H, W)
    flows = torch.cat([flows_backward0, flows_forward0], dim=1)  # (B, 2(T-1), 2, H, W)
    warped = flow_warp(
        rearrange(neighbours, "b t c h w -> (b t) c h w"),
        rearrange(flows, "b t c h w -> (b t) c h w"),
        mode="nearest4",
    )  # (B*2(T-1), 4C, H, W)
    warped = rearrange(warped, "(b t) c h w -> b t c h w", b=b)
    x_backward = torch.cat([warped[:, : t - 1], zeros], dim=1)  # (B, T, 4C, H, W)
    x_forward = torch.cat([zeros, warped[:, t - 1 :]], dim=1)  # (B, T, 4C, H, W)
    return torch.cat([frames, x_backward, x_forward], dim=2)
