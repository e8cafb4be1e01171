"""TMSA against a direct transcription of VRT's window-attention semantics."""

from __future__ import annotations

import math

import pytest
import torch

from model.tmsa import TMSABlock, WindowAttention
from model.window import (
    edge_shift_mask,
    relative_position_index,
    shift_mask,
    sine_position_encoding,
    window_partition,
    window_reverse,
)


def _official_index(window: tuple[int, int, int]) -> torch.Tensor:
    wd, wh, ww = window
    coords = torch.stack(
        torch.meshgrid(torch.arange(wd), torch.arange(wh), torch.arange(ww), indexing="ij")
    )
    flat = coords.flatten(1)
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += wd - 1
    rel[:, :, 1] += wh - 1
    rel[:, :, 2] += ww - 1
    return rel[:, :, 0] * (2 * wh - 1) * (2 * ww - 1) + rel[:, :, 1] * (2 * ww - 1) + rel[:, :, 2]


def _official_sine(h: int, w: int, feats: int) -> torch.Tensor:
    not_mask = torch.ones(1, h, w)
    y = not_mask.cumsum(1)
    x = not_mask.cumsum(2)
    scale = 2 * math.pi
    y = y / (y[:, -1:, :] + 1e-6) * scale
    x = x / (x[:, :, -1:] + 1e-6) * scale
    dim_t = torch.arange(feats, dtype=torch.float32)
    dim_t = 10000 ** (2 * (dim_t // 2) / feats)
    px = x[:, :, :, None] / dim_t
    py = y[:, :, :, None] / dim_t
    px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=4).flatten(3)
    py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=4).flatten(3)
    return torch.cat((py, px), dim=3).flatten(1, 2)[0]  # (H*W, 2*feats)


def _official_mask(size, window, shift) -> torch.Tensor:  # type: ignore[no-untyped-def]
    img = torch.zeros(1, *size, 1)
    cnt = 0
    for d in slice(-window[0]), slice(-window[0], -shift[0]), slice(-shift[0], None):
        for h in slice(-window[1]), slice(-window[1], -shift[1]), slice(-shift[1], None):
            for w in slice(-window[2]), slice(-window[2], -shift[2]), slice(-shift[2], None):
                img[:, d, h, w, :] = cnt
                cnt += 1
    m = window_partition(img, window)[0, :, :, 0]
    m = m.unsqueeze(1) - m.unsqueeze(2)
    return m.masked_fill(m != 0, -100.0).masked_fill(m == 0, 0.0)


def _official_attention(
    mod: WindowAttention, x: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """VRT's WindowAttention.forward on (B_, N, C) windows, transcribed literally."""
    b_, n, c = x.shape
    h = mod.heads
    index = _official_index(mod.window)

    def att(q, k, v, rpe):  # type: ignore[no-untyped-def]
        nn_ = q.shape[2]
        a = (q * (c // h) ** -0.5) @ k.transpose(-2, -1)
        if rpe:
            bias = mod.relative_position_bias_table[index[:nn_, :nn_].reshape(-1)].reshape(
                nn_, nn_, -1
            )
            a = a + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            a = a.view(b_ // nw, nw, h, nn_, nn_) + mask[:, :nn_, :nn_].unsqueeze(1).unsqueeze(0)
            a = a.view(-1, h, nn_, nn_)
        return (a.softmax(-1) @ v).transpose(1, 2).reshape(b_, nn_, c)

    qkv = mod.qkv_self(x).reshape(b_, n, 3, h, c // h).permute(2, 0, 3, 1, 4)
    out = att(qkv[0], qkv[1], qkv[2], True)
    if mod.mutual:
        pos = _official_sine(mod.window[1], mod.window[2], c // 2)[None]
        qkv = (
            mod.qkv_mut(x + pos.repeat(1, 2, 1)).reshape(b_, n, 3, h, c // h).permute(2, 0, 3, 1, 4)
        )
        (q1, q2), (k1, k2), (v1, v2) = (torch.chunk(t, 2, dim=2) for t in qkv)
        x1 = att(q2, k1, v1, False)
        x2 = att(q1, k2, v2, False)
        out = torch.cat([torch.cat([x1, x2], 1), out], 2)
    return mod.proj(out)


def test_index_sine_and_mask_match_vrt() -> None:
    for window in [(2, 4, 4), (3, 7, 7), (1, 8, 8)]:
        assert torch.equal(relative_position_index(window, window), _official_index(window))
    assert torch.allclose(sine_position_encoding(4, 4, 16), _official_sine(4, 4, 8), atol=1e-6)
    size, window, shift = (6, 8, 12), (2, 4, 4), (1, 2, 2)
    assert torch.equal(shift_mask(size, window, shift), _official_mask(size, window, shift))


@pytest.mark.parametrize("mutual", [True, False])
@pytest.mark.parametrize("shifted", [False, True])
def test_window_attention_equals_vrt(mutual: bool, shifted: bool) -> None:
    torch.manual_seed(0)
    window = (2, 4, 4) if mutual else (3, 4, 4)
    size = (window[0] * 2, 8, 12)
    mod = WindowAttention(dim=12, heads=3, window=window, mutual=mutual).double()
    x = torch.randn(2, *size, 12, dtype=torch.float64)
    windows = window_partition(x, window)  # (B, nW, N, C)
    mask = shift_mask(size, window, (1, 2, 2)).double() if shifted else None
    ours = mod(windows, window, edge_shift_mask(size, window, (1, 2, 2)) if shifted else None)
    ref = _official_attention(mod, windows.flatten(0, 1), mask).view_as(ours)
    assert (ours - ref).abs().max() < 1e-12


@pytest.mark.parametrize("mutual", [True, False])
def test_shifted_attention_recomputing_only_the_edge_windows_equals_vrt(mutual: bool) -> None:
    """On a grid of 8x8 windows 15 straddle the shift boundary: the rest attend with the bias
    alone, and the result is still VRT's."""
    torch.manual_seed(0)
    window = (2, 4, 4) if mutual else (3, 4, 4)
    size, shift = (window[0], 32, 32), (0, 2, 2)
    mod = WindowAttention(dim=12, heads=3, window=window, mutual=mutual).double()
    windows = window_partition(torch.randn(1, *size, 12, dtype=torch.float64), window)
    edges = edge_shift_mask(size, window, shift)
    assert len(edges.windows) == 15 and not edges.use_full
    ref = _official_attention(mod, windows.flatten(0, 1), shift_mask(size, window, shift).double())
    assert (mod(windows, window, edges) - ref.view_as(windows)).abs().max() < 1e-12


@pytest.mark.parametrize("mutual", [True, False])
def test_mostly_edge_windows_by_mask_pattern_equal_vrt(
    mutual: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows shifted in time and space on 4x8x12 (or 6x8x12): most windows straddle a
    boundary. Past the small-mask size they are recomputed a batch per mask pattern (at most 7
    in 3-D), never with the full (nW, heads, N, N) mask, and the result is still VRT's."""
    import model.window as window_module

    monkeypatch.setattr(window_module, "_SMALL_MASK", 0)
    torch.manual_seed(0)
    window, shift = ((2, 4, 4), (1, 2, 2)) if mutual else ((3, 4, 4), (1, 2, 2))
    size = (window[0] * 2, 8, 12)
    mod = WindowAttention(dim=12, heads=3, window=window, mutual=mutual).double()
    windows = window_partition(torch.randn(2, *size, 12, dtype=torch.float64), window)
    edges = edge_shift_mask(size, window, shift)
    full = shift_mask(size, window, shift)
    assert not edges.use_full and 4 * len(edges.windows) > len(full)
    listed = full.ne(0).flatten(1).any(1).nonzero().flatten().tolist()
    assert sorted(edges.windows.tolist()) == listed
    assert 1 < len(edges.bounds) == len(edges.patterns) <= 7
    for p, (start, stop) in enumerate(edges.bounds):  # each group shares its pattern
        group = full[edges.windows[start:stop]]
        assert torch.equal(group, edges.patterns[p].expand_as(group))
    ref = _official_attention(mod, windows.flatten(0, 1), full.double())
    assert (mod(windows, window, edges) - ref.view_as(windows)).abs().max() < 1e-12


def test_clamped_temporal_window_equals_vrt_slice() -> None:
    """A (5, 4, 4) window on 3 frames clamps to (3, 4, 4); VRT slices its index to the first N."""
    torch.manual_seed(0)
    mod = WindowAttention(dim=8, heads=2, window=(5, 4, 4), mutual=False).double()
    windows = window_partition(torch.randn(1, 3, 4, 4, 8, dtype=torch.float64), (3, 4, 4))
    ref = _official_attention(mod, windows.flatten(0, 1), None).view_as(windows)
    assert (mod(windows, (3, 4, 4), None) - ref).abs().max() < 1e-12


def test_block_partition_roundtrip_and_padding() -> None:
    x = torch.randn(1, 4, 8, 12, 5)
    assert torch.equal(window_reverse(window_partition(x, (2, 4, 4)), (2, 4, 4), (4, 8, 12)), x)
    block = TMSABlock(dim=8, heads=2, window=(2, 4, 4), shift=(1, 2, 2), mutual=True, mlp_ratio=2.0)
    y = block(torch.randn(2, 5, 9, 7, 8))  # odd sizes: padded to (6, 12, 8) inside, cropped back
    assert y.shape == (2, 5, 9, 7, 8) and torch.isfinite(y).all()
