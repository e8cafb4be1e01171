"""The spike camera model: rates, regularity (ISI CV), noise options, determinism, TFP."""

from __future__ import annotations

import numpy as np
import pytest

from search.data import DataError, interspike_cv, simulate_spikes, tfp_voxels, voxel_windows


def _ramp(n: int, h: int = 16, w: int = 32) -> np.ndarray:
    levels = np.linspace(0.05, 1.0, w)
    return np.broadcast_to(levels, (n, h, w)).copy()  # (N, H, W) static scene


@pytest.mark.parametrize("threshold", [1.0, 2.0, 4.0])
def test_static_rate_matches_intensity_over_threshold(threshold: float) -> None:
    n = 400
    lum = _ramp(n)
    spikes = simulate_spikes(lum, threshold=threshold, seed=3)
    assert spikes.dtype == bool and spikes.shape == lum.shape
    rate = spikes.mean(axis=0)
    # count = floor((u0 + n I) / theta) exactly, so the rate is within 1/n of I / theta
    assert np.abs(rate - lum[0] / threshold).max() <= 1 / n + 1e-9


def test_interspike_intervals_are_regular_not_poisson() -> None:
    lum = _ramp(500) * 0.6  # rates 0.015 .. 0.3 at threshold 2
    spikes = simulate_spikes(lum, threshold=2.0, seed=0)
    cv = np.nanmedian(interspike_cv(spikes))
    bernoulli = np.random.default_rng(0).random(lum.shape) < lum / 2.0
    cv_poisson = np.nanmedian(interspike_cv(bernoulli))
    assert cv < 0.2  # a real static capture: about 0.09
    assert cv_poisson > 0.8  # a Poisson generator: about 1
    noisy = simulate_spikes(lum, threshold=2.0, seed=0, shot_noise=0.2)
    assert cv < np.nanmedian(interspike_cv(noisy)) < 0.5  # shot noise jitters, stays regular


def test_same_seed_same_stream_and_seed_matters() -> None:
    lum = np.random.default_rng(1).random((50, 8, 8))
    kwargs = dict(threshold=1.5, shot_noise=0.1, extra_spike_rate=0.01, dark_current=0.02)
    a = simulate_spikes(lum, seed=7, **kwargs)
    np.testing.assert_array_equal(a, simulate_spikes(lum, seed=7, **kwargs))
    assert not np.array_equal(a, simulate_spikes(lum, seed=8, **kwargs))


def test_at_most_one_spike_per_readout_and_saturation() -> None:
    lum = np.ones((100, 4, 4))
    spikes = simulate_spikes(lum, threshold=0.5, seed=0)  # 2 thresholds per readout: saturates
    assert spikes.all()


def test_noise_options() -> None:
    n, h, w = 2000, 8, 8
    dark = simulate_spikes(np.zeros((n, h, w)), threshold=2.0, dark_current=0.02, seed=0)
    assert abs(dark.mean() - 0.01) < 0.001  # black pixels fire at dark_current / threshold
    extra = simulate_spikes(np.zeros((n, h, w)), threshold=2.0, extra_spike_rate=0.005, seed=0)
    assert abs(extra.mean() - 0.005) < 0.001
    gain = np.full((h, w), 1.0)
    gain[:, : w // 2] = 0.5
    half = simulate_spikes(np.full((n, h, w), 0.8), threshold=1.0, gain=gain, seed=0).mean(axis=0)
    assert np.allclose(half[:, : w // 2], 0.4, atol=1e-3) and np.allclose(
        half[:, w // 2 :], 0.8, atol=1e-3
    )


def test_repeat_holds_each_row() -> None:
    lum = np.random.default_rng(0).random((10, 4, 4))
    a = simulate_spikes(lum, threshold=2.0, seed=1, repeat=3)
    b = simulate_spikes(np.repeat(lum, 3, axis=0), threshold=2.0, seed=1)
    assert a.shape == (30, 4, 4)
    np.testing.assert_array_equal(a, b)


def test_bad_arguments() -> None:
    with pytest.raises(DataError, match=r"\(N, H, W\)"):
        simulate_spikes(np.zeros((4, 4)), threshold=1.0)
    with pytest.raises(DataError, match="threshold"):
        simulate_spikes(np.zeros((1, 4, 4)), threshold=0.0)
    with pytest.raises(DataError, match="gain"):
        simulate_spikes(np.zeros((1, 4, 4)), threshold=1.0, gain=np.ones((3, 3)))


def test_voxel_windows_and_tfp() -> None:
    win = voxel_windows(8, 32, 4, total=64)
    np.testing.assert_array_equal(win, [[8, 16], [16, 24], [24, 32], [32, 40]])
    shifted = voxel_windows(0, 8, 2, window=9, total=20)  # clamped inside the stream
    assert shifted[:, 0].min() == 0 and (shifted[:, 1] - shifted[:, 0] == 9).all()
    spikes = np.zeros((40, 2, 2), dtype=bool)
    spikes[8:16:2] = True  # 4 spikes in the first bin
    vox = tfp_voxels(spikes, win)
    assert vox.shape == (4, 2, 2) and vox.dtype == np.float32
    np.testing.assert_allclose(vox[:, 0, 0], [0.5, 0, 0, 0])


def test_tfp_reconstructs_static_luminance() -> None:
    lum = np.random.default_rng(2).uniform(0.05, 1.0, size=(1, 24, 24))
    spikes = simulate_spikes(np.repeat(lum, 256, axis=0), threshold=2.0, seed=0)
    est = tfp_voxels(spikes, np.array([0, 256])) * 2.0  # rate * threshold = luminance
    psnr = 10 * np.log10(1 / np.mean((est - lum[0]) ** 2))
    assert psnr > 40  # quantisation step 2/256 -> error below 1/128 per pixel: measured 50 dB
