"""Spike camera model: integrate-and-fire on linear luminance.

Each pixel adds ``gain * luminance + dark_current`` (plus optional shot noise) to its potential
at every readout; when the potential reaches ``threshold`` the pixel fires and the threshold is
subtracted (not reset to zero, so no charge is lost); the synchronous readout reports at most one
spike per pixel per readout, so charge beyond one threshold per readout saturates. The initial
potential is uniform in ``[0, threshold)``, which desynchronises the pixels as on a real sensor.
A white pixel (luminance 1, gain 1) therefore fires at ``1 / threshold`` spikes per readout.

The simulator loops over readouts with in-place float32 array operations over all pixels
(the potential stays below twice the threshold, so float32 is exact enough).
"""

from __future__ import annotations

import logging
import math

import numpy as np

from search.data.errors import DataError

__all__ = ["simulate_spikes"]

logger = logging.getLogger(__name__)


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _check_map(name: str, value: float | np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim not in (0, 2) or (arr.ndim == 2 and arr.shape != hw):
        raise DataError(f"{name} must be a scalar or an (H, W) = {hw} map, got shape {arr.shape}")
    if np.any(arr < 0):
        raise DataError(f"{name} must be >= 0")
    return arr


def simulate_spikes(
    luminance: np.ndarray,
    *,
    threshold: float,
    seed: int | np.random.Generator | None = 0,
    gain: float | np.ndarray = 1.0,
    dark_current: float | np.ndarray = 0.0,
    shot_noise: float = 0.0,
    extra_spike_rate: float = 0.0,
    repeat: int = 1,
    initial_potential: np.ndarray | None = None,
) -> np.ndarray:
    """Simulate a spike stream from linear luminance.

    Args:
        luminance: Float array (N, H, W) in [0, 1], linear light, one row per readout (or per
            ``repeat`` readouts).
        threshold: Firing threshold in luminance-readouts; white fires at ``gain / threshold``
            spikes per readout (the white firing rate), so 1 to 4 gives rates 1 to 0.25.
        seed: Seed or generator for the initial potential and the noise (deterministic).
        gain: Per-pixel gain, a scalar or an (H, W) map (fixed-pattern noise around 1).
        dark_current: Charge added per readout without light, a scalar or an (H, W) map, in
            luminance units (a black pixel fires at ``dark_current / threshold``).
        shot_noise: Photon shot noise: each readout's charge ``q`` gets zero-mean noise of
            standard deviation ``shot_noise * sqrt(q)`` (0 disables it).
        extra_spike_rate: Probability per pixel and readout of a spurious spike OR-ed into the
            output (readout noise; it does not touch the potential).
        repeat: Readouts per luminance row (the row's light is held for ``repeat`` readouts).
        initial_potential: (H, W) start potential in [0, threshold); default uniform random.

    Returns:
        Bool array (N * repeat, H, W), True where a pixel fired.

    Raises:
        DataError: bad shapes or out-of-range parameters.
    """
    lum = np.asarray(luminance)
    if lum.ndim != 3:
        raise DataError(f"luminance must be (N, H, W), got shape {lum.shape}")
    if not threshold > 0:
        raise DataError(f"threshold must be > 0, got {threshold}")
    if repeat < 1:
        raise DataError(f"repeat must be >= 1, got {repeat}")
    if shot_noise < 0 or not 0 <= extra_spike_rate <= 1:
        raise DataError("shot_noise must be >= 0 and extra_spike_rate in [0, 1]")
    n, h, w = lum.shape
    gain_map = _check_map("gain", gain, (h, w))
    dark_map = _check_map("dark_current", dark_current, (h, w))
    rng = _rng(seed)
    if initial_potential is None:
        potential = rng.uniform(0.0, threshold, size=(h, w))  # (H, W)
    else:
        potential = np.asarray(initial_potential, dtype=np.float64)
        if potential.shape != (h, w):
            raise DataError(f"initial_potential must be (H, W) = {(h, w)}")

    gain32 = gain_map.astype(np.float32)
    dark32 = dark_map.astype(np.float32)
    theta = np.float32(threshold)
    u = potential.astype(np.float32)  # (H, W), stays in [0, 2 * threshold)
    out = np.empty((n * repeat, h, w), dtype=bool)
    noise = np.empty((repeat, h, w), dtype=np.float32)
    charge = np.empty((h, w), dtype=np.float32)
    for row in range(n):
        np.clip(lum[row], 0.0, 1.0, out=charge, casting="unsafe")
        charge *= gain32
        charge += dark32  # (H, W) expected charge per readout
        if shot_noise > 0:
            # zero-mean noise of std shot_noise * sqrt(charge): uniform with that variance is
            # much cheaper than Gaussian and the sum over the readouts between spikes is
            # Gaussian-like anyway
            rng.random(out=noise, dtype=np.float32)
            noise -= np.float32(0.5)
            noise *= np.float32(shot_noise * math.sqrt(12.0)) * np.sqrt(charge)
            noise += charge
        else:
            noise[:] = charge
        np.clip(noise, 0.0, theta, out=noise)  # at most one threshold of charge per readout
        for j in range(repeat):
            fired = out[row * repeat + j]  # (H, W) view
            u += noise[j]
            np.greater_equal(u, theta, out=fired)
            u -= theta * fired
    if extra_spike_rate > 0:  # spurious spikes: Bernoulli per pixel-readout, drawn sparsely
        total = out.size
        hits = rng.integers(0, total, size=rng.binomial(total, extra_spike_rate))
        out.reshape(-1)[hits] = True
    logger.debug("simulated %d readouts of %dx%d, mean rate %.3f", n * repeat, h, w, out.mean())
    return out
