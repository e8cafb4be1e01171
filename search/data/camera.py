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


def _check_args(
    lum: np.ndarray, threshold: float, repeat: int, shot_noise: float, extra_spike_rate: float
) -> None:
    """Raise DataError for a luminance that is not (N, H, W) or an out-of-range scalar."""
    if lum.ndim != 3:
        raise DataError(f"luminance must be (N, H, W), got shape {lum.shape}")
    if not threshold > 0:
        raise DataError(f"threshold must be > 0, got {threshold}")
    if repeat < 1:
        raise DataError(f"repeat must be >= 1, got {repeat}")
    if shot_noise < 0 or not 0 <= extra_spike_rate <= 1:
        raise DataError("shot_noise must be >= 0 and extra_spike_rate in [0, 1]")


def _start_potential(
    rng: np.random.Generator,
    initial_potential: np.ndarray | None,
    *,
    threshold: float,
    hw: tuple[int, int],
) -> np.ndarray:
    """Float64 (H, W) start potential: ``initial_potential``, or uniform in [0, threshold)."""
    if initial_potential is None:
        return rng.uniform(0.0, threshold, size=hw)  # (H, W)
    potential = np.asarray(initial_potential, dtype=np.float64)
    if potential.shape != hw:
        raise DataError(f"initial_potential must be (H, W) = {hw}")
    return potential


def _readout_charge(
    charge: np.ndarray,
    rng: np.random.Generator,
    *,
    shot_noise: float,
    theta: np.float32,
    out: np.ndarray,
) -> None:
    """Fill ``out`` with each readout's charge: the expected charge, shot noise, saturation.

    Args:
        charge: Float32 (H, W) expected charge per readout.
        rng: Generator of the shot noise.
        shot_noise: Shot-noise factor (0: no noise, no draws).
        theta: The firing threshold (the most charge one readout can hold).
        out: Float32 (R, H, W), written in place.
    """
    if shot_noise > 0:
        # zero-mean noise of std shot_noise * sqrt(charge): uniform with that variance is
        # much cheaper than Gaussian and the sum over the readouts between spikes is
        # Gaussian-like anyway
        rng.random(out=out, dtype=np.float32)
        out -= np.float32(0.5)
        out *= np.float32(shot_noise * math.sqrt(12.0)) * np.sqrt(charge)
        out += charge
    else:
        out[:] = charge
    np.clip(out, 0.0, theta, out=out)  # at most one threshold of charge per readout


def _integrate_and_fire(
    lum: np.ndarray,
    potential: np.ndarray,
    rng: np.random.Generator,
    *,
    threshold: float,
    gain: np.ndarray,
    dark_current: np.ndarray,
    shot_noise: float,
    repeat: int,
) -> np.ndarray:
    """Run the pixels' integrate-and-fire over every readout (no spurious spikes yet).

    Args:
        lum: Luminance (N, H, W), one row per ``repeat`` readouts.
        potential: Float64 (H, W) start potential.
        rng: Generator of the shot noise.
        threshold: Firing threshold.
        gain: Float64 scalar or (H, W) gain.
        dark_current: Float64 scalar or (H, W) dark current.
        shot_noise: Shot-noise factor.
        repeat: Readouts per luminance row R.

    Returns:
        Bool (N * R, H, W), True where a pixel fired.
    """
    n, h, w = lum.shape
    gain32 = gain.astype(np.float32)
    dark32 = dark_current.astype(np.float32)
    theta = np.float32(threshold)
    u = potential.astype(np.float32)  # (H, W), stays in [0, 2 * threshold)
    out = np.empty((n * repeat, h, w), dtype=bool)
    noise = np.empty((repeat, h, w), dtype=np.float32)
    charge = np.empty((h, w), dtype=np.float32)
    for row in range(n):
        np.clip(lum[row], 0.0, 1.0, out=charge, casting="unsafe")
        charge *= gain32
        charge += dark32  # (H, W) expected charge per readout
        _readout_charge(charge, rng, shot_noise=shot_noise, theta=theta, out=noise)
        for j in range(repeat):
            fired = out[row * repeat + j]  # (H, W) view
            u += noise[j]
            np.greater_equal(u, theta, out=fired)
            u -= theta * fired
    return out


def _add_spurious_spikes(spikes: np.ndarray, rng: np.random.Generator, rate: float) -> None:
    """OR spurious spikes into ``spikes`` in place: Bernoulli(``rate``) per pixel-readout.

    Drawn sparsely: the number of hits (binomial), then where they fall.
    """
    total = spikes.size
    hits = rng.integers(0, total, size=rng.binomial(total, rate))
    spikes.reshape(-1)[hits] = True


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
    _check_args(lum, threshold, repeat, shot_noise, extra_spike_rate)
    n, h, w = lum.shape
    gain_map = _check_map("gain", gain, (h, w))
    dark_map = _check_map("dark_current", dark_current, (h, w))
    rng = _rng(seed)
    potential = _start_potential(rng, initial_potential, threshold=threshold, hw=(h, w))
    out = _integrate_and_fire(
        lum,
        potential,
        rng,
        threshold=threshold,
        gain=gain_map,
        dark_current=dark_map,
        shot_noise=shot_noise,
        repeat=repeat,
    )  # (N * repeat, H, W)
    if extra_spike_rate > 0:
        _add_spurious_spikes(out, rng, extra_spike_rate)
    logger.debug("simulated %d readouts of %dx%d, mean rate %.3f", n * repeat, h, w, out.mean())
    return out
