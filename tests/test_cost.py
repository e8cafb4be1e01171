"""Cost model: parameter count equals the real model's, FLOPs per part against formulas."""

from __future__ import annotations

import json

import pytest

from model import VRTSpike, load_preset
from search.measure.cost import count_cost, param_count


def test_params_match_a_real_instance_and_parts_add_up() -> None:
    cfg = load_preset("tiny")
    cost = count_cost(cfg, frames=3, height=32, width=32)
    assert cost.params == sum(p.numel() for p in VRTSpike(cfg).parameters())
    assert param_count(cfg) == cost.params
    assert (
        param_count(load_preset("baseline"))
        == count_cost(load_preset("baseline"), frames=1, height=16, width=16).params
    )
    model_parts = VRTSpike(cfg).part_names()
    assert list(cost.flops_per_part) == [*model_parts, "other"]
    assert sum(cost.flops_per_part.values()) == cost.flops
    assert all(v >= 0 for v in cost.flops_per_part.values())
    assert cost.flops_per_part["other"] == 0  # every counted op runs inside a named part
    json.dumps(cost.to_dict())


def test_conv_first_flops_match_the_convolution_formula() -> None:
    cfg = load_preset("tiny")
    c0 = cfg.model.embed_dims[0]
    t, h, w = 3, 40, 24  # multiples of 8: no internal padding
    cost = count_cost(cfg, frames=t, height=h, width=w)
    # Conv2d 27 -> C0, 3x3, per output pixel and frame: 27 * 9 * C0 MACs = 2x that in FLOPs
    assert cost.flops_per_part["conv_first"] == 2 * t * h * w * 27 * 9 * c0


def test_flops_grow_with_input_and_spike_branch_costs() -> None:
    cfg = load_preset("tiny")
    small = count_cost(cfg, frames=3, height=32, width=32)
    large = count_cost(cfg, frames=3, height=64, width=64)
    assert 3.5 < large.flops / small.flops < 4.5  # ~linear in pixels (windows fixed)
    no_spike = count_cost(
        cfg.with_overrides({"MODEL.USE_SPIKE": False}), frames=3, height=32, width=32
    )
    assert "spike_encoder" not in no_spike.flops_per_part
    assert no_spike.flops < small.flops and no_spike.params < small.params


def test_baseline_full_size_without_allocation() -> None:
    cost = count_cost(load_preset("baseline"), frames=5, height=256, width=256)
    # research note: VRT with these depths is 15.1 M params / 5.61 TFLOPs; the spike branch adds
    # an encoder of about 1 TFLOP at full resolution plus TSA/fusion.
    assert 15e6 < cost.params < 30e6
    assert 5.5e12 < cost.flops < 9e12
    shares = {k: v / cost.flops for k, v in cost.flops_per_part.items()}
    assert shares["stage1"] > shares["stage2"] and shares["stage7"] > shares["fusion1"]


def test_bad_shape() -> None:
    with pytest.raises(ValueError, match="positive"):
        count_cost(load_preset("tiny"), frames=0, height=8, width=8)
