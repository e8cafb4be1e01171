"""Temporal mutual self attention (TMSA): window attention, the TMSA block and a group of blocks.

Faithful to VRT: self attention in 3-D windows with a learned 3-D relative position bias; in
mutual blocks (window depth 2) a second projection of ``x + sine code`` lets each frame's queries
attend the other frame's keys, and the output is ``proj(cat[mutual, self])``. Shifted windows on
odd blocks with VRT's -100 region mask. The bias and the shift mask are folded into one additive
mask and every attention call is a single 4-D :func:`model.sdpa.attention`; in shifted blocks all
windows attend with the bias alone and the few windows that straddle a shift-region boundary are
recomputed with their region mask, a batch per mask pattern (:class:`~model.window.ShiftMask`), so
the (windows, heads, N, N) mask of all windows is built only where it is small (training crops).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from .layers import DropPath, GEGLUMlp
from .sdpa import attention
from .window import (
    ShiftMask,
    Window,
    clamp_window,
    edge_shift_mask,
    pad_to_windows,
    relative_position_index,
    sine_position_encoding,
    window_partition,
    window_reverse,
)

__all__ = ["WindowAttention", "TMSABlock", "TMSAGroup"]


class WindowAttention(nn.Module):
    """Multi-head self (+ optional mutual) attention inside 3-D windows.

    Args:
        dim: Channels C.
        heads: Attention heads (divide ``dim``).
        window: Configured window (Wd, Wh, Ww); sizes the relative-position table.
        mutual: Add mutual attention between the two frames of a depth-2 window.
        qkv_bias: Bias in the q/k/v projections (VRT: True).
    """

    def __init__(
        self, *, dim: int, heads: int, window: Window, mutual: bool, qkv_bias: bool = True
    ) -> None:
        super().__init__()
        self.dim, self.heads, self.window, self.mutual = dim, heads, window, mutual
        wd, wh, ww = window
        self.relative_position_bias_table = nn.Parameter(
            torch.empty((2 * wd - 1) * (2 * wh - 1) * (2 * ww - 1), heads)
        )
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.qkv_self = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        if mutual:
            self.qkv_mut = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(2 * dim if mutual else dim, dim)

    def forward(self, x: torch.Tensor, window: Window, mask: ShiftMask | None) -> torch.Tensor:
        """Attend within windows.

        Args:
            x: Window tokens (B, nW, N, C), N = prod(window).
            window: Window in use (the configured one, clamped to the input).
            mask: The shift-region mask of the windows where it is not zero, or None for
                unshifted blocks.

        Returns:
            (B, nW, N, C).
        """
        index = relative_position_index(window, self.window, device=x.device)  # (N, N)
        n = index.shape[0]
        bias = self.relative_position_bias_table.index_select(0, index.view(-1))  # (N*N, heads)
        bias = rearrange(bias, "(n m) h -> h n m", n=n)  # (heads, N, N)
        out = self._attend(self.qkv_self(x), bias, mask)  # (B, nW, N, C)
        if self.mutual:
            out = torch.cat([self._mutual(x, window, mask), out], dim=-1)  # (B, nW, N, 2C)
        return self.proj(out)

    def _attend(
        self, qkv: torch.Tensor, bias: torch.Tensor, mask: ShiftMask | None
    ) -> torch.Tensor:
        """Self attention of each window with the bias (heads, N, N) and the shift mask."""
        q, k, v = rearrange(qkv, "b w n (three h d) -> three b w h n d", three=3, h=self.heads)
        out = _window_attention(q, k, v, (bias,), mask)  # (B, nW, heads, N, hd)
        return rearrange(out, "b w h n d -> b w n (h d)")

    def _mutual(self, x: torch.Tensor, window: Window, mask: ShiftMask | None) -> torch.Tensor:
        """Frame 2's queries attend frame 1 and vice versa; (B, nW, N, C) -> (B, nW, N, C)."""
        b, nw, n, c = x.shape
        h = self.heads
        if window[0] != 2:  # a single frame (clip of 1): nothing to attend across
            return x.new_zeros(b, nw, n, c)
        pos = sine_position_encoding(window[1], window[2], c, device=x.device)  # (N/2, C)
        qkv = self.qkv_mut(x + pos.repeat(2, 1).to(x.dtype))  # (B, nW, N, 3C)
        q, k, v = rearrange(
            qkv, "b w (f n) (three h d) -> three b w (h f) n d", three=3, h=h, f=2
        )  # (B, nW, h*2, N/2, hd) with f = frame within the window
        q = q.unflatten(2, (h, 2)).flip(3).flatten(2, 3)  # swap frames
        # VRT: the first frame's region labels serve both frames
        out = _window_attention(q, k, v, (), mask, crop=n // 2)  # (B, nW, h*2, N/2, hd)
        # out[f=0] = frame-2 queries on frame 1 (placed first, as VRT does), out[f=1] the converse.
        return rearrange(out, "b w (h f) n d -> b w (f n) (h d)", h=h, f=2)


def _window_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    masks: tuple[torch.Tensor, ...],
    shift: ShiftMask | None,
    *,
    crop: int | None = None,
) -> torch.Tensor:
    """Attention of windows (B, nW, heads, N, hd) with ``masks`` and, in a shifted block, the
    region mask (its first ``crop`` rows and columns): every window with ``masks`` alone, then
    the windows that straddle a region boundary again, a batch per mask pattern; where they are
    most of the windows and the mask is small, all of them at once with the full mask."""
    if shift is None or not len(shift.windows):
        return attention(q, k, v, *masks)
    part = slice(None, crop)
    if shift.use_full:
        return attention(q, k, v, *masks, shift.full[:, None, part, part])  # (nW, 1, N, N)
    edges = []
    for p, (start, stop) in enumerate(shift.bounds):
        i = shift.windows[start:stop]
        edges.append(attention(q[:, i], k[:, i], v[:, i], *masks, shift.patterns[p, part, part]))
    return attention(q, k, v, *masks).index_copy(1, shift.windows, torch.cat(edges, dim=1))


class TMSABlock(nn.Module):
    """``x + Attn(LN(x))`` then ``x + GEGLU(LN(x))``, stochastic depth, optional checkpoints.

    Args:
        dim: Channels.
        heads: Attention heads.
        window: Window (Wd, Wh, Ww).
        shift: Cyclic shift (0, 0, 0) for unshifted blocks.
        mutual: Mutual + self attention (window depth 2) or self attention only.
        mlp_ratio: GEGLU hidden width / dim.
        drop_path: Stochastic depth probability.
        checkpoint_attn: Recompute the attention half in backward.
        checkpoint_ffn: Recompute the MLP half in backward.
    """

    def __init__(
        self,
        *,
        dim: int,
        heads: int,
        window: Window,
        shift: Window,
        mutual: bool,
        mlp_ratio: float,
        drop_path: float = 0.0,
        checkpoint_attn: bool = False,
        checkpoint_ffn: bool = False,
    ) -> None:
        super().__init__()
        self.window, self.shift = window, shift
        self.checkpoint_attn, self.checkpoint_ffn = checkpoint_attn, checkpoint_ffn
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim=dim, heads=heads, window=window, mutual=mutual)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = GEGLUMlp(dim, int(dim * mlp_ratio), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D, H, W, C) -> (B, D, H, W, C)."""
        x = x + self._maybe_checkpoint(self._attention_part, x, self.checkpoint_attn)
        return x + self._maybe_checkpoint(self._ffn_part, x, self.checkpoint_ffn)

    def _maybe_checkpoint(self, fn, x: torch.Tensor, enabled: bool) -> torch.Tensor:  # type: ignore[no-untyped-def]
        if enabled and self.training and torch.is_grad_enabled():
            return checkpoint(fn, x, use_reentrant=False)
        return fn(x)

    def _attention_part(self, x: torch.Tensor) -> torch.Tensor:
        _, d, h, w, _ = x.shape
        window, shift = clamp_window((d, h, w), self.window, self.shift)
        x = pad_to_windows(self.norm1(x), window)  # (B, Dp, Hp, Wp, C), zeros after the norm
        size = tuple(x.shape[1:4])
        shifted = any(shift)
        mask = None
        if shifted:
            x = torch.roll(x, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
            mask = edge_shift_mask(size, window, shift, device=x.device)
        out = self.attn(window_partition(x, window), window, mask)  # (B, nW, N, C)
        x = window_reverse(out, window, size)
        if shifted:
            x = torch.roll(x, shifts=shift, dims=(1, 2, 3))
        return self.drop_path(x[:, :d, :h, :w])

    def _ffn_part(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop_path(self.mlp(self.norm2(x)))


class TMSAGroup(nn.Module):
    """A stack of TMSA blocks, shifted by half a window on every odd block (VRT's ``TMSAG``).

    Args:
        dim: Channels.
        heads: Attention heads.
        window: Window (Wd, Wh, Ww).
        mutual: Mutual + self attention blocks or self attention only.
        mlp_ratio: GEGLU hidden width / dim.
        drop_path: One stochastic-depth probability per block (its length is the depth).
        checkpoint_attn: Checkpoint attention halves.
        checkpoint_ffn: Checkpoint MLP halves.
    """

    def __init__(
        self,
        *,
        dim: int,
        heads: int,
        window: Window,
        mutual: bool,
        mlp_ratio: float,
        drop_path: Sequence[float],
        checkpoint_attn: bool = False,
        checkpoint_ffn: bool = False,
    ) -> None:
        super().__init__()
        shift = tuple(w // 2 for w in window)
        self.blocks = nn.ModuleList(
            TMSABlock(
                dim=dim,
                heads=heads,
                window=window,
                shift=(0, 0, 0) if i % 2 == 0 else shift,  # type: ignore[arg-type]
                mutual=mutual,
                mlp_ratio=mlp_ratio,
                drop_path=p,
                checkpoint_attn=checkpoint_attn,
                checkpoint_ffn=checkpoint_ffn,
            )
            for i, p in enumerate(drop_path)
        )
        self.active: int | None = None  # an elastic forward runs fewer blocks (search.inherit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D, H, W, C) -> (B, D, H, W, C); only the first ``active`` blocks when it is set."""
        for block in self.blocks[: self.active]:
            x = block(x)
        return x
