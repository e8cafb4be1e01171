"""Spike branch: encoder scales, chunk invariance, reference math, gradients, AMP, meta."""

from __future__ import annotations

import itertools

import pytest
import torch
from einops import rearrange

from model.chunking import Chunking, ChunkShapeError, apply_per_pixel
from model.errors import ConfigError
from model.spike import (
    SpikeEncoder,
    SpikeShapeError,
    SpikeTemporalSelfAttention,
    TemporalCrossAttentionFusion,
)

B, T, H, W = 2, 3, 13, 9  # odd grid on purpose
DIM, SPIKE_DIM, HEADS = 8, 6, 2
ONE_CALL = {
    "chunk_size": 10**6,
    "max_batch_tokens": 10**9,
    "chunk_shape": "square",
    "adaptive_chunk": True,
}
PLAN_CHUNKINGS = [
    {"chunk_size": cs, "max_batch_tokens": cap, "chunk_shape": shape, "adaptive_chunk": ad}
    for cs, cap, shape, ad in itertools.product(
        (1, 3, 4, 7, 64), (1, 5, 40, 10**9), ("square", "rows"), (True, False)
    )
]
# each chunk size and shape, adaptive (cap 24: tiles shrink) and not (cap 40: tiles are batched),
# plus one pixel per call and whole-grid batching
CHUNKINGS = [
    {
        "chunk_size": cs,
        "max_batch_tokens": 24 if ad else 40,
        "chunk_shape": shape,
        "adaptive_chunk": ad,
    }
    for cs, shape, ad in itertools.product((3, 4, 7, 64), ("square", "rows"), (True, False))
] + [
    {"chunk_size": 64, "max_batch_tokens": 1, "chunk_shape": "square", "adaptive_chunk": True},
    {"chunk_size": 4, "max_batch_tokens": 10**9, "chunk_shape": "rows", "adaptive_chunk": False},
]


def _tsa(**chunking: object) -> SpikeTemporalSelfAttention:
    return SpikeTemporalSelfAttention(
        dim=DIM, heads=HEADS, chunking=Chunking(**{**ONE_CALL, **chunking})
    )


def _fusion(**chunking: object) -> TemporalCrossAttentionFusion:
    return TemporalCrossAttentionFusion(
        dim=DIM, spike_dim=SPIKE_DIM, heads=HEADS, chunking=Chunking(**{**ONE_CALL, **chunking})
    )


def plan_chunks(batch: int, height: int, width: int, **chunking: object):  # noqa: ANN201
    return Chunking(**chunking).plan(batch, height, width)


def _inputs(h: int = H, w: int = W) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(B, T, h, w, DIM), torch.randn(B, T, h, w, SPIKE_DIM)


# --- chunk plans -------------------------------------------------------------------------------


@pytest.mark.parametrize("chunking", PLAN_CHUNKINGS, ids=str)
def test_plan_tiles_grid_exactly_once(chunking: dict) -> None:
    plan = plan_chunks(B, H, W, **chunking)
    cover = torch.zeros(H, W, dtype=torch.int64)
    for rows, cols in plan.windows():
        cover[rows, cols] += 1
    assert bool((cover == 1).all())
    assert plan.num_chunks == len(list(plan.windows()))


@pytest.mark.parametrize("chunking", [c for c in PLAN_CHUNKINGS if c["adaptive_chunk"]], ids=str)
def test_adaptive_plan_respects_cap(chunking: dict) -> None:
    plan = plan_chunks(B, H, W, **chunking)
    cap = max(chunking["max_batch_tokens"], B)  # below one pixel per call it cannot go
    area = chunking["chunk_size"] ** 2
    for rows, cols in plan.windows():
        pixels = (rows.stop - rows.start) * (cols.stop - cols.start)
        assert B * pixels <= cap
        assert pixels <= area


def test_seed_semantics_at_256() -> None:
    kw = {"chunk_shape": "square", "max_batch_tokens": 49152}
    # seed defaults: 64 x 64 tiles, one per call
    assert plan_chunks(1, 256, 256, chunk_size=64, adaptive_chunk=True, **kw).num_chunks == 16
    # adaptive shrinks the tile to the cap: 2 * 96^2 > 16384 -> side isqrt(8192) = 90
    p = plan_chunks(
        2,
        256,
        256,
        chunk_size=96,
        max_batch_tokens=16384,
        chunk_shape="square",
        adaptive_chunk=True,
    )
    assert (p.chunk_h, p.chunk_w) == (90, 90)
    # non-adaptive: whole tiles, batched as whole bands within the cap (3 bands of 64 rows)
    p = plan_chunks(1, 256, 256, chunk_size=64, adaptive_chunk=False, **kw)
    assert (p.chunk_h, p.chunk_w, p.num_chunks) == (192, 256, 2)
    # non-adaptive never shrinks a tile, even above the cap
    p = plan_chunks(
        1, 256, 256, chunk_size=64, max_batch_tokens=100, chunk_shape="square", adaptive_chunk=False
    )
    assert (p.chunk_h, p.chunk_w) == (64, 64)
    # rows: bands of whole rows holding about chunk_size^2 pixels
    p = plan_chunks(
        1, 256, 256, chunk_size=32, chunk_shape="rows", max_batch_tokens=1024, adaptive_chunk=True
    )
    assert (p.chunk_h, p.chunk_w) == (4, 256)
    assert plan_chunks(1, 32, 32, chunk_size=64, adaptive_chunk=True, **kw).is_single


def test_single_call_uses_no_chunk_copies() -> None:
    x = torch.randn(1, 2, 4, 4, 3)
    seen: list[torch.Tensor] = []

    def fn(c: torch.Tensor) -> torch.Tensor:
        seen.append(c)
        return c * 2

    out = apply_per_pixel(fn, (x,), Chunking(**ONE_CALL))
    assert len(seen) == 1 and seen[0] is x
    torch.testing.assert_close(out, x * 2, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"chunk_size": 0}, "chunk_size"),
        ({"max_batch_tokens": 0}, "max_batch_tokens"),
        ({"chunk_shape": "wide"}, "chunk_shape"),
        ({"adaptive_chunk": 1}, "adaptive_chunk"),
    ],
)
def test_bad_chunk_args(kwargs: dict, word: str) -> None:
    with pytest.raises(ConfigError, match=word):
        Chunking(**{**ONE_CALL, **kwargs})
    with pytest.raises(ConfigError, match=word):
        _tsa(**kwargs)


def test_shape_errors() -> None:
    x, s = _inputs()
    with pytest.raises(ConfigError, match="heads"):
        SpikeTemporalSelfAttention(dim=10, heads=4, chunking=Chunking(**ONE_CALL))
    with pytest.raises(SpikeShapeError):
        _fusion()(x, s[:, :, :-1])
    with pytest.raises(SpikeShapeError):
        _tsa()(s)
    with pytest.raises(SpikeShapeError):
        SpikeEncoder(in_bins=4, dims=(4, 4, 4, 4))(torch.zeros(1, 2, 3, 8, 8))
    with pytest.raises(ChunkShapeError):
        apply_per_pixel(lambda a, b: a, (x, s[:, :2]), Chunking(**ONE_CALL))


# --- encoder -----------------------------------------------------------------------------------


def test_encoder_scales_and_widths() -> None:
    dims = (4, 6, 8, 10)
    enc = SpikeEncoder(in_bins=5, dims=dims)
    feats = enc(torch.rand(2, 3, 5, 16, 24))
    assert [tuple(f.shape) for f in feats] == [
        (2, 3, 16 // 2**s, 24 // 2**s, dims[s]) for s in range(4)
    ]
    assert all(f.is_contiguous() and bool(torch.isfinite(f).all()) for f in feats)
    sum(f.mean() for f in feats).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())


# --- reference math and chunk invariance -------------------------------------------------------


def _ref_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Plain softmax attention over T per pixel, on (B, T, H, W, C) tensors, in float64."""
    q, k, v = (rearrange(a.double(), "b t h w (n d) -> b h w n t d", n=heads) for a in (q, k, v))
    p = torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, dim=-1)
    return rearrange(p @ v, "b h w n t d -> b t h w (n d)")


def test_tsa_matches_reference_math() -> None:
    m = _tsa().double()
    x = torch.randn(B, T, H, W, DIM, dtype=torch.float64)
    q, k, v = m.qkv(m.norm1(x)).chunk(3, dim=-1)
    y = x + m.proj(_ref_attention(q, k, v, HEADS))
    y = y + m.mlp(m.norm2(y))
    torch.testing.assert_close(m(x), y, rtol=0, atol=1e-10)


def test_fusion_matches_reference_math() -> None:
    m = _fusion().double()
    x, s = (a.double() for a in _inputs())
    k, v = m.kv(m.norm_kv(s)).chunk(2, dim=-1)
    y = x + m.proj(_ref_attention(m.q(m.norm_q(x)), k, v, HEADS))
    y = y + m.mlp(m.norm_ffn(y))
    torch.testing.assert_close(m(x, s), y, rtol=0, atol=1e-10)


@pytest.mark.parametrize("chunking", CHUNKINGS, ids=str)
def test_chunking_does_not_change_outputs(chunking: dict) -> None:
    x, s = _inputs(9, 7)  # odd and small: the one-pixel plan makes 63 calls
    tsa, fusion = _tsa(), _fusion()
    with torch.no_grad():
        ref_tsa, ref_fusion = tsa(x), fusion(x, s)
        tsa.chunking = fusion.chunking = Chunking(**chunking)
        assert (tsa(x) - ref_tsa).abs().max().item() <= 1e-5
        assert (fusion(x, s) - ref_fusion).abs().max().item() <= 1e-5


def test_chunking_does_not_change_gradients() -> None:
    x, s = _inputs()
    chunked = {"chunk_size": 4, "max_batch_tokens": 20, "chunk_shape": "square"}
    grads = []
    for chunking in (ONE_CALL, {**ONE_CALL, **chunked}):
        torch.manual_seed(1)
        m = _fusion(**chunking)
        xg = x.clone().requires_grad_(True)
        m(xg, s).square().mean().backward()
        grads.append([xg.grad] + [p.grad for p in m.parameters()])
    for a, b in zip(*grads, strict=True):
        assert (a - b).abs().max().item() <= 1e-5


@pytest.mark.parametrize("factory", [_tsa, _fusion], ids=["tsa", "fusion"])
def test_every_parameter_gets_a_gradient(factory) -> None:
    m = factory(chunk_size=3, max_batch_tokens=10)  # many chunks
    x, s = _inputs()
    x.requires_grad_(True)
    out = m(x) if isinstance(m, SpikeTemporalSelfAttention) else m(x, s)
    assert out.shape == (B, T, H, W, DIM) and bool(torch.isfinite(out).all())
    out.square().mean().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# --- AMP and meta device -----------------------------------------------------------------------


def test_bf16_autocast_close_to_fp32() -> None:
    x, s = _inputs()
    tsa, fusion = _tsa(chunk_size=4, max_batch_tokens=20), _fusion(chunk_size=4)
    with torch.no_grad():
        ref = tsa(x), fusion(x, s)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            amp = tsa(x), fusion(x, s)
    for a, r in zip(amp, ref, strict=True):
        assert a.shape == r.shape and bool(torch.isfinite(a).all())
        # bf16 keeps 8 mantissa bits; outputs are O(1), so a few 1e-2 is the honest bound
        assert (a.float() - r).abs().max().item() < 5e-2


def test_meta_device_forward_shapes() -> None:
    with torch.device("meta"):
        enc = SpikeEncoder(in_bins=32, dims=(16, 16, 32, 32))
        tsa = SpikeTemporalSelfAttention(
            dim=32,
            heads=4,
            chunking=Chunking(chunk_size=8, max_batch_tokens=49152),
        )
        fusion = TemporalCrossAttentionFusion(
            dim=48,
            spike_dim=32,
            heads=4,
            chunking=Chunking(
                chunk_size=16, max_batch_tokens=256, chunk_shape="rows", adaptive_chunk=False
            ),
        )
        feats = enc(torch.empty(1, 5, 32, 256, 256))
        spike = tsa(feats[3])
        out = fusion(torch.empty(1, 5, 32, 32, 48), spike)
    assert [f.shape[2:] for f in feats] == [
        (256 >> s, 256 >> s, c) for s, c in enumerate((16, 16, 32, 32))
    ]
    assert spike.shape == (1, 5, 32, 32, 32) and spike.device.type == "meta"
    assert out.shape == (1, 5, 32, 32, 48) and out.device.type == "meta"
