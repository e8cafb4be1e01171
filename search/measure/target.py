"""The latency target: what a study's first objective is the latency of.

Every trial's ``latency_ms`` is the deployment model's: the config the study exports (full
widths, the trial's own AMP, windows, depths and fusion), batch 1, at the target's input shape
``T x H x W``, on the study's device. The budget's width scaling only shapes training.

The latency is either *measured* (the model built and timed at the target) or *predicted* from a
table of parts timed once in isolation (:mod:`search.measure.latency_model`). ``auto`` measures
on CUDA and at small CPU shapes, and predicts on the CPU above :data:`MEASURED_MAX_VOXELS`, where a
full-width forward takes minutes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch

from model import VRTSpikeConfig
from model.errors import ConfigError
from search.measure.device import amp_name, config_amp

__all__ = [
    "MEASURED_MAX_VOXELS",
    "SOURCES",
    "LatencyTarget",
    "describe_target",
    "format_shape",
    "parse_shape",
]

SOURCES = ("auto", "measured", "predicted")
"""Values of ``--latency-source``."""
MEASURED_MAX_VOXELS = 3 * 64 * 64
"""``auto`` on the CPU measures at ``T * H * W`` up to this and predicts above it."""

_SHAPE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def parse_shape(text: str) -> tuple[int, int, int]:
    """``"5x256x256"`` -> ``(5, 256, 256)``: frames T, height H, width W, each at least 1.

    Raises:
        ConfigError: not three positive integers joined by ``x``.
    """
    m = _SHAPE.match(text)
    if m is None or min(int(g) for g in m.groups()) < 1:
        raise ConfigError(f"latency shape {text!r}: expected TxHxW, e.g. 5x256x256")
    t, h, w = (int(g) for g in m.groups())
    return t, h, w


def format_shape(shape: tuple[int, ...]) -> str:
    """``(5, 256, 256)`` -> ``"5x256x256"``."""
    return "x".join(str(v) for v in shape)


@dataclass(frozen=True)
class LatencyTarget:
    """Where and at which size the deployment model's latency is taken.

    Attributes:
        shape: (T, H, W) of the input (batch 1).
        source: ``auto``, ``measured`` or ``predicted`` (as asked; see :meth:`source_on`).
    """

    shape: tuple[int, int, int]
    source: str = "auto"

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ConfigError(f"latency source {self.source!r}: expected one of {list(SOURCES)}")
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ConfigError(f"latency shape {self.shape!r}: expected three sizes >= 1")

    def source_on(self, device: torch.device | str) -> str:
        """``measured`` or ``predicted``: what ``auto`` means on ``device`` at this shape."""
        if self.source != "auto":
            return self.source
        t, h, w = self.shape
        small = t * h * w <= MEASURED_MAX_VOXELS
        return "measured" if torch.device(device).type == "cuda" or small else "predicted"

    def record(self, cfg: VRTSpikeConfig, device: torch.device | str) -> dict[str, Any]:
        """What a trial's latency is of: shape, device, widths, AMP and source."""
        return {
            "shape": list(self.shape),
            "device": str(torch.device(device)),
            "embed_dims": list(cfg.model.embed_dims),
            "amp": amp_name(config_amp(cfg, device)),
            "source": self.source_on(device),
        }

    def describe(self, device: torch.device | str) -> str:
        """What the latency is of, in words (:func:`describe_target`)."""
        return describe_target(self.shape, self.source_on(device))


def describe_target(shape: tuple[int, ...], source: str) -> str:
    """``the deployment model at 1x5x3x256x256, predicted from a parts table``."""
    how = "predicted from a parts table" if source == "predicted" else "measured directly"
    t, h, w = shape
    return f"the deployment model at 1x{t}x3x{h}x{w}, {how}"
