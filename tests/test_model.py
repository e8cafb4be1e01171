from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from model import VRTSpike, VRTSpikeConfig, load_preset


def _inputs(
    cfg: VRTSpikeConfig, h: int = 16, w: int = 16, b: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    t, k = cfg.data.clip_len, cfg.data.num_voxel_bins
    return torch.rand(b, t, 3, h, w), torch.rand(b, t, k, h, w)


def _randomise_zero_inits(model: nn.Module) -> None:
    """SpyNet's and the DCN offset nets' last convs start at zero; give them weights."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and not m.weight.any():
            nn.init.normal_(m.weight, std=1e-2)


def test_forward_shape_and_finite() -> None:
    cfg = load_preset("tiny")
    model = VRTSpike(cfg)
    rgb, spike = _inputs(cfg, 24, 16, b=2)
    out = model(rgb, spike)
    assert out.shape == rgb.shape and torch.isfinite(out).all()


def test_a_new_network_is_the_identity_on_its_rgb_input() -> None:
    """The last conv starts at zero: before training the output is the blurry input itself."""
    cfg = load_preset("tiny")
    rgb, spike = _inputs(cfg, 24, 16)
    assert torch.equal(VRTSpike(cfg)(rgb, spike), rgb)


def test_every_parameter_gets_a_gradient() -> None:
    torch.manual_seed(0)
    # no stochastic depth: with one sample a dropped block would get no gradient at all
    model = VRTSpike(load_preset("tiny").with_overrides({"MODEL.DROP_PATH_RATE": 0.0}))
    _randomise_zero_inits(model)
    rgb, spike = _inputs(model.cfg)
    model(rgb, spike).square().mean().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert dead == []


def test_plain_vrt_without_spikes() -> None:
    cfg = load_preset("tiny").with_overrides({"MODEL.USE_SPIKE": False})
    model = VRTSpike(cfg)
    assert not any(n.startswith(("spike", "fusion")) for n, _ in model.named_parameters())
    rgb, _ = _inputs(cfg)
    assert model(rgb).shape == rgb.shape
    assert "fusion1" not in model.part_names()


@pytest.mark.parametrize("window", [6, 7, 8])
def test_window_sizes_and_odd_spatial_sizes(window: int) -> None:
    cfg = load_preset("tiny").with_overrides({"MODEL.WINDOW_SIZE": window})
    model = VRTSpike(cfg)
    rgb, spike = _inputs(cfg, 19, 27)
    out = model(rgb, spike)
    assert out.shape == rgb.shape and torch.isfinite(out).all()


def test_chunking_never_changes_the_output() -> None:
    torch.manual_seed(0)
    base = load_preset("tiny").with_overrides({"MODEL.FUSE.STAGES": [1, 2, 3, 4, 5, 6, 7]})
    ref_model = VRTSpike(base).eval()
    rgb, spike = _inputs(base, 24, 40)
    with torch.no_grad():
        ref = ref_model(rgb, spike)
    settings = itertools.product([3, 8, 64], [16, 100, 100_000], ["square", "rows"], [True, False])
    for chunk, tokens, shape, adaptive in settings:
        over = {}
        for part in ("FUSE", "SPIKE_TSA"):
            over |= {
                f"MODEL.{part}.CHUNK_SIZE": chunk,
                f"MODEL.{part}.MAX_BATCH_TOKENS": tokens,
                f"MODEL.{part}.CHUNK_SHAPE": shape,
                f"MODEL.{part}.ADAPTIVE_CHUNK": adaptive,
            }
        model = VRTSpike(base.with_overrides(over)).eval()
        model.load_state_dict(ref_model.state_dict())
        with torch.no_grad():
            diff = (model(rgb, spike) - ref).abs().max().item()
        assert diff <= 1e-5, (chunk, tokens, shape, adaptive, diff)


def test_bad_input_shapes() -> None:
    cfg = load_preset("tiny")
    model = VRTSpike(cfg)
    rgb, spike = _inputs(cfg)
    with pytest.raises(ValueError, match="spike must be"):
        model(rgb, spike[:, :, :2])
    with pytest.raises(ValueError, match="spike must be"):
        model(rgb)
    with pytest.raises(ValueError, match="rgb must be"):
        model(rgb[:, :, :2], spike)


def test_part_timer_sees_every_part_once_in_order() -> None:
    model = VRTSpike(load_preset("tiny"))
    seen: list[str] = []

    class Recorder:
        def __init__(self, name: str) -> None:
            self.name = name

        def __enter__(self) -> None:
            seen.append(self.name)

        def __exit__(self, *exc: object) -> None:
            return None

    model.set_part_timer(Recorder)
    model(*_inputs(model.cfg))
    assert tuple(seen) == model.part_names()
    assert {"flow", "spike_encoder", "spike_tsa", "stage8", "fusion4", "head"} <= set(seen)
    model.set_part_timer(None)
    seen.clear()
    model(*_inputs(model.cfg))
    assert seen == []


def test_meta_device_builds_and_runs() -> None:
    with torch.device("meta"):
        model = VRTSpike(load_preset("baseline"))
        out = model(torch.empty(1, 5, 3, 64, 64), torch.empty(1, 5, 32, 64, 64))
    assert out.shape == (1, 5, 3, 64, 64) and out.device.type == "meta"


def test_bf16_autocast_on_cpu_close_to_fp32() -> None:
    torch.manual_seed(0)
    model = VRTSpike(load_preset("tiny")).eval()
    rgb, spike = _inputs(model.cfg)
    with torch.no_grad():
        ref = model(rgb, spike)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(rgb, spike)
    assert torch.isfinite(low).all()
    assert (low.float() - ref).abs().max() < 0.1


def test_checkpointing_gives_the_same_gradients() -> None:
    torch.manual_seed(0)
    cfg = load_preset("tiny").with_overrides({"MODEL.DROP_PATH_RATE": 0.0})
    plain = VRTSpike(cfg)
    ckpt = VRTSpike(
        cfg.with_overrides({"TRAIN.USE_CHECKPOINT_ATTN": True, "TRAIN.USE_CHECKPOINT_FFN": True})
    )
    ckpt.load_state_dict(plain.state_dict())
    rgb, spike = _inputs(cfg)
    for m in (plain, ckpt):
        m(rgb, spike).square().mean().backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), ckpt.named_parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name


def test_official_parameter_count() -> None:
    """VRT's official deblurring network has 18,320,007 parameters (SpyNet 1,440,300)."""
    with torch.device("meta"):
        model = VRTSpike(load_preset("vrt_gopro"))
        spynet = sum(p.numel() for p in model.spynet.parameters())
        total = sum(p.numel() for p in model.parameters())
    assert spynet == 1_440_300
    assert total == 18_320_007


def test_single_frame_clip() -> None:
    cfg = load_preset("tiny").with_overrides({"DATA.CLIP_LEN": 1})
    model = VRTSpike(cfg)
    rgb, spike = _inputs(cfg)
    out = model(rgb, spike)
    assert out.shape == rgb.shape and torch.isfinite(out).all()


def test_training_after_an_inference_forward() -> None:
    """Cached masks and indices built under inference mode must not break a later backward."""
    model = VRTSpike(load_preset("tiny"))
    rgb, spike = _inputs(model.cfg)
    with torch.inference_mode():
        model(rgb, spike)
    model(rgb, spike).mean().backward()
    assert (
        model.stages[0].residual_group1.blocks[0].attn.relative_position_bias_table.grad is not None
    )
