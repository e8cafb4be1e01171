"""Real-data layout: the write-synthetic command, the Spk-GoPro loader end to end, clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from search.data import DataError, SyntheticSpec, load_spk_gopro, load_synthetic, write_dat
from search.data.cli import main
from search.data.images import read_rgb, write_rgb

ARGS = ["--clips", "2", "--val-clips", "1", "--size", "24x40", "--clip-len", "3", "--bins", "4"]
SPEC = SyntheticSpec(height=24, width=40, clip_len=3, num_bins=4, num_train=2, num_val=1, seed=5)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("spk") / "set"
    assert main(["write-synthetic", "--out", str(out), *ARGS, "--seed", "5"]) == 0
    return out


def test_layout_on_disk(written: Path) -> None:
    clip = written / "train" / "clip_0001"
    assert sorted(p.name for p in (clip / "blur").iterdir()) == [
        "000000.png",
        "000001.png",
        "000002.png",
    ]
    assert (
        len(list((clip / "sharp").glob("*.png"))) == 3
        and len(list((clip / "spike").glob("*.dat"))) == 3
    )
    config = yaml.safe_load((written / "config.yaml").read_text())
    assert (config["spike_h"], config["spike_w"], config["spike_flipud"]) == (24, 40, True)
    assert config["synthetic"]["spec"] == SPEC.to_dict()


def test_loader_returns_the_cached_synthetic_items(written: Path, tmp_path: Path) -> None:
    splits = load_synthetic(SPEC, cache_dir=tmp_path)
    for split, ref in (("train", splits.train.with_augment(flips=False)), ("test", splits.val)):
        data = load_spk_gopro(written, split=split, clip_len=3, num_bins=4)
        assert len(data) == len(ref) and data.frame_size == (24, 40)
        for i in range(len(data)):
            torch.testing.assert_close(data[i], ref[i], rtol=0, atol=0)


def test_loader_windows_crops_and_flips(written: Path) -> None:
    data = load_spk_gopro(written, split="train", clip_len=2, num_bins=4, stride=1)
    assert len(data) == 2 * 2  # two clips of 3 frames, windows of 2 with stride 1
    full = data[1]
    assert full["blurry"].shape == (2, 3, 24, 40) and full["spike"].shape == (2, 4, 24, 40)
    cropped = data.with_crop(16).with_augment(flips=True, seed=1)
    a = cropped[1]
    torch.testing.assert_close(a, cropped[1])
    assert a["sharp"].shape == (2, 3, 16, 16) and a["spike"].shape == (2, 4, 16, 16)


def test_kair_layout_and_separate_spike_root(written: Path, tmp_path: Path) -> None:
    rgb, spk = tmp_path / "GOPRO_Large", tmp_path / "GOPRO_Large_spike_seq"
    for clip in (written / "test").iterdir():
        shutil.copytree(clip / "blur", rgb / "test_GT_blurred" / clip.name)
        shutil.copytree(clip / "sharp", rgb / "test_GT" / clip.name)
        shutil.copytree(clip / "spike", spk / "test" / clip.name / "spike")
    shutil.copy(written / "config.yaml", spk / "config.yaml")
    kair = load_spk_gopro(rgb, spike_root=spk, split="test", clip_len=3, num_bins=4)
    gopro = load_spk_gopro(written, split="test", clip_len=3, num_bins=4)
    torch.testing.assert_close(kair[0], gopro[0])


def test_half_resolution_spikes_are_resized_to_the_rgb_crop(tmp_path: Path) -> None:
    h, w = 8, 12  # RGB 8x12, spikes 4x6: left half of the sensor always fires, right half never
    clip = tmp_path / "train" / "c0"
    spikes = np.zeros((10, 4, 6), dtype=bool)
    spikes[:, :, :3] = True
    for t in range(2):
        write_rgb(clip / "blur" / f"{t:03d}.png", np.full((3, h, w), 128, np.uint8))
        write_rgb(clip / "sharp" / f"{t:03d}.png", np.full((3, h, w), 128, np.uint8))
        write_dat(clip / "spike" / f"{t:03d}.dat", spikes)
    (tmp_path / "config.yaml").write_text("spike_h: 4\nspike_w: 6\n")
    data = load_spk_gopro(tmp_path, split="train", clip_len=2, num_bins=2, normalise=False)
    spike = data[0]["spike"]
    assert spike.shape == (2, 2, 8, 12)
    assert torch.all(spike[..., :5] == 1) and torch.all(spike[..., 7:] == 0)
    torch.testing.assert_close(spike[0, 0, 0, 5:7], torch.tensor([0.75, 0.25]))  # bilinear edge
    crop = data.with_crop(4).sample(0, generator=torch.Generator().manual_seed(0))["spike"]
    assert crop.shape == (2, 2, 4, 4) and set(crop.unique().tolist()) <= {0.0, 0.25, 0.75, 1.0}


def test_errors_name_the_file_and_the_expectation(written: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(written, bad)
    (bad / "config.yaml").unlink()
    with pytest.raises(DataError, match=r"config\.yaml.*spike_h and spike_w"):
        load_spk_gopro(bad, split="train", clip_len=3, num_bins=4)
    shutil.copy(written / "config.yaml", bad / "config.yaml")
    (bad / "train" / "clip_0000" / "sharp" / "000002.png").unlink()
    with pytest.raises(
        DataError, match=r"clip 'clip_0000': mismatched frame counts: 3 blurry .* 2 sharp"
    ):
        load_spk_gopro(bad, split="train", clip_len=3, num_bins=4)
    shutil.rmtree(bad / "train" / "clip_0000")
    dat = bad / "train" / "clip_0001" / "spike" / "000001.dat"
    dat.write_bytes(dat.read_bytes()[:-7])
    with pytest.raises(DataError, match=r"000001\.dat: \d+ bytes is not a whole number of 24x40"):
        load_spk_gopro(bad, split="train", clip_len=3, num_bins=4)
    with pytest.raises(DataError, match="no RGB frames for split 'val'"):
        load_spk_gopro(written, split="val", clip_len=3, num_bins=4)
    with pytest.raises(DataError, match="no clip has 9 frames"):
        load_spk_gopro(written, split="train", clip_len=9, num_bins=4)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["write-synthetic", "--out", "{out}", "--size", "big"], "size must look like HxW"),
        (["write-synthetic", "--out", "{out}", "--clip-len", "0"], "SyntheticSpec.clip_len"),
        (["write-synthetic", "--out", "{out}", "--clips", "-1"], "--clips"),
        (["write-synthetic"], "required: --out"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([a.replace("{out}", str(tmp_path / "o")) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_cli_refuses_a_non_empty_folder(written: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["write-synthetic", "--out", str(written)]) == 2
    assert "not an empty folder" in capsys.readouterr().err


def test_png_round_trip_both_layouts(tmp_path: Path) -> None:
    img = np.random.default_rng(0).integers(0, 256, size=(3, 5, 7), dtype=np.uint8)
    write_rgb(tmp_path / "a.png", img)
    write_rgb(tmp_path / "b.png", img.transpose(1, 2, 0))
    np.testing.assert_array_equal(read_rgb(tmp_path / "a.png"), img)
    np.testing.assert_array_equal(read_rgb(tmp_path / "b.png"), img)
    with pytest.raises(DataError, match="uint8"):
        write_rgb(tmp_path / "c.png", img.astype(np.float32))
    (tmp_path / "d.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"d\.png: not a readable image"):
        read_rgb(tmp_path / "d.png")
