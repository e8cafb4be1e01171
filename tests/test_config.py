from __future__ import annotations

from pathlib import Path

import pytest

from model import PRESETS, ConfigError, VRTSpikeConfig, load_preset

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_dict_and_yaml_round_trip(name: str, tmp_path: Path) -> None:
    cfg = load_preset(name)
    assert VRTSpikeConfig.from_dict(cfg.to_dict()) == cfg
    path = tmp_path / "cfg.yaml"
    cfg.to_yaml(path)
    assert VRTSpikeConfig.from_yaml(path) == cfg


def test_guide_scheme_a_yaml_loads_to_its_values() -> None:
    cfg = VRTSpikeConfig.from_yaml(DATA / "guide_scheme_a.yaml")
    m = cfg.model
    assert m.vrt_depths == (8, 7, 8, 8, 4, 4, 4, 6)
    assert m.recon_depths == (6,)
    assert m.window_size == 7
    assert (m.fuse.heads, m.fuse.chunk_size, m.fuse.max_batch_tokens) == (4, 80, 65536)
    assert m.fuse.adaptive_chunk is True and m.fuse.chunk_shape == "square"
    assert (m.spike_tsa.chunk_size, m.spike_tsa.max_batch_tokens) == (96, 65536)
    assert cfg.train.amp_enabled is True and cfg.train.gradient_accumulation_steps == 12
    assert cfg.data.crop_size == 256
    # keys the guide does not set keep the seed's defaults
    assert (
        m.fuse.stages == (1, 2, 3, 4) and cfg.data.clip_len == 5 and cfg.data.num_voxel_bins == 32
    )
    assert cfg == load_preset("scheme_a")


def test_defaults_are_the_seed_system() -> None:
    d = VRTSpikeConfig().to_dict()
    assert d["MODEL"]["VRT_DEPTHS"] == [8, 8, 8, 8, 4, 4, 4, 8]
    assert d["MODEL"]["FUSE"]["CHUNK_SIZE"] == 64
    assert d["MODEL"]["FUSE"]["MAX_BATCH_TOKENS"] == 49152
    assert d["TRAIN"]["AMP_ENABLED"] is False
    assert VRTSpikeConfig.from_dict({}) == VRTSpikeConfig() == load_preset("baseline")


def test_empty_yaml_and_provenance_block(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("")
    assert VRTSpikeConfig.from_yaml(path) == VRTSpikeConfig()
    load_preset("scheme_b").to_yaml(path, extra={"PROVENANCE": {"study": "s", "trial": 3}})
    assert "PROVENANCE" in path.read_text()
    assert VRTSpikeConfig.from_yaml(path) == load_preset("scheme_b")


@pytest.mark.parametrize(
    ("d", "path", "words"),
    [
        ({"MODEL": {"FOO": 1}}, "MODEL.FOO", "unknown key"),
        ({"MODEL": {"FUSE": {"CHUNKSIZE": 1}}}, "MODEL.FUSE.CHUNKSIZE", "unknown key"),
        ({"OPTIM": {}}, "OPTIM", "unknown key"),
        ({"MODEL": {"WINDOW_SIZE": "8"}}, "MODEL.WINDOW_SIZE", "expected an integer"),
        ({"MODEL": {"WINDOW_SIZE": 8.0}}, "MODEL.WINDOW_SIZE", "expected an integer"),
        ({"TRAIN": {"AMP_ENABLED": 1}}, "TRAIN.AMP_ENABLED", "true or false"),
        ({"MODEL": {"VRT_DEPTHS": 8}}, "MODEL.VRT_DEPTHS", "expected a list"),
        ({"MODEL": {"VRT_DEPTHS": [8, 8, "x", 8, 4, 4, 4, 8]}}, "MODEL.VRT_DEPTHS[2]", "integer"),
        ({"MODEL": {"VRT_DEPTHS": [8] * 7}}, "MODEL.VRT_DEPTHS", "at least 8 entries"),
        ({"MODEL": {"VRT_DEPTHS": [8] * 7 + [0]}}, "MODEL.VRT_DEPTHS[7]", ">= 1"),
        ({"MODEL": {"NUM_HEADS": [5] * 8}}, "MODEL.NUM_HEADS[0]", "do not divide"),
        ({"MODEL": {"EMBED_DIMS": [96] * 7}}, "MODEL.EMBED_DIMS", "needs 8 entries"),
        ({"MODEL": {"FUSE": {"STAGES": [1, 8]}}}, "MODEL.FUSE.STAGES", "outside 1-7"),
        ({"MODEL": {"FUSE": {"STAGES": [0]}}}, "MODEL.FUSE.STAGES", "outside 1-7"),
        ({"MODEL": {"FUSE": {"STAGES": [3, 2]}}}, "MODEL.FUSE.STAGES", "increasing"),
        ({"MODEL": {"FUSE": {"HEADS": 5}}}, "MODEL.FUSE.HEADS", "do not divide"),
        ({"MODEL": {"FUSE": {"CHUNK_SHAPE": "circle"}}}, "MODEL.FUSE.CHUNK_SHAPE", "one of"),
        ({"MODEL": {"SPIKE_TSA": {"CHUNK_SIZE": 0}}}, "MODEL.SPIKE_TSA.CHUNK_SIZE", ">= 1"),
        ({"MODEL": {"WINDOW_SIZE": 9}}, "MODEL.WINDOW_SIZE", "between 2 and 8"),
        ({"MODEL": {"WINDOW_SIZE": 1}}, "MODEL.WINDOW_SIZE", "between 2 and 8"),
        ({"MODEL": {"DEFORMABLE_GROUPS": 7}}, "MODEL.DEFORMABLE_GROUPS", "do not divide"),
        ({"MODEL": {"INDEP_RECONSTS": [3]}}, "MODEL.INDEP_RECONSTS", "not a stage-8 group"),
        ({"TRAIN": {"AMP_DTYPE": "float8"}}, "TRAIN.AMP_DTYPE", "one of"),
        ({"TRAIN": {"LR": float("nan")}}, "TRAIN.LR", "finite"),
        ({"TRAIN": {"BETAS": [0.9]}}, "TRAIN.BETAS", "expected 2 entries"),
        ({"DATA": {"CLIP_LEN": 0}}, "DATA.CLIP_LEN", ">= 1"),
        ({"DATA": []}, "DATA", "expected a mapping"),
    ],
)
def test_bad_config_names_the_key_path(d: dict, path: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        VRTSpikeConfig.from_dict(d)
    msg = str(info.value)
    assert msg.startswith(path + ":"), msg
    assert words in msg


def test_yaml_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("MODEL: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: malformed YAML"):
        VRTSpikeConfig.from_yaml(bad)
    bad.write_text("MODEL:\n  WINDOW: 7\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: MODEL.WINDOW: unknown key"):
        VRTSpikeConfig.from_yaml(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        VRTSpikeConfig.from_yaml(tmp_path / "missing.yaml")


def test_with_overrides() -> None:
    cfg = VRTSpikeConfig().with_overrides({"MODEL.FUSE.CHUNK_SIZE": 96, "DATA.CLIP_LEN": 3})
    assert cfg.model.fuse.chunk_size == 96 and cfg.data.clip_len == 3
    with pytest.raises(ConfigError, match="MODEL.FUSE.NOPE: unknown config key"):
        cfg.with_overrides({"MODEL.FUSE.NOPE": 1})
    with pytest.raises(ConfigError, match="MODEL.FUSE: unknown config key"):
        cfg.with_overrides({"MODEL.FUSE": 1})
    with pytest.raises(ConfigError, match="MODEL.FUSE.HEADS"):
        cfg.with_overrides({"MODEL.FUSE.HEADS": 7})


def test_spike_heads_only_checked_where_used() -> None:
    # fusion heads must divide fused stages only; stage 5's width can be anything then
    cfg = VRTSpikeConfig().with_overrides(
        {"MODEL.EMBED_DIMS": [96, 96, 96, 96, 90, 96, 96, 96], "MODEL.DEFORMABLE_GROUPS": 6}
    )
    assert cfg.model.embed_dims[4] == 90
    with pytest.raises(ConfigError, match="MODEL.FUSE.HEADS: 4 heads do not divide stage 5"):
        cfg.with_overrides({"MODEL.FUSE.STAGES": [1, 5]})
