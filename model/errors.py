"""The project's exception base class and its domain errors."""

from __future__ import annotations

__all__ = ["VRTSpikeError", "ConfigError"]


class VRTSpikeError(Exception):
    """Base class of every domain error raised by this project (clear message, CLI exit code 2)."""


class ConfigError(VRTSpikeError, ValueError):
    """An invalid configuration value; the message names the key path (``MODEL.FUSE.HEADS``)."""
