"""What the data leaves to gain: the reference restorations, their scores and the stats command."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

import search.measure.budgets as budgets
from search.data import DataError, SyntheticSpec, generate_clip
from search.data.blur import frames_psnr
from search.data.cli import main
from search.data.stats import (
    DataStats,
    central_bins,
    dataset_stats,
    ratio_fusion,
    spike_luminance,
    synthetic_val_stats,
)

SPEC = SyntheticSpec(height=32, width=32, clip_len=3, num_bins=4, num_train=0, num_val=4)


@pytest.mark.parametrize(
    ("k", "bins"), [(1, (0, 1)), (2, (0, 2)), (4, (1, 3)), (5, (1, 4)), (8, (2, 6)), (32, (8, 24))]
)
def test_central_bins_are_the_centred_half(k: int, bins: tuple[int, int]) -> None:
    central = central_bins(k)
    assert (central.start, central.stop) == bins
    assert central.start == k - central.stop  # symmetric about the exposure's middle


def test_static_spikes_give_back_the_luminance_and_the_blurry_frame() -> None:
    rng = np.random.default_rng(0)
    blurry_lin = rng.uniform(0.05, 0.9, size=(2, 3, 6, 7))
    lum = np.einsum("tchw,c->thw", blurry_lin, [0.299, 0.587, 0.114])
    voxels = np.repeat(0.4 * lum[:, None], 4, axis=1)  # (T, K, H, W): every bin the same rate
    np.testing.assert_allclose(spike_luminance(voxels, blurry_lin), lum, rtol=1e-6)
    fused = ratio_fusion(voxels, blurry_lin, bin_readouts=8)
    np.testing.assert_allclose(fused, blurry_lin, rtol=1e-12)  # nothing moved: ratio 1


@pytest.fixture(scope="module")
def stats() -> DataStats:
    return synthetic_val_stats(SPEC, num_clips=4, label="tiny")


def test_stats_of_a_tiny_set(stats: DataStats) -> None:
    """Measured: blurry 26.56, blurry grey 27.56, spike-only grey 24.51, fusion 27.72 dB."""
    assert (stats.num_clips, stats.frame_size, stats.clip_len) == (4, (32, 32), 3)
    assert stats.num_bins == 4 and stats.central == (1, 3)
    for field in ("blurry", "blurry_grey", "spike_grey", "fusion"):
        s = getattr(stats, field)
        assert all(math.isfinite(v) for v in (s.mean, s.min, s.max))
        assert 10 < s.min <= s.mean <= s.max < 50
    clips = [generate_clip(SPEC, split="val", index=i) for i in range(4)]
    values = [frames_psnr(c.blurry, c.sharp) for c in clips]
    assert stats.blurry.mean == pytest.approx(np.mean(values))
    assert stats.blurry.min == pytest.approx(min(values))
    assert stats.fusion.mean > stats.blurry.mean + 0.5  # the spikes hold the sharp instant


def test_no_clips_is_an_error() -> None:
    with pytest.raises(DataError, match="no clips"):
        dataset_stats([], label="empty", bin_readouts=[])


def test_stats_command_prints_a_row_per_budget(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    smoke = budgets.get_budget("smoke")
    tiny = dataclasses.replace(smoke, name="tiny", data_size=24, crop_size=24, num_val_clips=2)
    monkeypatch.setattr(budgets, "BUDGETS", {"smoke": smoke, "tiny": tiny})  # no gpu set here
    monkeypatch.chdir(tmp_path)
    assert main(["stats"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("PSNR (dB) vs the sharp frame")
    assert any(line.startswith("  spike-only") for line in out)
    rows = {line.split()[0]: line for line in out if line.split()[0] in ("smoke", "tiny")}
    assert rows["smoke"].split()[1:6] == ["32x32", "3", "4", "1-2", "1"]
    assert rows["tiny"].split()[1:6] == ["24x24", "3", "4", "1-2", "2"]
    assert main(["stats", "--budget", "tiny"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()][-1] == "tiny"
    assert not list(tmp_path.iterdir())  # scored without writing a cache


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["stats", "--budget", "nope"], "unknown budget 'nope'"),
        (["stats", "--seed", "-1"], "seed"),
        (["stats", "--seed", "x"], "invalid int"),
    ],
)
def test_stats_command_bad_input(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(args) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert captured.out == ""
