"""Synthetic blur + spike clips: the spec, the per-clip random draws and the clip generator.

Time line of a clip (``S = subframes_per_frame``, ``R = readouts_per_subframe``): the scene is
rendered at ``S`` sub-frames per RGB frame period; frame ``t``'s exposure is the ``E`` sub-frames
centred in its period (``E`` drawn per clip); the blurry frame is the mean of those sub-frames in
linear light, re-encoded with gamma 2.2; the sharp frame is the middle one; the spike camera
reads out ``R`` times per sub-frame through the whole clip, gaps included. The spike voxels of
frame ``t`` are ``K`` TFP bins over its exposure (:func:`search.data.spikes.voxel_windows`).

Blur strength: each clip draws a target blurry-input PSNR from ``blur_psnr_range`` and all of
its motion is scaled by one factor until its blurry frames score that target against its sharp
frames (:mod:`search.data.blur`), so clips blur like GoPro's whatever their texture. Validation
clips take evenly spread targets (a golden-ratio sequence starting at the range's centre), so a
few of them already average to the centre; training clips draw theirs at random.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from model.errors import ConfigError
from search.data.blur import frames_psnr, solve_motion_scale
from search.data.camera import simulate_spikes
from search.data.scene import SceneMotion, make_sprite, render_scene, resize_texture
from search.data.spikes import LUMA, normalise_voxels, spike_gain, tfp_voxels, voxel_windows
from search.data.textures import (
    BLUR_TEXTURES,
    PHOTO_TEXTURES,
    PROCEDURAL,
    dead_leaves,
    photo_texture,
)

__all__ = [
    "GENERATOR_VERSION",
    "SyntheticSpec",
    "ClipParams",
    "SyntheticClip",
    "generate_clip",
]

logger = logging.getLogger(__name__)

#: Bumped whenever generation changes, so caches of older output are not reused.
GENERATOR_VERSION = 2
_SPLIT_CODES = {"train": 0, "val": 1}
_GOLDEN = (math.sqrt(5) - 1) / 2  # low-discrepancy step of the validation blur targets


@dataclass(frozen=True, kw_only=True)
class SyntheticSpec:
    """Everything that determines a synthetic data set; its :meth:`key` names the cache folder.

    Attributes:
        height: Frame height H.
        width: Frame width W.
        clip_len: RGB frames per clip T.
        num_bins: Spike voxel bins per RGB frame K.
        num_train: Training clips.
        num_val: Validation clips.
        seed: Master seed (clip ``i`` of a split depends only on ``(seed, split, i)``).
        subframes_per_frame: Scene renders per RGB frame period S.
        readouts_per_subframe: Spike readouts per sub-frame R.
        exposure_range: Exposure in sub-frames, drawn per clip (odd values preferred).
        white_rate_range: Spike firing rate of white per readout, drawn per clip.
        blur_psnr_range: Target blurry-input PSNR in dB (RGB, gamma-encoded, mean over the
            clip's frames), drawn per clip; the clip's motion is scaled to reach it (None: no
            scaling, the motion is as drawn below).
        max_speed: Fastest camera or sprite speed the scaling may reach, as a fraction of
            ``max(H, W)`` per frame period (clips of very smooth textures stop there, sharper
            than their target).
        motion_range: Camera speed as a fraction of ``max(H, W)`` per frame period, per clip,
            before the scaling (with ``blur_psnr_range`` it sets the mix of motions, not the
            blur).
        max_rotation_deg: Largest camera rotation speed, degrees per frame period (before the
            scaling).
        max_zoom: Largest camera zoom speed, log-scale per frame period (before the scaling).
        max_sprites: Largest number of independently moving sprites per clip (each clip's
            sprites move at 0.5-2 times its camera speed).
        sprite_size_range: Sprite size as a fraction of ``min(H, W)``.
        coverage_range: Fraction of the texture's short side the frame shows (texture zoom).
        procedural_fraction: Probability that a texture is procedural instead of a photograph.
        textures: Photograph names to draw from (any of ``textures.PHOTO_TEXTURES``; the
            default leaves out ``textures.SMOOTH_TEXTURES``).
        gain_std_max: Largest per-pixel gain spread (fixed-pattern noise), drawn per clip.
        dark_current_max: Largest mean dark current (luminance per readout), per clip.
        shot_noise_max: Largest shot-noise factor, per clip.
        extra_spike_rate_max: Largest spurious-spike probability per readout, per clip.
        gamma: Camera response exponent (linear = sRGB ** gamma).
        tfp_window: TFP window per voxel bin in readouts (None: the bin length rounded up, the
            windows kept inside the exposure; a number: windows may reach past the exposure).
    """

    height: int = 128
    width: int = 128
    clip_len: int = 5
    num_bins: int = 32
    num_train: int = 64
    num_val: int = 8
    seed: int = 0
    subframes_per_frame: int = 32
    readouts_per_subframe: int = 2
    exposure_range: tuple[int, int] = (21, 31)
    white_rate_range: tuple[float, float] = (0.25, 1.0)
    blur_psnr_range: tuple[float, float] | None = (23.5, 28.5)
    max_speed: float = 0.35
    motion_range: tuple[float, float] = (0.02, 0.15)
    max_rotation_deg: float = 2.0
    max_zoom: float = 0.03
    max_sprites: int = 3
    sprite_size_range: tuple[float, float] = (0.2, 0.45)
    coverage_range: tuple[float, float] = (0.35, 0.8)
    procedural_fraction: float = 0.2
    textures: tuple[str, ...] = field(default=BLUR_TEXTURES)
    gain_std_max: float = 0.05
    dark_current_max: float = 0.01
    shot_noise_max: float = 0.15
    extra_spike_rate_max: float = 0.005
    gamma: float = 2.2
    tfp_window: int | None = None

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"SyntheticSpec.{name}: {why}, got {getattr(self, name)!r}")

        for name in ("height", "width", "clip_len", "num_bins", "subframes_per_frame"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise bad(name, "must be a positive int")
        if min(self.height, self.width) < 8:
            raise bad("height", "frames must be at least 8x8")
        for name in ("num_train", "num_val", "seed", "max_sprites", "readouts_per_subframe"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise bad(name, "must be an int >= 0")
        if self.readouts_per_subframe < 1:
            raise bad("readouts_per_subframe", "must be >= 1")
        lo, hi = self.exposure_range
        if not 1 <= lo <= hi <= self.subframes_per_frame:
            raise bad("exposure_range", f"must satisfy 1 <= lo <= hi <= {self.subframes_per_frame}")
        ranges = {
            "white_rate_range": (1e-3, 1.0),
            "motion_range": (0.0, 1.0),
            "sprite_size_range": (0.01, 1.0),
            "coverage_range": (0.05, 1.0),
        }
        for name, (low, high) in ranges.items():
            a, b = getattr(self, name)
            if not low <= a <= b <= high:
                raise bad(name, f"must be (a, b) with {low} <= a <= b <= {high}")
        if self.blur_psnr_range is not None:
            a, b = self.blur_psnr_range
            if not 5.0 <= a <= b <= 60.0:
                raise bad("blur_psnr_range", "must be None or (a, b) with 5 <= a <= b <= 60")
        if not 0 < self.max_speed <= 2:
            raise bad("max_speed", "must be in (0, 2]")
        for name in ("gain_std_max", "dark_current_max", "shot_noise_max", "max_zoom"):
            if getattr(self, name) < 0:
                raise bad(name, "must be >= 0")
        if not 0 <= self.extra_spike_rate_max <= 1 or not 0 <= self.procedural_fraction <= 1:
            raise bad("procedural_fraction", "it and extra_spike_rate_max must be in [0, 1]")
        unknown = [t for t in self.textures if t not in PHOTO_TEXTURES]
        if unknown or (not self.textures and self.procedural_fraction < 1):
            raise bad("textures", f"unknown or empty; valid: {', '.join(PHOTO_TEXTURES)}")
        if self.gamma <= 0:
            raise bad("gamma", "must be > 0")
        if self.tfp_window is not None and not 1 <= self.tfp_window <= self.total_readouts:
            raise bad("tfp_window", f"must be None or in [1, {self.total_readouts}]")

    @property
    def total_readouts(self) -> int:
        """Spike readouts in a whole clip (``T * S * R``)."""
        return self.clip_len * self.subframes_per_frame * self.readouts_per_subframe

    def to_dict(self) -> dict[str, object]:
        """Plain JSON/YAML-friendly dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> SyntheticSpec:
        """Inverse of :meth:`to_dict`; unknown keys are a ConfigError naming them."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"SyntheticSpec: unknown keys {unknown}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kwargs)

    def key(self) -> str:
        """Stable 16-hex-digit hash of the spec and :data:`GENERATOR_VERSION`."""
        text = json.dumps({"v": GENERATOR_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def folder_name(self) -> str:
        """Readable, unique cache folder name."""
        return (
            f"syn-{self.height}x{self.width}-t{self.clip_len}-k{self.num_bins}-"
            f"n{self.num_train}+{self.num_val}-s{self.seed}-{self.key()}"
        )


@dataclass(frozen=True, kw_only=True)
class ClipParams:
    """The random draws of one clip (recorded next to the cached data).

    Speeds are per frame period, after the motion scaling; ``blur_target_db`` is the drawn
    target (None without ``blur_psnr_range``), ``motion_scale`` the factor found for it and
    ``blur_psnr_db`` the clip's blurry-input PSNR.
    """

    texture: str
    white_rate: float
    exposure: int
    speed_px: float
    rotation_rad: float
    zoom: float
    num_sprites: int
    sprite_speed_px: float
    gain_std: float
    dark_current: float
    shot_noise: float
    extra_spike_rate: float
    blur_target_db: float | None
    motion_scale: float
    blur_psnr_db: float


@dataclass(frozen=True, kw_only=True)
class SyntheticClip:
    """One generated clip.

    Attributes:
        blurry: uint8 (T, 3, H, W), gamma-encoded.
        sharp: uint8 (T, 3, H, W), gamma-encoded middle sub-frame of each exposure.
        spikes: bool (N, H, W), the whole clip's spike stream, ``N = T * S * R``.
        exposures: int64 (T, 2), each frame's exposure as a ``[start, stop)`` readout range.
        windows: int64 (T, K, 2), each voxel bin's TFP readout range.
        params: The clip's random draws.
    """

    blurry: np.ndarray
    sharp: np.ndarray
    spikes: np.ndarray
    exposures: np.ndarray
    windows: np.ndarray
    params: ClipParams

    def voxels(self) -> np.ndarray:
        """TFP spike voxels, float32 (T, K, H, W): raw firing rates in [0, 1]."""
        return tfp_voxels(self.spikes, self.windows)

    def normalised_voxels(self, gamma: float) -> np.ndarray:
        """The voxels a data set item holds (:func:`~search.data.spikes.normalise_voxels`)."""
        voxels = self.voxels()
        gain = spike_gain(voxels, self.blurry / np.float32(255), gamma=gamma)
        return normalise_voxels(voxels, gain, gamma=gamma)


def _blur_target(spec: SyntheticSpec, rng: np.random.Generator, split: str, index: int) -> float:
    assert spec.blur_psnr_range is not None
    lo, hi = spec.blur_psnr_range
    u = (0.5 + index * _GOLDEN) % 1.0 if split == "val" else rng.uniform(0, 1)
    return float(lo + u * (hi - lo))


def _draw_params(
    spec: SyntheticSpec, rng: np.random.Generator, split: str, index: int
) -> ClipParams:
    lo, hi = spec.exposure_range
    exposures = [e for e in range(lo, hi + 1) if e % 2 == 1] or list(range(lo, hi + 1))
    use_photo = spec.textures and rng.random() >= spec.procedural_fraction
    size = max(spec.height, spec.width)
    speed_px = float(rng.uniform(*spec.motion_range) * size)
    return ClipParams(
        texture=str(rng.choice(spec.textures)) if use_photo else PROCEDURAL,
        white_rate=float(rng.uniform(*spec.white_rate_range)),
        exposure=int(rng.choice(exposures)),
        speed_px=speed_px,
        rotation_rad=float(math.radians(spec.max_rotation_deg) * rng.uniform(0, 1)),
        zoom=float(spec.max_zoom * rng.uniform(0, 1)),
        num_sprites=int(rng.integers(0, spec.max_sprites + 1)),
        sprite_speed_px=float(rng.uniform(0.5, 2.0) * speed_px),
        gain_std=float(spec.gain_std_max * rng.uniform(0, 1)),
        dark_current=float(spec.dark_current_max * rng.uniform(0, 1)),
        shot_noise=float(spec.shot_noise_max * rng.uniform(0, 1)),
        extra_spike_rate=float(spec.extra_spike_rate_max * rng.uniform(0, 1)),
        blur_target_db=None
        if spec.blur_psnr_range is None
        else _blur_target(spec, rng, split, index),
        motion_scale=1.0,
        blur_psnr_db=math.nan,
    )


def _texture_patch(
    spec: SyntheticSpec, rng: np.random.Generator, name: str, *, out_h: int, out_w: int
) -> np.ndarray:
    """A (3, out_h, out_w) linear patch of texture ``name`` at a random place and zoom."""
    if name == PROCEDURAL:
        side = min(max(out_h, out_w), 512)  # dead leaves cost grows with area: cap, resize
        tex = dead_leaves(rng, side, side)
        return resize_texture(tex, max(out_h, out_w) / side)[:, :out_h, :out_w]
    src = photo_texture(name, gamma=spec.gamma)  # (C, h, w)
    if src.shape[0] == 1:  # grey photograph: give it a random tint
        tint = 1.0 - 0.4 * rng.random(3).astype(np.float32)
        src = src * (tint / tint.max())[:, None, None]
    _, th, tw = src.shape
    frame = min(spec.height, spec.width)
    scale = frame / (rng.uniform(*spec.coverage_range) * min(th, tw))  # output px per source px
    ch, cw = min(th, math.ceil(out_h / scale)), min(tw, math.ceil(out_w / scale))
    y0, x0 = int(rng.integers(0, th - ch + 1)), int(rng.integers(0, tw - cw + 1))
    crop = src[:, y0 : y0 + ch, x0 : x0 + cw]
    patch = resize_texture(crop, max(out_h / ch, out_w / cw))
    return np.ascontiguousarray(patch[:, :out_h, :out_w])


def _fixed_pattern(
    params: ClipParams, rng: np.random.Generator, hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    gain = np.clip(1.0 + params.gain_std * rng.standard_normal(hw), 0.5, 1.5)  # (H, W)
    dark = params.dark_current * rng.gamma(2.0, 0.5, size=hw)  # (H, W), mean dark_current
    return gain, dark


def _encode(x: np.ndarray, gamma: float) -> np.ndarray:
    """Linear light -> gamma-encoded uint8 (same shape)."""
    return np.round(np.power(np.clip(x, 0, 1), 1 / gamma) * 255).astype(np.uint8)


def _expose(linear: np.ndarray, exposure: int, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """(T, E, 3, H, W) exposed sub-frames -> uint8 (blurry, sharp), each (T, 3, H, W)."""
    blurry = _encode(linear.mean(axis=1), gamma)  # mean in linear light, then the CRF
    return blurry, _encode(linear[:, exposure // 2], gamma)  # sharp: the middle sub-frame


def _render_calibrated(
    render: Callable[[float, np.ndarray], np.ndarray],
    *,
    num_subframes: int,
    exposed: np.ndarray,
    gamma: float,
    target: float | None,
    max_scale: float,
) -> tuple[np.ndarray, float]:
    """Every sub-frame, rendered at the motion scale whose blur meets ``target``.

    Args:
        render: ``render(scale, select)`` -> float32 (len(select), 3, H, W) linear sub-frames.
        num_subframes: Sub-frames in the clip N.
        exposed: Int (T, E) indices of each frame's exposed sub-frames.
        gamma: CRF exponent.
        target: Blurry-input PSNR to reach (None: scale 1, no search).
        max_scale: Largest scale allowed.

    Returns:
        (float32 (N, 3, H, W) linear sub-frames, the scale used).
    """
    t, e = exposed.shape
    best: tuple[float, float, np.ndarray] | None = None  # (|error|, scale, exposed sub-frames)
    scale = 1.0
    if target is not None:

        def blur_psnr(factor: float) -> float:
            nonlocal best
            frames = render(factor, exposed.reshape(-1))  # (T*E, 3, H, W)
            value = frames_psnr(*_expose(frames.reshape(t, e, *frames.shape[1:]), e, gamma))
            if best is None or abs(value - target) < best[0]:
                best = (abs(value - target), factor, frames)
            return value

        scale, _ = solve_motion_scale(blur_psnr, target=target, max_scale=max_scale)
    if best is None or best[1] != scale:
        return render(scale, np.arange(num_subframes)), scale
    frames = best[2]
    linear = np.empty((num_subframes, *frames.shape[1:]), dtype=np.float32)  # (N, 3, H, W)
    linear[exposed.reshape(-1)] = frames  # reuse the calibration's render of the exposures
    gaps = np.setdiff1d(np.arange(num_subframes), exposed)
    if len(gaps):
        linear[gaps] = render(scale, gaps)
    return linear, scale


def _scene_layers(
    spec: SyntheticSpec, rng: np.random.Generator, params: ClipParams, *, max_scale: float
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The background (3, side, side), big enough for the fastest motion, and the sprites."""
    h, w, t = spec.height, spec.width, spec.clip_len
    reach = max_scale * params.speed_px * (t / 2 + 1) * 1.3 + 0.75 * math.hypot(h, w)  # + half diag
    side = int(min(2 * reach * math.exp(max_scale * params.zoom * t), 4 * max(h, w)))
    background = _texture_patch(spec, rng, params.texture, out_h=side, out_w=side)
    sprites = []
    for _ in range(params.num_sprites):
        size = min(h, w) * rng.uniform(*spec.sprite_size_range)
        aspect = rng.uniform(0.6, 1.6)
        sh, sw = max(3, round(size * math.sqrt(aspect))), max(3, round(size / math.sqrt(aspect)))
        use_photo = spec.textures and rng.random() >= spec.procedural_fraction
        name = str(rng.choice(spec.textures)) if use_photo else PROCEDURAL
        patch = _texture_patch(spec, rng, name, out_h=sh, out_w=sw)
        sprites.append(make_sprite(rng, patch, height=sh, width=sw))
    return background, sprites


def _exposed_subframes(spec: SyntheticSpec, exposure: int) -> tuple[np.ndarray, np.ndarray]:
    """Which sub-frames each frame exposes: the ``E`` centred in its period.

    Returns:
        (int (T,) first exposed sub-frame of each frame, int (T, E) all its exposed sub-frames).
    """
    s = spec.subframes_per_frame
    first = np.arange(spec.clip_len) * s + (s - exposure) // 2  # first exposed sub-frame
    return first, first[:, None] + np.arange(exposure)  # (T,), (T, E)


def _render_subframes(
    spec: SyntheticSpec,
    rng: np.random.Generator,
    params: ClipParams,
    *,
    motion_seq: np.random.SeedSequence,
    exposed: np.ndarray,
) -> tuple[np.ndarray, float]:
    """Draw the scene and render every sub-frame at the motion scale that meets the blur target.

    Args:
        spec: The data set's spec.
        rng: The clip's scene generator (draws the background and the sprites).
        params: The clip's draws, before the motion scaling.
        motion_seq: Seed of the trajectories (the same paths at every scale).
        exposed: Int (T, E) indices of each frame's exposed sub-frames.

    Returns:
        (float32 (T*S, 3, H, W) linear sub-frames, the motion scale used).
    """
    h, w, t, s = spec.height, spec.width, spec.clip_len, spec.subframes_per_frame
    fastest = max(params.speed_px, params.sprite_speed_px if params.num_sprites else 0.0)
    calibrate = params.blur_target_db is not None and fastest > 0  # nothing moves: no scaling
    max_scale = spec.max_speed * max(h, w) / fastest if calibrate else 1.0
    background, sprites = _scene_layers(spec, rng, params, max_scale=max_scale)
    motion = SceneMotion(
        speed=params.speed_px,
        rotation=params.rotation_rad,
        zoom=params.zoom,
        sprite_speed=params.sprite_speed_px,
    )
    times = (np.arange(t * s) + 0.5) / s  # sub-frame centres in frame periods

    def render(scale: float, select: np.ndarray) -> np.ndarray:
        return render_scene(
            np.random.default_rng(motion_seq),  # the same paths at every scale
            height=h,
            width=w,
            times=times,
            background=background,
            sprites=sprites,
            motion=motion.scaled(scale),
            select=select,
        )  # (len(select), 3, H, W)

    return _render_calibrated(
        render,
        num_subframes=t * s,
        exposed=exposed,
        gamma=spec.gamma,
        target=params.blur_target_db if calibrate else None,
        max_scale=max_scale,
    )


def _scaled_params(
    params: ClipParams, scale: float, *, blurry: np.ndarray, sharp: np.ndarray
) -> ClipParams:
    """``params`` with its speeds after the motion scaling, the scale and the blur it gave."""
    return dataclasses.replace(
        params,
        speed_px=params.speed_px * scale,
        rotation_rad=params.rotation_rad * scale,
        zoom=params.zoom * scale,
        sprite_speed_px=params.sprite_speed_px * scale,
        motion_scale=scale,
        blur_psnr_db=frames_psnr(blurry, sharp),
    )


def _clip_spikes(
    spec: SyntheticSpec,
    params: ClipParams,
    linear: np.ndarray,
    *,
    camera_seq: np.random.SeedSequence,
) -> np.ndarray:
    """The spike camera's stream of the whole clip.

    Args:
        spec: The data set's spec.
        params: The clip's draws (the camera's noise levels and white rate).
        linear: Float32 (T*S, 3, H, W) linear sub-frames.
        camera_seq: Seed of the camera (fixed-pattern noise, initial potential, noise).

    Returns:
        Bool (T*S*R, H, W) spikes.
    """
    cam_rng = np.random.default_rng(camera_seq)
    gain, dark = _fixed_pattern(params, cam_rng, (spec.height, spec.width))
    luminance = np.einsum("nchw,c->nhw", linear, LUMA)  # (T*S, H, W) linear
    return simulate_spikes(
        luminance,
        threshold=1.0 / params.white_rate,
        seed=cam_rng,
        gain=gain,
        dark_current=dark,
        shot_noise=params.shot_noise,
        extra_spike_rate=params.extra_spike_rate,
        repeat=spec.readouts_per_subframe,
    )  # (T*S*R, H, W)


def _readout_ranges(
    spec: SyntheticSpec, first: np.ndarray, exposure: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each frame's exposure and each of its voxel bins' TFP window, as readout ranges.

    Args:
        spec: The data set's spec.
        first: Int (T,) first exposed sub-frame of each frame.
        exposure: Exposed sub-frames per frame E.

    Returns:
        (int64 (T, 2) exposures, int64 (T, K, 2) windows), each a ``[start, stop)`` range.
    """
    r, e = spec.readouts_per_subframe, exposure
    exposures = np.stack([first * r, (first + e) * r], axis=-1).astype(np.int64)  # (T, 2)
    n_read = spec.total_readouts
    if spec.tfp_window is None:  # windows tile the exposure (as a per-frame .dat file holds)
        rel = voxel_windows(0, e * r, spec.num_bins)  # (K, 2)
        windows = exposures[:, None, :1] + rel[None]  # (T, K, 2)
    else:  # longer windows may reach outside the exposure: the stream runs on
        windows = np.stack(
            [
                voxel_windows(a, e * r, spec.num_bins, window=spec.tfp_window, total=n_read)
                for a in exposures[:, 0].tolist()
            ]
        )  # (T, K, 2)
    return exposures, windows


def generate_clip(spec: SyntheticSpec, *, split: str, index: int) -> SyntheticClip:
    """Generate clip ``index`` of ``split`` ("train" or "val"); deterministic for the spec.

    Returns:
        The clip (see :class:`SyntheticClip` for shapes).
    """
    if split not in _SPLIT_CODES:
        raise ConfigError(f"split must be one of {sorted(_SPLIT_CODES)}, got {split!r}")
    seeds = np.random.SeedSequence([spec.seed, _SPLIT_CODES[split], index]).spawn(3)
    scene_seq, camera_seq, motion_seq = seeds
    rng = np.random.default_rng(scene_seq)
    params = _draw_params(spec, rng, split, index)
    e = params.exposure
    first, exposed_idx = _exposed_subframes(spec, e)  # (T,), (T, E)
    linear, scale = _render_subframes(
        spec, rng, params, motion_seq=motion_seq, exposed=exposed_idx
    )  # (T*S, 3, H, W)
    blurry, sharp = _expose(linear[exposed_idx], e, spec.gamma)  # (T, 3, H, W) each
    params = _scaled_params(params, scale, blurry=blurry, sharp=sharp)
    spikes = _clip_spikes(spec, params, linear, camera_seq=camera_seq)  # (T*S*R, H, W)
    exposures, windows = _readout_ranges(spec, first, e)  # (T, 2), (T, K, 2)
    logger.debug("generated %s clip %d: %s", split, index, params)
    return SyntheticClip(
        blurry=blurry,
        sharp=sharp,
        spikes=spikes,
        exposures=exposures,
        windows=windows,
        params=params,
    )
