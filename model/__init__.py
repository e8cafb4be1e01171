"""VRT-Spike: the VRT backbone with a spike-camera branch and chunked temporal fusion.

Read in file order, leaf to root: ``sdpa``, ``layers``, ``window``, ``tmsa``, ``flow``, ``deform``,
``warp``, ``chunking``, ``spike``, ``stage``, ``vrt``; the configuration is ``config`` and
``presets``.
"""

from .config import VRTSpikeConfig
from .errors import ConfigError, VRTSpikeError
from .presets import PRESETS, load_preset
from .vrt import VRTSpike

__all__ = ["VRTSpikeConfig", "VRTSpike", "load_preset", "PRESETS", "VRTSpikeError", "ConfigError"]
