"""Named training/measurement budgets: how much a trial may spend, recorded with every result.

A budget fixes what a trial trains on and for how long (steps, batch, crop, clip length T,
spike bins K, the synthetic data set, validation clips), the default latency target's input shape
and, where latency is measured directly, warm-up and repeats. It may scale the widths of the
network it *trains* so that a complete architecture fits a small machine: every stage, block,
fusion and the flow network stay; only channel counts shrink. Latency is always of the
deployment config at full widths (:mod:`search.measure.target`).

Measured per trial (training + validation + latency + cost model; ``benchmarks/measure_bench.py``):

- ``smoke``: seconds per trial on 2 CPU cores (``tiny`` 5 s, ``baseline`` 13 s); for tests and
  for trying the service. Its direct latency is one block of forwards, flagged noisy but never
  measured again.
- ``cpu``: the default without a GPU; ``tiny`` 16 s, ``baseline`` (widths 96 -> 24) 66 s per
  trial on 2 cores when the proxy itself was timed (before latency targets); a trial now
  predicts its latency from the table, measuring only the parts the table lacks.
- ``gpu``: full widths, 5-frame clips, latency at the guide's 5x256x256; ``baseline`` about
  14 min per trial on one H100 (0.79 s per fp32 training step of two 5x128x128 clips).

A study records ``budget.to_dict()`` and refuses to mix budgets.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from model import VRTSpikeConfig
from model.config import stage_scale_index
from model.errors import ConfigError

if TYPE_CHECKING:
    from search.data import SyntheticSpec

__all__ = ["Budget", "BUDGETS", "apply_budget", "default_budget_name", "get_budget", "scale_widths"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Budget:
    """One named budget.

    Attributes:
        name: Registry name.
        description: One line for users.
        steps: Optimiser steps of the short training.
        warmup_steps: Linear learning-rate warm-up steps before the cosine decay.
        batch_size: Clips per step (written to ``TRAIN.BATCH_SIZE``).
        grad_accum: Micro-batches per step (written to ``TRAIN.GRADIENT_ACCUMULATION_STEPS``).
        lr: Peak learning rate written to ``TRAIN.LR`` (None keeps the config's).
        crop_size: Training crop side (``DATA.CROP_SIZE``).
        clip_len: RGB frames per clip T (``DATA.CLIP_LEN``).
        num_bins: Spike bins per frame K (``DATA.NUM_VOXEL_BINS``).
        width_scale: Factor on ``MODEL.EMBED_DIMS`` (1.0 = the config's widths).
        min_width: Scaled widths never go below ``min(width, min_width)``.
        data_size: Side of the synthetic frames (training crops come from these; validation
            uses whole frames).
        num_train_clips: Synthetic training clips.
        num_val_clips: Fixed validation clips PSNR/SSIM are averaged over.
        latency_frames: T of the default latency target's input.
        latency_size: H = W of the default latency target's input.
        latency_warmup: Untimed forwards before a direct measurement.
        latency_repeats: Timed forwards per block of a direct measurement.
        latency_blocks: Most blocks of a direct measurement: a block whose forwards vary by more
            than the threshold is measured again, up to this many blocks in all
            (:func:`search.measure.latency.repeat_until_stable`).
        parent_steps: Sandwich steps of the space's elastic parent (:mod:`search.study.parent`).
        parent_subnets: Random sub-networks per sandwich step, besides the largest and the
            smallest.
        parent_ranks: CPU processes a sandwich step's sub-networks are shared between
            (:mod:`search.measure.sandwich`; 1 on CUDA): on 2 cores two one-thread processes
            build the parent faster than one two-thread process.
        finetune_lr: Peak learning rate of a trial that fine-tunes inherited weights (the
            budget's ``lr`` trains from scratch and builds the parent).
    """

    name: str
    description: str
    steps: int
    warmup_steps: int
    batch_size: int
    grad_accum: int
    lr: float | None
    crop_size: int
    clip_len: int
    num_bins: int
    width_scale: float
    min_width: int
    data_size: int
    num_train_clips: int
    num_val_clips: int
    latency_frames: int
    latency_size: int
    latency_warmup: int
    latency_repeats: int
    latency_blocks: int
    parent_steps: int
    parent_subnets: int
    parent_ranks: int
    finetune_lr: float

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "grad_accum", "crop_size", "clip_len", "num_bins")
        for key in (*positive, "min_width", "data_size", "num_train_clips", "num_val_clips"):
            if getattr(self, key) < 1:
                raise ConfigError(f"budget {self.name}: {key} must be >= 1")
        if not 0 <= self.warmup_steps < self.steps:
            raise ConfigError(f"budget {self.name}: warmup_steps must be in [0, steps)")
        if not 0 < self.width_scale <= 1:
            raise ConfigError(f"budget {self.name}: width_scale must be in (0, 1]")
        if self.crop_size > self.data_size:
            raise ConfigError(f"budget {self.name}: crop_size exceeds data_size")
        if self.parent_steps < 1 or self.parent_subnets < 0:
            raise ConfigError(f"budget {self.name}: parent_steps must be >= 1, subnets >= 0")
        if not 1 <= self.parent_ranks <= 2 + self.parent_subnets:
            raise ConfigError(f"budget {self.name}: parent_ranks must be in [1, 2 + subnets]")
        if self.latency_repeats < 2 or self.latency_warmup < 0 or self.latency_blocks < 1:
            raise ConfigError(
                f"budget {self.name}: latency needs >= 2 repeats, >= 0 warm-up, >= 1 block"
            )

    @property
    def latency_shape(self) -> tuple[int, int, int]:
        """(T, H, W) of the latency input (batch 1)."""
        return self.latency_frames, self.latency_size, self.latency_size

    def data_spec(self, seed: int = 0) -> SyntheticSpec:
        """The synthetic data set this budget trains and validates on."""
        from search.data import SyntheticSpec

        return SyntheticSpec(
            height=self.data_size,
            width=self.data_size,
            clip_len=self.clip_len,
            num_bins=self.num_bins,
            num_train=self.num_train_clips,
            num_val=self.num_val_clips,
            seed=seed,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable record of every field."""
        return dataclasses.asdict(self)


BUDGETS: dict[str, Budget] = {
    b.name: b
    for b in (
        Budget(
            name="smoke",
            description="seconds per trial on 2 CPU cores: tests and trying the service",
            steps=4,
            warmup_steps=1,
            batch_size=1,
            grad_accum=1,
            lr=1e-3,
            crop_size=32,
            clip_len=3,
            num_bins=4,
            width_scale=0.125,
            min_width=8,
            data_size=32,
            num_train_clips=4,
            num_val_clips=1,
            latency_frames=3,
            latency_size=32,
            latency_warmup=1,
            latency_repeats=5,
            latency_blocks=1,
            parent_steps=4,
            parent_subnets=1,
            parent_ranks=1,
            finetune_lr=1e-4,
        ),
        Budget(
            name="cpu",
            description="default without a GPU: about a minute per trial on 2 CPU cores",
            steps=30,
            warmup_steps=3,
            batch_size=1,
            grad_accum=1,
            lr=1e-3,
            crop_size=32,
            clip_len=3,
            num_bins=8,
            width_scale=0.25,
            min_width=12,
            data_size=64,
            num_train_clips=32,
            num_val_clips=3,
            latency_frames=5,
            latency_size=256,
            latency_warmup=1,
            latency_repeats=3,
            latency_blocks=3,
            parent_steps=600,
            parent_subnets=1,
            parent_ranks=1,  # two one-thread processes: 0.93x on a 2-core EPYC (parent_speed.py)
            finetune_lr=1e-4,
        ),
        Budget(
            name="gpu",
            description="full widths, 5-frame clips, latency at the guide's 5x256x256",
            steps=1000,
            warmup_steps=50,
            batch_size=2,
            grad_accum=1,
            lr=None,
            crop_size=128,
            clip_len=5,
            num_bins=32,
            width_scale=1.0,
            min_width=12,
            data_size=256,
            num_train_clips=64,
            num_val_clips=8,
            latency_frames=5,
            latency_size=256,
            latency_warmup=10,
            latency_repeats=30,
            latency_blocks=3,
            parent_steps=1500,
            parent_subnets=2,
            parent_ranks=1,
            finetune_lr=1e-4,
        ),
    )
}


def default_budget_name(device: str) -> str:
    """``gpu`` on a CUDA device, ``cpu`` elsewhere."""
    return "gpu" if device.startswith("cuda") else "cpu"


def get_budget(name: str) -> Budget:
    """The named budget.

    Raises:
        ConfigError: unknown name (the message lists the valid ones).
    """
    try:
        return BUDGETS[name]
    except KeyError:
        raise ConfigError(f"unknown budget {name!r} (valid: {', '.join(BUDGETS)})") from None


def _width_multiples(cfg: VRTSpikeConfig) -> list[int]:
    """Per entry of EMBED_DIMS, the number every width must stay a multiple of (heads)."""
    m = cfg.model
    mult = list(m.num_heads)
    if m.use_spike:
        for s in m.fuse.stages:
            mult[s - 1] = math.lcm(mult[s - 1], m.fuse.heads)
            scale = stage_scale_index(s)
            mult[scale] = math.lcm(mult[scale], m.spike_tsa.heads)
    return mult


def scale_widths(cfg: VRTSpikeConfig, scale: float, *, min_width: int) -> VRTSpikeConfig:
    """Scale ``MODEL.EMBED_DIMS`` keeping every head count (attention, fusion, TSA) valid.

    Each width becomes the multiple of its heads nearest ``width * scale``, at least
    ``min(width, min_width)`` rounded up to that multiple; ``MODEL.DEFORMABLE_GROUPS`` becomes
    its greatest common divisor with the new stage 1-7 widths (fewer groups, same structure).

    Args:
        cfg: The configuration.
        scale: Width factor in (0, 1]; 1.0 returns ``cfg`` unchanged.
        min_width: Floor of the scaled widths.

    Returns:
        The scaled, validated configuration.
    """
    if scale == 1.0:
        return cfg
    dims = []
    for dim, mult in zip(cfg.model.embed_dims, _width_multiples(cfg), strict=True):
        floor = math.ceil(min(dim, min_width) / mult) * mult
        dims.append(max(floor, round(dim * scale / mult) * mult))
    groups = math.gcd(cfg.model.deformable_groups, *dims[:7])
    return cfg.with_overrides({"MODEL.EMBED_DIMS": dims, "MODEL.DEFORMABLE_GROUPS": groups})


def apply_budget(
    cfg: VRTSpikeConfig, budget: Budget, *, widths_of: VRTSpikeConfig | None = None
) -> VRTSpikeConfig:
    """The configuration a trial of this budget trains.

    Sets clip length, spike bins, crop, batch, gradient accumulation and (if the budget has one)
    the learning rate, and scales widths (:func:`scale_widths`). Apply it once, to the
    deployment config: scaling is not idempotent for ``width_scale < 1``.

    Args:
        cfg: The deployment config.
        budget: The budget.
        widths_of: A trained parent: take its widths (``EMBED_DIMS``, ``DEFORMABLE_GROUPS``)
            instead of scaling, so that the child inherits its weights, and fine-tune at the
            budget's ``finetune_lr``.
    """
    overrides: dict[str, Any] = {
        "DATA.CLIP_LEN": budget.clip_len,
        "DATA.NUM_VOXEL_BINS": budget.num_bins,
        "DATA.CROP_SIZE": budget.crop_size,
        "TRAIN.BATCH_SIZE": budget.batch_size,
        "TRAIN.GRADIENT_ACCUMULATION_STEPS": budget.grad_accum,
    }
    if budget.lr is not None:
        overrides["TRAIN.LR"] = budget.lr
    if widths_of is not None:
        m = widths_of.model
        overrides |= {"MODEL.EMBED_DIMS": list(m.embed_dims), "TRAIN.LR": budget.finetune_lr,
                      "MODEL.DEFORMABLE_GROUPS": m.deformable_groups}  # fmt: skip
        return cfg.with_overrides(overrides)
    out = scale_widths(
        cfg.with_overrides(overrides), budget.width_scale, min_width=budget.min_width
    )
    if out.model.embed_dims != cfg.model.embed_dims:
        logger.info(
            "budget %s: widths %s -> %s",
            budget.name,
            list(cfg.model.embed_dims),
            list(out.model.embed_dims),
        )
    return out
