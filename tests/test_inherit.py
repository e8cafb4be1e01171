from __future__ import annotations

import copy

import pytest
import torch

from model import VRTSpike, VRTSpikeConfig, load_preset
from model.window import relative_position_index
from search.inherit import InheritError, as_child, child_state_dict


@pytest.fixture(scope="module")
def parent() -> tuple[VRTSpikeConfig, VRTSpike]:
    """``tiny`` (window 4) with its zero-initialised layers given weights: a trained stand-in."""
    torch.manual_seed(0)
    cfg = load_preset("tiny")
    model = VRTSpike(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(std=0.05)
    return cfg, model


def _inputs(cfg: VRTSpikeConfig) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    t, k = cfg.data.clip_len, cfg.data.num_voxel_bins
    return torch.rand(1, t, 3, 16, 16), torch.rand(1, t, k, 16, 16)


def _child(parent: tuple[VRTSpikeConfig, VRTSpike], overrides: dict) -> tuple[VRTSpike, dict]:
    cfg, model = parent
    child_cfg = cfg.with_overrides(overrides)
    state = child_state_dict(cfg, model.state_dict(), child_cfg)
    child = VRTSpike(child_cfg).eval()
    child.load_state_dict(state, strict=True)
    return child, state


def test_a_child_equal_to_its_parent_computes_the_parent_output(parent) -> None:  # type: ignore[no-untyped-def]
    child, _ = _child(parent, {"TRAIN.AMP_ENABLED": True, "MODEL.FUSE.CHUNK_SIZE": 4})
    rgb, spike = _inputs(parent[0])
    with torch.no_grad():
        assert torch.equal(child(rgb, spike), parent[1](rgb, spike))


def test_depth_keeps_the_first_blocks_of_each_group(parent) -> None:  # type: ignore[no-untyped-def]
    # tiny: depth 2 = 1 mutual + 1 self block; depth 1 = 0 mutual + 1 self block
    child, state = _child(parent, {"MODEL.VRT_DEPTHS": [1, 2, 2, 2, 1, 1, 1, 1, 1]})
    pstate = parent[1].state_dict()
    assert not any(k.startswith("stages.0.residual_group1.blocks.") for k in state)
    key = "stages.0.residual_group2.blocks.0.mlp.fc2.weight"
    assert torch.equal(state[key], pstate[key])
    assert "stage8.0.residual_group.blocks.1.norm1.weight" not in state
    rgb, spike = _inputs(parent[0])
    with torch.no_grad():
        assert torch.isfinite(child(rgb, spike)).all()


def test_bias_tables_are_centre_cropped_so_an_offset_keeps_its_bias(parent) -> None:  # type: ignore[no-untyped-def]
    _, state = _child(parent, {"MODEL.WINDOW_SIZE": 3})
    key = "stages.1.residual_group2.blocks.0.attn.relative_position_bias_table"
    parent_table = parent[1].state_dict()[key]
    t = parent[0].model.temporal_window
    assert state[key].shape[0] == (2 * t - 1) * 5 * 5
    used = (t, 3, 3)  # every offset of a 3x3 window
    child_bias = state[key][relative_position_index(used, (t, 3, 3))]
    parent_bias = parent_table[relative_position_index(used, (t, 4, 4))]
    assert torch.equal(child_bias, parent_bias)


def test_a_stage_the_parent_does_not_fuse_at_gets_an_identity_fusion(parent) -> None:  # type: ignore[no-untyped-def]
    child, state = _child(parent, {"MODEL.FUSE.STAGES": [1, 5]})
    pstate = parent[1].state_dict()
    assert torch.equal(state["fusion.1.q.weight"], pstate["fusion.1.q.weight"])
    assert not any(k.startswith("fusion.2.") for k in state)
    x, s = torch.rand(1, 3, 8, 8, 8), torch.rand(1, 3, 8, 8, 8)
    with torch.no_grad():
        assert torch.equal(child.fusion["5"](x, s), x)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"MODEL.VRT_DEPTHS": [3, 2, 2, 2, 1, 1, 1, 2, 1]}, "MODEL.VRT_DEPTHS[0]"),
        ({"MODEL.VRT_DEPTHS": [2, 2, 2, 2, 1, 1, 1, 3, 1]}, "MODEL.VRT_DEPTHS[7]"),
        ({"MODEL.WINDOW_SIZE": 6}, "MODEL.WINDOW_SIZE"),
        ({"MODEL.EMBED_DIMS": [16, 8, 8, 8, 8, 8, 8, 12]}, "MODEL.EMBED_DIMS"),
        ({"MODEL.NUM_HEADS": [4, 2, 2, 2, 2, 2, 2, 2]}, "MODEL.NUM_HEADS"),
        ({"MODEL.MLP_RATIO": 4.0}, "MODEL.MLP_RATIO"),
    ],
)
def test_a_child_the_parent_does_not_cover_is_refused_naming_the_key(  # type: ignore[no-untyped-def]
    parent, overrides: dict, key: str
) -> None:
    with pytest.raises(InheritError, match=key.replace("[", r"\[").replace("]", r"\]")):
        child_state_dict(parent[0], parent[1].state_dict(), parent[0].with_overrides(overrides))


def test_a_state_that_is_not_the_parent_is_refused(parent) -> None:  # type: ignore[no-untyped-def]
    state = dict(parent[1].state_dict())
    del state["conv_first.weight"]
    with pytest.raises(InheritError, match="conv_first.weight"):
        child_state_dict(parent[0], state, parent[0])


def test_a_parent_without_spikes_passes_on_its_rgb_function(parent) -> None:  # type: ignore[no-untyped-def]
    cfg, model = parent
    rgb_cfg = cfg.with_overrides({"MODEL.USE_SPIKE": False})
    rgb_only = VRTSpike(rgb_cfg).eval()
    rgb_only.load_state_dict(
        {k: v for k, v in model.state_dict().items() if not k.startswith(("spike_", "fusion."))}
    )
    state = child_state_dict(rgb_cfg, rgb_only.state_dict(), cfg)
    child = VRTSpike(cfg).eval()
    child.load_state_dict(state, strict=True)
    rgb, spike = _inputs(cfg)
    with torch.no_grad():
        assert torch.equal(child(rgb, spike), rgb_only(rgb))


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"MODEL.VRT_DEPTHS": [1, 2, 1, 2, 1, 1, 1, 1, 1], "MODEL.WINDOW_SIZE": 3},
        {"MODEL.TEMPORAL_WINDOW": 1, "MODEL.FUSE.STAGES": [1, 3]},
        {"MODEL.FUSE.STAGES": [], "MODEL.WINDOW_SIZE": 2},
    ],
)
def test_the_parent_run_as_a_child_computes_the_inherited_child(parent, overrides: dict) -> None:  # type: ignore[no-untyped-def]
    cfg, model = parent
    child, _ = _child(parent, overrides)
    rgb, spike = _inputs(cfg)
    with torch.no_grad():
        before = model(rgb, spike)
        with as_child(model, cfg.with_overrides(overrides)) as elastic:
            torch.testing.assert_close(elastic(rgb, spike), child(rgb, spike), rtol=0, atol=1e-6)
        assert torch.equal(model(rgb, spike), before)  # restored


def test_an_elastic_forward_trains_the_shared_weights(parent) -> None:  # type: ignore[no-untyped-def]
    cfg, trained = parent
    model = copy.deepcopy(trained)  # eval: no stochastic depth, so the kept block always runs
    child_cfg = cfg.with_overrides({"MODEL.VRT_DEPTHS": [1, 1, 1, 1, 1, 1, 1, 1, 1]})
    rgb, spike = _inputs(cfg)
    with as_child(model, child_cfg) as elastic:
        elastic(rgb, spike).square().mean().backward()
    kept = model.stages[0].residual_group2.blocks[0].mlp.fc2.weight
    dropped = model.stages[0].residual_group1.blocks[0].mlp.fc2.weight
    assert kept.grad is not None and kept.grad.any()
    assert dropped.grad is None


def test_an_elastic_forward_cannot_fuse_where_the_parent_does_not(parent) -> None:  # type: ignore[no-untyped-def]
    cfg, model = parent
    child_cfg = cfg.with_overrides({"MODEL.FUSE.STAGES": [5]})
    with pytest.raises(InheritError, match="MODEL.FUSE.STAGES"), as_child(model, child_cfg):
        pass
