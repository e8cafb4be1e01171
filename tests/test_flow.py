"""Tests of model.flow: flow_warp, the zero-initialised SpyNet, compute_flows, align_images."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model.flow import FLOW_SCALES, SpyNet, align_images, compute_flows, flow_warp


def _perturbed_spynet(std: float = 0.05) -> SpyNet:
    """A SpyNet whose every conv (incl. the zero-initialised last ones) is random."""
    net = SpyNet()
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=std)
            nn.init.normal_(m.bias, std=std)
    return net


@pytest.mark.parametrize("hw", [(32, 64), (40, 24), (8, 16)])
def test_zero_init_spynet_predicts_exact_zero_flow(hw: tuple[int, int]) -> None:
    h, w = hw
    net = SpyNet()
    ref, supp = torch.rand(2, 3, h, w), torch.rand(2, 3, h, w)
    flows = net(ref, supp)
    assert len(flows) == len(FLOW_SCALES) == 4
    for flow, s in zip(flows, FLOW_SCALES, strict=True):
        assert flow.shape == (2, 2, h // s, w // s)
        assert torch.count_nonzero(flow) == 0


def test_spynet_non_multiple_of_32_sizes_and_gradients() -> None:
    net = _perturbed_spynet()
    ref, supp = torch.rand(1, 3, 24, 40), torch.rand(1, 3, 24, 40)  # resized to 32x64 inside
    flows = net(ref, supp)
    for flow, s in zip(flows, FLOW_SCALES, strict=True):
        assert flow.shape == (1, 2, 24 // s, 40 // s)
        assert torch.isfinite(flow).all()
        assert flow.abs().max() > 0
    sum(f.square().mean() for f in flows).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_zero_init_spynet_gradient_reaches_last_convs() -> None:
    net = SpyNet()
    flows = net(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
    sum(f.sum() for f in flows).backward()
    # Only the (zero) last convs of the levels that feed the returned flows get a gradient now.
    last = [m.basic_module[-1].weight for m in net.basic_module]
    assert all(w.grad is not None for w in last)
    assert sum(w.grad.abs().sum() for w in last) > 0


def test_flow_warp_integer_shift_equals_roll() -> None:
    x = torch.randn(2, 4, 12, 16, dtype=torch.float64)
    dx, dy = 3, -2
    flow = torch.zeros(2, 2, 12, 16, dtype=torch.float64)
    flow[:, 0], flow[:, 1] = dx, dy
    out = flow_warp(x, flow)  # out[p] = x[p + (dy, dx)]
    rolled = torch.roll(x, shifts=(-dy, -dx), dims=(2, 3))
    interior = (slice(None), slice(None), slice(2, 12), slice(0, 16 - 3))
    torch.testing.assert_close(out[interior], rolled[interior], rtol=0, atol=1e-12)
    assert out[..., :2, :].abs().max() < 1e-12  # sampled above the image: zeros padding
    assert out[..., -3:].abs().max() < 1e-12
    nearest = flow_warp(x, flow, mode="nearest")
    torch.testing.assert_close(nearest, out, rtol=0, atol=1e-12)


def test_flow_warp_fractional_matches_explicit_bilinear() -> None:
    x = torch.randn(1, 2, 6, 7, dtype=torch.float64)
    flow = torch.zeros(1, 2, 6, 7, dtype=torch.float64)
    flow[:, 0], flow[:, 1] = 0.25, 0.5
    out = flow_warp(x, flow)
    expect = (
        0.75 * 0.5 * x[..., :-1, :-1]
        + 0.25 * 0.5 * x[..., :-1, 1:]
        + 0.75 * 0.5 * x[..., 1:, :-1]
        + 0.25 * 0.5 * x[..., 1:, 1:]
    )
    torch.testing.assert_close(out[..., :-1, :-1], expect, rtol=0, atol=1e-12)


def test_flow_warp_nearest4_shape_and_corners() -> None:
    x = torch.randn(2, 3, 10, 12, dtype=torch.float64)
    flow = torch.zeros(2, 2, 10, 12, dtype=torch.float64)
    flow[:, 0], flow[:, 1] = 1.5, 0.25  # x in (floor, ceil) = (+1, +2), y in (0, +1)
    out = flow_warp(x, flow, mode="nearest4")
    assert out.shape == (2, 12, 10, 12)
    c00, c01, c10, c11 = out[:, 0:3], out[:, 3:6], out[:, 6:9], out[:, 9:12]
    inner = (slice(None), slice(None), slice(0, 9), slice(0, 10))
    torch.testing.assert_close(c00[inner], x[:, :, 0:9, 1:11], rtol=0, atol=0)
    torch.testing.assert_close(c01[inner], x[:, :, 1:10, 1:11], rtol=0, atol=0)
    torch.testing.assert_close(c10[inner], x[:, :, 0:9, 2:12], rtol=0, atol=0)
    torch.testing.assert_close(c11[inner], x[:, :, 1:10, 2:12], rtol=0, atol=0)
    # integer flow: all four corners coincide
    out_int = flow_warp(x, torch.zeros_like(flow), mode="nearest4")
    torch.testing.assert_close(out_int, x.repeat(1, 4, 1, 1), rtol=0, atol=0)


def test_flow_warp_size_one_and_bad_args() -> None:
    x = torch.randn(1, 2, 1, 5, dtype=torch.float64)
    flow = torch.zeros(1, 2, 1, 5, dtype=torch.float64)
    flow[:, 1] = 1.0  # one row down: outside a single-row image
    assert torch.count_nonzero(flow_warp(x, flow)) == 0
    with pytest.raises(ValueError, match="mode"):
        flow_warp(x, flow, mode="bicubic")
    with pytest.raises(ValueError, match="flow"):
        flow_warp(x, flow[:, :, :, :3])


def test_flow_warp_bf16_autocast_and_meta() -> None:
    x, flow = torch.randn(2, 4, 16, 16), 3 * torch.randn(2, 2, 16, 16)
    ref = flow_warp(x, flow)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = flow_warp(x.bfloat16(), flow)
        out4 = flow_warp(x.bfloat16(), flow.bfloat16(), mode="nearest4")
    assert out.dtype == torch.bfloat16 and out4.shape == (2, 16, 16, 16)
    torch.testing.assert_close(out.float(), ref, rtol=0.02, atol=0.05)
    meta = flow_warp(x.to("meta"), flow.to("meta"), mode="nearest4")
    assert meta.device.type == "meta" and meta.shape == (2, 16, 16, 16)


def test_compute_flows_batched_equals_separate_calls() -> None:
    net = _perturbed_spynet()
    frames = torch.rand(2, 3, 3, 16, 32)
    backward, forward = compute_flows(net, frames)
    for s_idx, s in enumerate(FLOW_SCALES):
        assert backward[s_idx].shape == forward[s_idx].shape == (2, 2, 2, 16 // s, 32 // s)
    for t in range(2):
        fb = net(frames[:, t], frames[:, t + 1])
        ff = net(frames[:, t + 1], frames[:, t])
        for s_idx in range(4):
            torch.testing.assert_close(backward[s_idx][:, t], fb[s_idx], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(forward[s_idx][:, t], ff[s_idx], rtol=1e-5, atol=1e-5)


def test_compute_flows_single_frame() -> None:
    backward, forward = compute_flows(SpyNet(), torch.rand(2, 1, 3, 16, 24))
    assert [f.shape for f in backward] == [(2, 0, 2, 16 // s, 24 // s) for s in FLOW_SCALES]
    assert [f.shape for f in forward] == [(2, 0, 2, 16 // s, 24 // s) for s in FLOW_SCALES]


def test_align_images_equals_per_frame_loop() -> None:
    b, t, h, w = 2, 4, 12, 16
    frames = torch.rand(b, t, 3, h, w, dtype=torch.float64)
    fb = 2.5 * torch.randn(b, t - 1, 2, h, w, dtype=torch.float64)
    ff = 2.5 * torch.randn(b, t - 1, 2, h, w, dtype=torch.float64)
    out = align_images(frames, fb, ff)
    assert out.shape == (b, t, 27, h, w)
    zeros = torch.zeros(b, 12, h, w, dtype=torch.float64)
    back = [flow_warp(frames[:, i + 1], fb[:, i], mode="nearest4") for i in range(t - 1)]
    fwd = [flow_warp(frames[:, i - 1], ff[:, i - 1], mode="nearest4") for i in range(1, t)]
    expect = torch.cat(
        [frames, torch.stack(back + [zeros], 1), torch.stack([zeros] + fwd, 1)], dim=2
    )
    torch.testing.assert_close(out, expect, rtol=0, atol=0)
    single = align_images(frames[:, :1], fb[:, :0], ff[:, :0])
    assert single.shape == (b, 1, 27, h, w)
    assert torch.count_nonzero(single[:, :, 3:]) == 0
