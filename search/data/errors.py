"""The data package's domain error."""

from __future__ import annotations

from model.errors import VRTSpikeError

__all__ = ["DataError"]


class DataError(VRTSpikeError, ValueError):
    """Bad data on disk or a bad data request; the message names the file and what was expected."""
