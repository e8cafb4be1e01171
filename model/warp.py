"""VRT's parallel warping (``pa_frames=2``): align both neighbours of every frame, then fuse.

Official VRT ``Stage.get_aligned_feature_2frames`` + ``pa_fuse``, computed with every frame and
both directions in single batched calls (the official code loops over frames and directions,
2*(T-1) small deformable-alignment calls per stage).
"""

from __future__ import annotations

import logging

import torch
from einops import rearrange
from torch import nn

from model.deform import FlowGuidedDeformAlign
from model.flow import flow_warp
from model.layers import GEGLUMlp

__all__ = ["ParallelWarp"]

logger = logging.getLogger(__name__)


class ParallelWarp(nn.Module):
    """Parallel warping of a stage's features, channels-last.

    For every frame t, neighbour t+1 is flow-warped with ``flows_backward[:, t]`` and
    deformably aligned to frame t (backward branch), neighbour t-1 with
    ``flows_forward[:, t-1]`` (forward branch); missing neighbours of the boundary frames are
    zeros. ``pa_fuse`` (GEGLU MLP 3C -> 3C -> C) over cat[x, backward, forward] *replaces* x
    (no residual), as in the official VRT. One :class:`FlowGuidedDeformAlign` (``pa_deform``)
    serves both directions.

    Args:
        dim: Feature channels C.
        deformable_groups: Offset groups of the deformable alignment.
        max_residue_magnitude: Bound of the learned offset residue, in pixels of this scale.
    """

    def __init__(self, *, dim: int, deformable_groups: int, max_residue_magnitude: float) -> None:
        super().__init__()
        self.pa_deform = FlowGuidedDeformAlign(
            dim=dim,
            deformable_groups=deformable_groups,
            max_residue_magnitude=max_residue_magnitude,
        )
        self.pa_fuse = GEGLUMlp(3 * dim, 3 * dim, dim)

    def align(
        self, x: torch.Tensor, flows_backward: torch.Tensor, flows_forward: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Neighbour features aligned to every frame, channels-last.

        Args:
            x: Features (B, T, H, W, C).
            flows_backward: (B, T-1, 2, H, W); ``[:, t]`` warps frame t+1 onto frame t.
            flows_forward: (B, T-1, 2, H, W); ``[:, t]`` warps frame t onto frame t+1.

        Returns:
            ``(x_backward, x_forward)``, each (B, T, H, W, C): frame t+1 (resp. t-1) aligned
            to frame t, zeros where that neighbour does not exist.
        """
        b, t, h, w, c = x.shape
        expected = (b, t - 1, 2, h, w)
        if flows_backward.shape != expected or flows_forward.shape != expected:
            raise ValueError(
                f"flows must be {expected} for features {tuple(x.shape)}, got "
                f"{tuple(flows_backward.shape)} and {tuple(flows_forward.shape)}"
            )
        zeros = x.new_zeros((b, 1, h, w, c))
        if t < 2:
            return zeros, zeros
        xc = rearrange(x, "b t h w c -> b t c h w")
        # Both directions side by side on the frame axis: [backward pairs | forward pairs].
        neighbour = torch.cat([xc[:, 1:], xc[:, :-1]], dim=1)  # (B, 2(T-1), C, H, W)
        current = torch.cat([xc[:, :-1], xc[:, 1:]], dim=1)  # (B, 2(T-1), C, H, W)
        flow = torch.cat([flows_backward, flows_forward], dim=1)  # (B, 2(T-1), 2, H, W)
        neighbour, current, flow = (
            rearrange(v, "b t c h w -> (b t) c h w") for v in (neighbour, current, flow)
        )
        warped = flow_warp(neighbour, flow, mode="bilinear")  # (B*2(T-1), C, H, W)
        aligned = self.pa_deform(neighbour, warped, current, flow)  # (B*2(T-1), C, H, W)
        aligned = rearrange(aligned, "(b t) c h w -> b t h w c", b=b)  # (B, 2(T-1), H, W, C)
        x_backward = torch.cat([aligned[:, : t - 1], zeros.to(aligned.dtype)], dim=1)
        x_forward = torch.cat([zeros.to(aligned.dtype), aligned[:, t - 1 :]], dim=1)
        return x_backward, x_forward  # (B, T, H, W, C) each

    def forward(
        self, x: torch.Tensor, flows_backward: torch.Tensor, flows_forward: torch.Tensor
    ) -> torch.Tensor:
        """Align both neighbours and fuse.

        Args:
            x: Features (B, T, H, W, C), channels-last.
            flows_backward: (B, T-1, 2, H, W) at this stage's scale.
            flows_forward: (B, T-1, 2, H, W) at this stage's scale.

        Returns:
            Fused features (B, T, H, W, C), replacing ``x``.
        """
        x_backward, x_forward = self.align(x, flows_backward, flows_forward)
        return self.pa_fuse(torch.cat([x, x_backward, x_forward], dim=-1))  # (B, T, H, W, C)
