"""Tests of model.deform (pure-PyTorch DCNv2, flow-guided alignment) and model.warp."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from model.deform import FlowGuidedDeformAlign, deform_conv2d
from model.flow import flow_warp
from model.warp import ParallelWarp


def _bilinear_zero_pad(img: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Explicit bilinear sampling, pixel centres at integers, zero outside the image.

    img (N, C, H, W); y, x (N, Ho, Wo) in pixels -> (N, C, Ho, Wo).
    """
    n, c, h, w = img.shape
    y0, x0 = torch.floor(y), torch.floor(x)
    fy, fx = y - y0, x - x0
    flat = img.reshape(n, c, h * w)
    out = torch.zeros(n, c, *y.shape[1:], dtype=img.dtype)
    for cy, wy in ((0, 1 - fy), (1, fy)):
        for cx, wx in ((0, 1 - fx), (1, fx)):
            yy, xx = (y0 + cy).long(), (x0 + cx).long()
            valid = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            idx = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).reshape(n, 1, -1)
            val = torch.gather(flat, 2, idx.expand(n, c, -1)).reshape(out.shape)
            out = out + val * (wy * wx * valid)[:, None]
    return out


def _deform_conv_reference(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    padding: int,
    dilation: int,
) -> torch.Tensor:
    """Per-tap, per-group DCNv2 (torchvision semantics, stride 1), written out directly."""
    n, c, h, w = x.shape
    cout, _, kh, kw = weight.shape
    k = kh * kw
    ho, wo = h + 2 * padding - dilation * (kh - 1), w + 2 * padding - dilation * (kw - 1)
    groups = offset.shape[1] // (2 * k)
    cg = c // groups
    iy = torch.arange(ho, dtype=x.dtype)[:, None].expand(ho, wo)
    ix = torch.arange(wo, dtype=x.dtype)[None, :].expand(ho, wo)
    out = torch.zeros(n, cout, ho, wo, dtype=x.dtype)
    for g in range(groups):
        for a in range(kh):
            for b in range(kw):
                tap = g * k + a * kw + b
                y = iy - padding + a * dilation + offset[:, 2 * tap]
                xs = ix - padding + b * dilation + offset[:, 2 * tap + 1]
                s = _bilinear_zero_pad(x[:, g * cg : (g + 1) * cg], y, xs)
                s = s * mask[:, tap][:, None]
                out = out + torch.einsum("oc,nchw->nohw", weight[:, g * cg : (g + 1) * cg, a, b], s)
    if bias is not None:
        out = out + bias[None, :, None, None]
    return out


def _inputs(
    n: int,
    c: int,
    h: int,
    w: int,
    cout: int,
    groups: int,
    *,
    k: int = 3,
    padding: int = 1,
    dilation: int = 1,
    scale: float = 3.0,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, ...]:
    """Random x, offset (+-scale px), mask, weight, bias for a DCN with ``groups`` groups."""
    ho, wo = h + 2 * padding - dilation * (k - 1), w + 2 * padding - dilation * (k - 1)
    x = torch.randn(n, c, h, w, dtype=dtype)
    offset = scale * torch.randn(n, 2 * groups * k * k, ho, wo, dtype=dtype)
    mask = torch.rand(n, groups * k * k, ho, wo, dtype=dtype)
    weight = torch.randn(cout, c, k, k, dtype=dtype) / (c * k * k) ** 0.5
    bias = torch.randn(cout, dtype=dtype)
    return x, offset, mask, weight, bias


@pytest.mark.parametrize(
    ("groups", "k", "padding", "dilation", "scale"),
    [
        (1, 3, 1, 1, 3.0),
        (2, 3, 1, 1, 6.0),
        (4, 3, 1, 1, 10.0),
        (2, 3, 2, 2, 3.0),
        (3, 1, 0, 1, 2.0),
    ],
)
def test_deform_conv_equals_per_tap_reference(
    groups: int, k: int, padding: int, dilation: int, scale: float
) -> None:
    x, offset, mask, weight, bias = _inputs(
        2, 12, 9, 11, 5, groups, k=k, padding=padding, dilation=dilation, scale=scale
    )
    out = deform_conv2d(x, offset, mask, weight, bias, padding=padding, dilation=dilation)
    ref = _deform_conv_reference(x, offset, mask, weight, bias, padding=padding, dilation=dilation)
    assert out.shape == ref.shape
    assert (out - ref).abs().max() < 1e-10
    assert ref.abs().max() > 1.0  # not vacuous (scale 10 still leaves many samples inside)


def test_deform_conv_gradients_equal_reference() -> None:
    x, offset, mask, weight, bias = _inputs(2, 8, 7, 8, 4, 2, scale=4.0)
    leaves = [t.requires_grad_() for t in (x, offset, mask, weight, bias)]
    upstream = torch.randn(2, 4, 7, 8, dtype=torch.float64)
    grads = torch.autograd.grad((deform_conv2d(*leaves, padding=1) * upstream).sum(), leaves)
    ref_out = _deform_conv_reference(*leaves, padding=1, dilation=1)
    ref_grads = torch.autograd.grad((ref_out * upstream).sum(), leaves)
    for name, g, r in zip(("x", "offset", "mask", "weight", "bias"), grads, ref_grads, strict=True):
        assert (g - r).abs().max() < 1e-10, name
        assert r.abs().max() > 0, name


def test_deform_conv_gradcheck() -> None:
    x, offset, mask, weight, bias = _inputs(1, 4, 4, 5, 3, 2, scale=1.5)
    offset = offset + 0.37  # keep sampling points off the integer grid (bilinear kinks)
    args = tuple(t.requires_grad_() for t in (x, offset, mask, weight, bias))
    assert torch.autograd.gradcheck(lambda *a: deform_conv2d(*a, padding=1), args)


def test_deform_conv_zero_offset_is_conv2d() -> None:
    x, offset, mask, weight, bias = _inputs(2, 6, 8, 8, 4, 3)
    out = deform_conv2d(x, torch.zeros_like(offset), torch.ones_like(mask), weight, bias)
    torch.testing.assert_close(out, F.conv2d(x, weight, bias, padding=1), rtol=0, atol=1e-12)


def test_deform_conv_bf16_autocast_meta_and_errors() -> None:
    x, offset, mask, weight, bias = _inputs(1, 16, 12, 12, 8, 4, dtype=torch.float32)
    ref = deform_conv2d(x, offset, mask, weight, bias)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = deform_conv2d(x.bfloat16(), offset.bfloat16(), mask.bfloat16(), weight, bias)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert (out.float() - ref).abs().max() < 0.1 * ref.abs().max()
    meta = deform_conv2d(*(t.to("meta") for t in (x, offset, mask, weight, bias)))
    assert meta.shape == (1, 8, 12, 12) and meta.device.type == "meta"
    with pytest.raises(ValueError, match="offset"):
        deform_conv2d(x, offset[:, :-1], mask, weight)
    with pytest.raises(ValueError, match="divisible"):
        deform_conv2d(x, offset[:, : 2 * 9 * 3], mask[:, :27], weight)


def test_flow_guided_align_zero_residue_zero_flow_is_half_conv() -> None:
    torch.manual_seed(1)
    mod = FlowGuidedDeformAlign(dim=8, deformable_groups=2, max_residue_magnitude=10).double()
    with torch.no_grad():
        mod.bias.normal_()
    nb, cur = torch.randn(2, 8, 10, 12, dtype=torch.float64), torch.randn(2, 8, 10, 12).double()
    flow = torch.zeros(2, 2, 10, 12, dtype=torch.float64)
    out = mod(nb, flow_warp(nb, flow), cur, flow)
    expect = 0.5 * F.conv2d(nb, mod.weight, padding=1) + mod.bias[None, :, None, None]
    torch.testing.assert_close(out, expect, rtol=0, atol=1e-12)


def test_flow_guided_align_integer_flow_shifts_the_neighbour() -> None:
    mod = FlowGuidedDeformAlign(dim=4, deformable_groups=4, max_residue_magnitude=5).double()
    nb = torch.randn(1, 4, 12, 12, dtype=torch.float64)
    flow = torch.zeros(1, 2, 12, 12, dtype=torch.float64)
    flow[:, 0], flow[:, 1] = 2.0, 1.0  # dx = 2, dy = 1
    out = mod(nb, flow_warp(nb, flow), nb, flow)
    expect = 0.5 * F.conv2d(flow_warp(nb, flow), mod.weight, padding=1)
    inner = (slice(None), slice(None), slice(1, 10), slice(1, 9))  # away from the borders
    torch.testing.assert_close(out[inner], expect[inner], rtol=0, atol=1e-12)


def _randomise_offsets(warp: ParallelWarp, std: float = 0.05) -> None:
    with torch.no_grad():
        warp.pa_deform.conv_offset[-1].weight.normal_(std=std)
        warp.pa_deform.conv_offset[-1].bias.normal_(std=std)
        warp.pa_deform.bias.normal_(std=std)


def _parallel_warp_loop(
    warp: ParallelWarp,
    x: torch.Tensor,
    flows_backward: torch.Tensor,
    flows_forward: torch.Tensor,
) -> torch.Tensor:
    """Per-frame, per-direction loop in the style of the official VRT code."""
    xc = x.permute(0, 1, 4, 2, 3)  # (B, T, C, H, W)
    t = xc.shape[1]
    backward = [torch.zeros_like(xc[:, -1])]
    for i in range(t - 1, 0, -1):
        flow = flows_backward[:, i - 1]
        nb = xc[:, i]
        backward.insert(0, warp.pa_deform(nb, flow_warp(nb, flow), xc[:, i - 1], flow))
    forward = [torch.zeros_like(xc[:, 0])]
    for i in range(0, t - 1):
        flow = flows_forward[:, i]
        nb = xc[:, i]
        forward.append(warp.pa_deform(nb, flow_warp(nb, flow), xc[:, i + 1], flow))
    cat = torch.cat([xc, torch.stack(backward, 1), torch.stack(forward, 1)], 2)
    return warp.pa_fuse(cat.permute(0, 1, 3, 4, 2))


@pytest.mark.parametrize("t", [1, 2, 4])
def test_parallel_warp_equals_per_frame_loop(t: int) -> None:
    b, h, w, c = 2, 8, 10, 8
    warp = ParallelWarp(dim=c, deformable_groups=2, max_residue_magnitude=3).double()
    _randomise_offsets(warp)
    x = torch.randn(b, t, h, w, c, dtype=torch.float64)
    fb = 2 * torch.randn(b, t - 1, 2, h, w, dtype=torch.float64)
    ff = 2 * torch.randn(b, t - 1, 2, h, w, dtype=torch.float64)
    out = warp(x, fb, ff)
    ref = _parallel_warp_loop(warp, x, fb, ff)
    assert out.shape == (b, t, h, w, c)
    assert (out - ref).abs().max() < 1e-10


def test_parallel_warp_gradients_bf16_and_meta() -> None:
    b, t, h, w, c = 1, 3, 8, 8, 8
    warp = ParallelWarp(dim=c, deformable_groups=4, max_residue_magnitude=2)
    _randomise_offsets(warp)
    x = torch.randn(b, t, h, w, c, requires_grad=True)
    fb, ff = torch.randn(b, t - 1, 2, h, w), torch.randn(b, t - 1, 2, h, w)
    warp(x, fb, ff).square().mean().backward()
    for name, p in warp.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = warp(x.detach(), fb, ff)
    assert out.shape == (b, t, h, w, c) and torch.isfinite(out).all()
    meta_warp = ParallelWarp(dim=c, deformable_groups=4, max_residue_magnitude=2).to("meta")
    meta = meta_warp(x.detach().to("meta"), fb.to("meta"), ff.to("meta"))
    assert meta.shape == (b, t, h, w, c) and meta.device.type == "meta"
    with pytest.raises(ValueError, match="flows"):
        warp(x.detach(), fb[:, :1], ff)
