"""Parameter count and FLOPs of a configuration, without allocating it (meta device).

The model is built under ``torch.device("meta")``: parameters and activations carry shapes only,
so even the full model at 5x256x256 costs no memory and a few seconds. FLOPs are counted by
``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per multiply-accumulate: matmuls, linear
layers, convolutions and attention; element-wise ops, softmax, norms and ``grid_sample`` are not
counted). The deformable convolution is pure PyTorch (``grid_sample`` + one matmul), so its matmul
is counted. Per-part FLOPs use the model's part-timer hook: the "timer" snapshots the counter's
total at the entry and exit of each part; ``other`` is whatever ran outside the named parts.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from model import VRTSpike, VRTSpikeConfig
from model.sdpa import math_attention

__all__ = ["Cost", "count_cost", "param_count"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cost:
    """Static cost of one forward (batch 1).

    Attributes:
        params: Trainable + frozen parameter count.
        flops: Forward FLOPs (2 x MACs) at the given input shape.
        flops_per_part: FLOPs per model part (``flow``, ``stage1`` ... ``head``) plus ``other``.
        frames: T of the input.
        height: H of the input.
        width: W of the input.
    """

    params: int
    flops: int
    flops_per_part: dict[str, int] = field(hash=False)
    frames: int
    height: int
    width: int

    @property
    def gflops(self) -> float:
        """Forward GFLOPs."""
        return self.flops / 1e9

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict."""
        return {
            "params": self.params,
            "flops": self.flops,
            "gflops": self.gflops,
            "flops_per_part": dict(self.flops_per_part),
            "input_shape": [1, self.frames, 3, self.height, self.width],
        }


def count_cost(cfg: VRTSpikeConfig, *, frames: int, height: int, width: int) -> Cost:
    """Parameters and forward FLOPs of ``VRTSpike(cfg)`` at a (1, T, 3, H, W) input.

    Args:
        cfg: The configuration (spike input has ``cfg.data.num_voxel_bins`` bins per frame).
        frames: T.
        height: H.
        width: W.

    Returns:
        The :class:`Cost` (cached per configuration and shape).
    """
    if min(frames, height, width) < 1:
        raise ValueError(f"input shape must be positive, got T={frames}, H={height}, W={width}")
    return _count_cost_cached(cfg, frames, height, width)


def param_count(cfg: VRTSpikeConfig) -> int:
    """Parameters of ``VRTSpike(cfg)``, built on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        return _params(VRTSpike(cfg))


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@functools.lru_cache(maxsize=128)
def _count_cost_cached(cfg: VRTSpikeConfig, frames: int, height: int, width: int) -> Cost:
    k = cfg.data.num_voxel_bins
    with torch.device("meta"):
        model = VRTSpike(cfg)
        rgb = torch.empty(1, frames, 3, height, width)
        spike = torch.empty(1, frames, k, height, width)
    params = _params(model)
    counter = FlopCounterMode(display=False)
    parts: dict[str, int] = {}

    @contextlib.contextmanager
    def attribute(name: str) -> Iterator[None]:
        before = counter.get_total_flops()
        try:
            yield
        finally:
            parts[name] = parts.get(name, 0) + counter.get_total_flops() - before

    model.eval()
    model.set_part_timer(attribute)
    try:
        # the math attention path: its two matmuls are what the counter sees on every device
        with torch.no_grad(), math_attention(), counter:
            model(rgb, spike)
    finally:
        model.set_part_timer(None)
    total = int(counter.get_total_flops())
    per_part = {name: int(parts.get(name, 0)) for name in model.part_names()}
    per_part["other"] = total - sum(per_part.values())
    logger.debug(
        "cost: %d params, %.1f GFLOPs at %dx%dx%d", params, total / 1e9, frames, height, width
    )
    return Cost(
        params=params,
        flops=total,
        flops_per_part=per_part,
        frames=frames,
        height=height,
        width=width,
    )
