"""The spike branch: 3-D conv encoder, spike temporal self-attention, cross-attention fusion.

Semantics follow the seed system (S-VRT, first commit 303619f, ``src/models/``):

- ``SpikeEncoder``: the K TFP bins of each RGB frame are the channels of a 3-D conv residual
  pyramid over (T, H, W); stride 2 in space per scale, time never downsampled.
- ``SpikeTemporalSelfAttention``: per pixel, pre-norm self-attention over the T frames, then a
  pre-norm FFN, both residual.
- ``TemporalCrossAttentionFusion``: per pixel, queries from the RGB stage output, keys/values from
  the spike features of that scale, attention over the T frames; ``x + Attn(LN(x), LN(s))`` then
  ``+ FFN(LN(.))``.

Both attention layers run through :func:`model.chunking.apply_per_pixel`, so the chunking knobs
change latency and memory only. Layout: RGB/backbone features and spike features are channels-last
(B, T, H, W, C); the spike voxels are (B, T, K, H, W).
"""

from __future__ import annotations

import logging

import torch
from einops import rearrange
from torch import nn

from model.chunking import Chunking, apply_per_pixel
from model.errors import ConfigError, VRTSpikeError
from model.layers import GELUMlp
from model.sdpa import attention

__all__ = [
    "SpikeEncoder",
    "SpikeShapeError",
    "SpikeTemporalSelfAttention",
    "TemporalCrossAttentionFusion",
]

logger = logging.getLogger(__name__)


class SpikeShapeError(VRTSpikeError, ValueError):
    """An input of the spike branch has the wrong shape."""


class _ResBlock3d(nn.Module):
    """``relu(x + conv(relu(conv(x))))`` with 3x3x3 convolutions over (T, H, W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(channels, channels, kernel_size=3, padding=1)
        self.conv2 = nn.Conv3d(channels, channels, kernel_size=3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, C, T, H, W)."""
        return self.act(x + self.conv2(self.act(self.conv1(x))))


class SpikeEncoder(nn.Module):
    """3-D conv residual pyramid from spike voxels to features at scales 1, 1/2, 1/4, 1/8.

    Scale 0: conv(K -> dims[0]) + ReLU + 2 residual blocks. Scale s > 0: conv with stride
    (1, 2, 2) (dims[s-1] -> dims[s]) + ReLU + 2 residual blocks.

    Args:
        in_bins: K, spike bins per RGB frame (input channels).
        dims: Output widths of the four scales.
    """

    def __init__(self, *, in_bins: int, dims: tuple[int, int, int, int]) -> None:
        super().__init__()
        if in_bins < 1:
            raise ConfigError(f"in_bins must be >= 1, got {in_bins}")
        if len(dims) != 4 or any(d < 1 for d in dims):
            raise ConfigError(f"dims must be 4 positive widths, got {dims}")
        self.in_bins = in_bins
        self.dims = tuple(dims)
        self.stems = nn.ModuleList()
        self.bodies = nn.ModuleList()
        c_in = in_bins
        for s, c_out in enumerate(dims):
            stride = (1, 1, 1) if s == 0 else (1, 2, 2)
            self.stems.append(
                nn.Sequential(nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1), nn.ReLU())
            )
            self.bodies.append(nn.Sequential(_ResBlock3d(c_out), _ResBlock3d(c_out)))
            c_in = c_out

    def forward(self, spike: torch.Tensor) -> list[torch.Tensor]:
        """Encode spike voxels.

        Args:
            spike: (B, T, K, H, W); H, W multiples of 8 (otherwise sizes round up per scale).

        Returns:
            Four contiguous channels-last tensors, scale s: (B, T, H / 2^s, W / 2^s, dims[s]).
        """
        if spike.ndim != 5 or spike.shape[2] != self.in_bins:
            raise SpikeShapeError(
                f"spike must be (B, T, K={self.in_bins}, H, W), got {tuple(spike.shape)}"
            )
        x = rearrange(spike, "b t k h w -> b k t h w")  # bins are the channels
        feats = []
        for stem, body in zip(self.stems, self.bodies, strict=True):
            x = body(stem(x))  # (B, dims[s], T, H_s, W_s)
            feats.append(rearrange(x, "b c t h w -> b t h w c").contiguous())
        return feats


def _check_heads(dim: int, heads: int) -> None:
    if heads < 1 or dim % heads != 0:
        raise ConfigError(f"heads ({heads}) must be >= 1 and divide dim ({dim})")


class SpikeTemporalSelfAttention(nn.Module):
    """Per-pixel temporal self-attention block: ``x + Attn(LN(x))``, then ``x + FFN(LN(x))``.

    Args:
        dim: Channels C.
        heads: Attention heads (divide ``dim``).
        chunking: How the pixel grid is split into attention calls (:mod:`model.chunking`);
            kept as the attribute ``chunking``, whose replacement changes latency and memory
            only, never the output.
        mlp_ratio: FFN hidden width / ``dim`` (Linear-GELU-Linear, as the seed).
    """

    def __init__(
        self,
        *,
        dim: int,
        heads: int,
        chunking: Chunking,
        mlp_ratio: float = 2.0,
    ) -> None:
        super().__init__()
        _check_heads(dim, heads)
        self.chunking = chunking
        self.dim = dim
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = GELUMlp(dim, int(dim * mlp_ratio), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, H, W, C) -> (B, T, H, W, C), contiguous."""
        if x.ndim != 5 or x.shape[-1] != self.dim:
            raise SpikeShapeError(f"x must be (B, T, H, W, {self.dim}), got {tuple(x.shape)}")
        return apply_per_pixel(self._block, (x,), self.chunking)

    def _block(self, x: torch.Tensor) -> torch.Tensor:
        """The whole block on one chunk: (B, T, h, w, C) -> (B, T, h, w, C)."""
        b, _, h, w, _ = x.shape
        seq = rearrange(x, "b t h w c -> (b h w) t c")  # (P, T, C)
        qkv = rearrange(
            self.qkv(self.norm1(seq)), "p t (three n d) -> three p n t d", three=3, n=self.heads
        )  # (3, P, heads, T, hd)
        y = attention(qkv[0], qkv[1], qkv[2])  # (P, heads, T, hd)
        seq = seq + self.proj(rearrange(y, "p n t d -> p t (n d)"))
        seq = seq + self.mlp(self.norm2(seq))  # (P, T, C)
        return rearrange(seq, "(b h w) t c -> b t h w c", b=b, h=h, w=w)


class TemporalCrossAttentionFusion(nn.Module):
    """Per-pixel temporal cross-attention of RGB features (queries) to spike features (keys/values).

    ``x + proj(Attn(q(LN(x)), k(LN(s)), v(LN(s))))``, then ``+ FFN(LN(.))``; attention over the
    T frames of each pixel. Keys and values are projected from ``spike_dim`` to ``dim``.

    Args:
        dim: RGB channels C (queries, output).
        spike_dim: Spike channels C_s (keys/values).
        heads: Attention heads (divide ``dim``).
        chunking: How the pixel grid is split into attention calls (:mod:`model.chunking`);
            kept as the attribute ``chunking``, whose replacement changes latency and memory
            only, never the output.
        mlp_ratio: FFN hidden width / ``dim`` (Linear-GELU-Linear, as the seed).
    """

    def __init__(
        self,
        *,
        dim: int,
        spike_dim: int,
        heads: int,
        chunking: Chunking,
        mlp_ratio: float = 2.0,
    ) -> None:
        super().__init__()
        _check_heads(dim, heads)
        if spike_dim < 1:
            raise ConfigError(f"spike_dim must be >= 1, got {spike_dim}")
        self.chunking = chunking
        self.dim = dim
        self.spike_dim = spike_dim
        self.heads = heads
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(spike_dim)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(spike_dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm_ffn = nn.LayerNorm(dim)
        self.mlp = GELUMlp(dim, int(dim * mlp_ratio), dim)

    def forward(self, x: torch.Tensor, spike: torch.Tensor) -> torch.Tensor:
        """Fuse spike features into an RGB stage output.

        Args:
            x: RGB features (B, T, H, W, dim).
            spike: Spike features of the same scale (B, T, H, W, spike_dim).

        Returns:
            (B, T, H, W, dim), contiguous.
        """
        if (
            x.ndim != 5
            or spike.ndim != 5
            or x.shape[-1] != self.dim
            or spike.shape[-1] != self.spike_dim
            or x.shape[:4] != spike.shape[:4]
        ):
            raise SpikeShapeError(
                f"expected x (B, T, H, W, {self.dim}) and spike (B, T, H, W, {self.spike_dim}), "
                f"got {tuple(x.shape)} and {tuple(spike.shape)}"
            )
        return apply_per_pixel(self._block, (x, spike), self.chunking)

    def _block(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """The whole block on one chunk: (B, T, h, w, C), (B, T, h, w, C_s) -> (B, T, h, w, C)."""
        b, _, h, w, _ = x.shape
        seq = rearrange(x, "b t h w c -> (b h w) t c")  # (P, T, C)
        q = rearrange(self.q(self.norm_q(seq)), "p t (n d) -> p n t d", n=self.heads)
        kv = self.kv(self.norm_kv(rearrange(s, "b t h w c -> (b h w) t c")))  # (P, T, 2C)
        kv = rearrange(kv, "p t (two n d) -> two p n t d", two=2, n=self.heads)
        y = attention(q, kv[0], kv[1])  # (P, heads, T, hd)
        seq = seq + self.proj(rearrange(y, "p n t d -> p t (n d)"))
        seq = seq + self.mlp(self.norm_ffn(seq))  # (P, T, C)
        return rearrange(seq, "(b h w) t c -> b t h w c", b=b, h=h, w=w)
