"""VRT stages: multi-scale TMSA stages 1-7 with parallel warping, and stage-8 reconstruction groups.

Stage (VRT's ``Stage``): an entry reshape (``none``: LayerNorm; ``down``: 2x2 space-to-depth,
LayerNorm, Linear; ``up``: depth-to-space, LayerNorm, Linear); a group of mutual + self TMSA blocks
with window (2, w, w) for ``int(depth * mutual_ratio)`` blocks and a ``linear1`` residual; a group
of self-only blocks with window (Wt, w, w) and a ``linear2`` residual; then parallel warping
(flow-guided deformable alignment of both neighbours + GEGLU fusion), whose output replaces the
features.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from einops import rearrange
from torch import nn

from .tmsa import TMSAGroup
from .warp import ParallelWarp
from .window import Window

__all__ = ["Stage", "ReconstructionGroup"]

Reshape = Literal["none", "down", "up"]


class _EntryReshape(nn.Module):
    """Stage entry on channels-last features (B, D, H, W, C)."""

    def __init__(self, *, kind: Reshape, in_dim: int, dim: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "none":
            self.norm, self.linear = nn.LayerNorm(dim), nn.Identity()
        elif kind == "down":
            self.norm, self.linear = nn.LayerNorm(4 * in_dim), nn.Linear(4 * in_dim, dim)
        else:
            self.norm, self.linear = nn.LayerNorm(in_dim // 4), nn.Linear(in_dim // 4, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "down":  # (B, D, 2H', 2W', C) -> (B, D, H', W', 4C)
            x = rearrange(x, "b d (h nh) (w nw) c -> b d h w (nw nh c)", nh=2, nw=2)
        elif self.kind == "up":  # (B, D, H, W, 4C') -> (B, D, 2H, 2W, C')
            x = rearrange(x, "b d h w (nw nh c) -> b d (h nh) (w nw) c", nh=2, nw=2)
        return self.linear(self.norm(x))


class Stage(nn.Module):
    """One of VRT's stages 1-7.

    Args:
        in_dim: Channels of the incoming features.
        dim: Channels of this stage.
        depth: TMSA blocks in all (mutual group first).
        heads: Attention heads.
        window: Spatial window size w (both axes).
        temporal_window: Wt of the self-attention-only blocks.
        reshape: Entry: ``none``, ``down`` or ``up``.
        mutual_ratio: Share of blocks with mutual attention (``int(depth * ratio)`` of them).
        mlp_ratio: GEGLU hidden width / dim.
        drop_path: Per-block stochastic depth (length ``depth``).
        deformable_groups: Offset groups of the deformable alignment.
        max_residue_magnitude: Bound on the learned offset residual around the flow.
        checkpoint_attn: Checkpoint attention halves.
        checkpoint_ffn: Checkpoint MLP halves.
    """

    def __init__(
        self,
        *,
        in_dim: int,
        dim: int,
        depth: int,
        heads: int,
        window: int,
        temporal_window: int,
        reshape: Reshape,
        mutual_ratio: float,
        mlp_ratio: float,
        drop_path: Sequence[float],
        deformable_groups: int,
        max_residue_magnitude: float,
        checkpoint_attn: bool = False,
        checkpoint_ffn: bool = False,
    ) -> None:
        super().__init__()
        n_mutual = int(depth * mutual_ratio)
        common = dict(
            dim=dim,
            heads=heads,
            mlp_ratio=mlp_ratio,
            checkpoint_attn=checkpoint_attn,
            checkpoint_ffn=checkpoint_ffn,
        )
        self.reshape = _EntryReshape(kind=reshape, in_dim=in_dim, dim=dim)
        self.residual_group1 = TMSAGroup(
            window=(2, window, window), mutual=True, drop_path=drop_path[:n_mutual], **common
        )
        self.linear1 = nn.Linear(dim, dim)
        self.residual_group2 = TMSAGroup(
            window=(temporal_window, window, window),
            mutual=False,
            drop_path=drop_path[n_mutual:depth],
            **common,
        )
        self.linear2 = nn.Linear(dim, dim)
        self.parallel_warp = ParallelWarp(
            dim=dim,
            deformable_groups=deformable_groups,
            max_residue_magnitude=max_residue_magnitude,
        )

    def forward(
        self, x: torch.Tensor, flows_backward: torch.Tensor, flows_forward: torch.Tensor
    ) -> torch.Tensor:
        """Run the stage.

        Args:
            x: (B, D, H_in, W_in, C_in) channels-last features.
            flows_backward: (B, D-1, 2, H, W) flows at this stage's scale (t <- t+1).
            flows_forward: (B, D-1, 2, H, W) flows at this stage's scale (t+1 <- t).

        Returns:
            (B, D, H, W, dim).
        """
        x = self.reshape(x)
        x = self.linear1(self.residual_group1(x)) + x
        x = self.linear2(self.residual_group2(x)) + x
        return self.parallel_warp(x, flows_backward, flows_forward)


class ReconstructionGroup(nn.Module):
    """A stage-8 group (VRT's ``RTMSA``): self-attention TMSA blocks, a linear, a residual.

    Args:
        dim: Channels.
        depth: Blocks (length of ``drop_path``).
        heads: Attention heads.
        window: Window (Wt, w, w), or (1, w, w) for a per-frame group.
        mlp_ratio: GEGLU hidden width / dim.
        drop_path: Per-block stochastic depth.
        checkpoint_attn: Checkpoint attention halves.
        checkpoint_ffn: Checkpoint MLP halves.
    """

    def __init__(
        self,
        *,
        dim: int,
        heads: int,
        window: Window,
        mlp_ratio: float,
        drop_path: Sequence[float],
        checkpoint_attn: bool = False,
        checkpoint_ffn: bool = False,
    ) -> None:
        super().__init__()
        self.residual_group = TMSAGroup(
            dim=dim,
            heads=heads,
            window=window,
            mutual=False,
            mlp_ratio=mlp_ratio,
            drop_path=drop_path,
            checkpoint_attn=checkpoint_attn,
            checkpoint_ffn=checkpoint_ffn,
        )
        self.linear = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D, H, W, C) -> (B, D, H, W, C)."""
        return x + self.linear(self.residual_group(x))
