"""Blur calibration: the solver, the PSNR it uses, and GoPro-strength blur in generated clips."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

import search.data.synthetic as synthetic
from search.data import SyntheticSpec, generate_clip
from search.data.blur import frames_psnr, solve_motion_scale
from search.metrics import psnr

# smoke-budget-sized clips, eight per split: the defaults' blur calibration at 32x32
SPEC = SyntheticSpec(height=32, width=32, clip_len=3, num_bins=4, num_train=8, num_val=8)


def _psnr_curve(scale: float) -> float:
    """PSNR falling ~4.5 dB per doubling of the motion, flattening for fast motion."""
    return 40.0 - 15.0 * math.log10(1.0 + 3.0 * scale)


@pytest.mark.parametrize("target", [22.0, 26.0, 31.5])
def test_solver_reaches_the_target_in_a_few_renders(target: float) -> None:
    calls: list[float] = []

    def psnr_at(scale: float) -> float:
        calls.append(scale)
        return _psnr_curve(scale)

    scale, value = solve_motion_scale(psnr_at, target=target, max_scale=1e3, tol=0.05)
    assert abs(value - target) <= 0.05 and value == _psnr_curve(scale)
    assert len(calls) <= 7


def test_solver_stops_at_the_bound_when_the_target_is_beyond_it() -> None:
    scale, value = solve_motion_scale(_psnr_curve, target=10.0, max_scale=4.0)
    assert scale == 4.0 and value == pytest.approx(_psnr_curve(4.0))


def test_frames_psnr_is_the_metrics_psnr() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(3, 3, 8, 9), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-9, 10, size=a.shape), 0, 255).astype(np.uint8)
    expected = psnr(torch.from_numpy(a / 255.0), torch.from_numpy(b / 255.0))
    assert frames_psnr(a, b) == pytest.approx(expected, abs=1e-9)


@pytest.fixture(scope="module")
def clips() -> dict[str, list[synthetic.SyntheticClip]]:
    return {s: [generate_clip(SPEC, split=s, index=i) for i in range(8)] for s in ("train", "val")}


@pytest.mark.parametrize("split", ["train", "val"])
def test_blur_is_gopro_strength_with_a_spread(
    clips: dict[str, list[synthetic.SyntheticClip]], split: str
) -> None:
    """Mean blurry-input PSNR of 8 clips in the 25-27 dB band of GoPro's blurry frames.

    Measured: train 26.64 dB (25.21 .. 28.25), val 26.66 dB (24.59 .. 28.27).
    """
    values = np.array([frames_psnr(c.blurry, c.sharp) for c in clips[split]])
    assert 25.0 <= values.mean() <= 27.0
    assert values.max() - values.min() > 2.0  # clips differ, not all at one level
    for clip, value in zip(clips[split], values, strict=True):
        assert clip.params.blur_psnr_db == pytest.approx(value)
        lo, hi = SPEC.blur_psnr_range  # type: ignore[misc]
        assert lo <= clip.params.blur_target_db <= hi  # type: ignore[operator]


def test_clips_meet_their_targets_unless_the_motion_hits_its_cap(
    clips: dict[str, list[synthetic.SyntheticClip]],
) -> None:
    """Measured: 15 of 16 within 0.4 dB; val clip 1 stopped at the speed cap, 3 dB sharper."""
    met = 0
    for clip in clips["train"] + clips["val"]:
        p = clip.params
        error = p.blur_psnr_db - p.blur_target_db  # type: ignore[operator]
        fastest = max(p.speed_px, p.sprite_speed_px if p.num_sprites else 0.0)
        capped = fastest >= SPEC.max_speed * 32 * (1 - 1e-9)
        met += abs(error) <= 0.4
        assert abs(error) <= 0.4 or (capped and error > 0)
    assert met >= 14


def test_validation_targets_spread_evenly_from_the_centre(
    clips: dict[str, list[synthetic.SyntheticClip]],
) -> None:
    targets = [c.params.blur_target_db for c in clips["val"]]
    assert targets[0] == pytest.approx(26.0)  # a one-clip validation set sits at the centre
    assert np.mean(targets[:3]) == pytest.approx(26.0, abs=0.5)
    assert np.mean(targets) == pytest.approx(26.0, abs=0.3)


def test_uncalibrated_spec_keeps_the_drawn_motion() -> None:
    spec = dataclasses.replace(SPEC, blur_psnr_range=None)
    clip = generate_clip(spec, split="train", index=0)
    assert clip.params.blur_target_db is None and clip.params.motion_scale == 1.0


def test_generator_version_2_never_reuses_version_1_caches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Folder names version 1 gave the cpu and smoke budgets' data (computed with its code)."""
    cpu = SyntheticSpec(height=64, width=64, clip_len=3, num_bins=8, num_train=32, num_val=3)
    smoke = SyntheticSpec(height=32, width=32, clip_len=3, num_bins=4, num_train=4, num_val=1)
    assert cpu.folder_name() != "syn-64x64-t3-k8-n32+3-s0-b144b5b327178bd2"
    assert smoke.folder_name() != "syn-32x32-t3-k4-n4+1-s0-590e39c6e746c062"
    assert synthetic.GENERATOR_VERSION == 2
    key = cpu.key()
    monkeypatch.setattr(synthetic, "GENERATOR_VERSION", 1)
    assert cpu.key() != key  # the version alone changes the key
