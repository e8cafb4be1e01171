"""Named configurations: the guide's baseline and schemes, VRT's official deblurring, ``tiny``."""

from __future__ import annotations

from collections.abc import Callable

from .config import VRTSpikeConfig
from .errors import ConfigError

__all__ = ["PRESETS", "load_preset"]


def _baseline() -> VRTSpikeConfig:
    """The seed system as the guide profiled it (all defaults)."""
    return VRTSpikeConfig()


def _scheme_a() -> VRTSpikeConfig:
    """The guide's scheme A ("conservative"), exactly its YAML example."""
    return VRTSpikeConfig().with_overrides(
        {
            "MODEL.VRT_DEPTHS": [8, 7, 8, 8, 4, 4, 4, 6],
            "MODEL.WINDOW_SIZE": 7,
            "MODEL.FUSE.CHUNK_SIZE": 80,
            "MODEL.FUSE.MAX_BATCH_TOKENS": 65536,
            "MODEL.SPIKE_TSA.CHUNK_SIZE": 96,
            "MODEL.SPIKE_TSA.MAX_BATCH_TOKENS": 65536,
            "TRAIN.AMP_ENABLED": True,
            "TRAIN.GRADIENT_ACCUMULATION_STEPS": 12,
        }
    )


def _scheme_b() -> VRTSpikeConfig:
    """The guide's scheme B ("aggressive")."""
    return VRTSpikeConfig().with_overrides(
        {
            "MODEL.VRT_DEPTHS": [8, 6, 6, 8, 4, 4, 4, 4],
            "MODEL.WINDOW_SIZE": 6,
            "MODEL.FUSE.CHUNK_SIZE": 96,
            "MODEL.FUSE.MAX_BATCH_TOKENS": 65536,
            "MODEL.SPIKE_TSA.CHUNK_SIZE": 96,
            "MODEL.SPIKE_TSA.MAX_BATCH_TOKENS": 65536,
            "TRAIN.AMP_ENABLED": True,
            "TRAIN.BATCH_SIZE": 2,
        }
    )


def _vrt_gopro() -> VRTSpikeConfig:
    """VRT's official video-deblurring network (task 006 GoPro), without the spike branch."""
    return VRTSpikeConfig().with_overrides(
        {
            "MODEL.USE_SPIKE": False,
            "MODEL.VRT_DEPTHS": [8] * 7 + [4] * 4,
            "MODEL.WINDOW_SIZE": 8,
            "MODEL.TEMPORAL_WINDOW": 6,
            "MODEL.EMBED_DIMS": [96] * 7 + [120],
            "MODEL.NUM_HEADS": [6] * 8,
            "MODEL.INDEP_RECONSTS": [9, 10],
            "MODEL.DEFORMABLE_GROUPS": 16,
            "DATA.CLIP_LEN": 6,
            "DATA.CROP_SIZE": 192,
        }
    )


def _tiny() -> VRTSpikeConfig:
    """The full structure at tiny widths for CPU tests (forward + backward in about a second)."""
    return VRTSpikeConfig().with_overrides(
        {
            "MODEL.VRT_DEPTHS": [2, 2, 2, 2, 1, 1, 1, 2, 1],
            "MODEL.WINDOW_SIZE": 4,
            "MODEL.TEMPORAL_WINDOW": 2,
            "MODEL.EMBED_DIMS": [8] * 7 + [12],
            "MODEL.NUM_HEADS": [2] * 8,
            "MODEL.INDEP_RECONSTS": [8],
            "MODEL.DEFORMABLE_GROUPS": 2,
            "MODEL.FUSE.HEADS": 2,
            "MODEL.FUSE.CHUNK_SIZE": 8,
            "MODEL.FUSE.MAX_BATCH_TOKENS": 512,
            "MODEL.SPIKE_TSA.HEADS": 2,
            "MODEL.SPIKE_TSA.CHUNK_SIZE": 8,
            "MODEL.SPIKE_TSA.MAX_BATCH_TOKENS": 512,
            "DATA.CLIP_LEN": 3,
            "DATA.NUM_VOXEL_BINS": 4,
            "DATA.CROP_SIZE": 32,
        }
    )


PRESETS: dict[str, Callable[[], VRTSpikeConfig]] = {
    "baseline": _baseline,
    "scheme_a": _scheme_a,
    "scheme_b": _scheme_b,
    "vrt_gopro": _vrt_gopro,
    "tiny": _tiny,
}


def load_preset(name: str) -> VRTSpikeConfig:
    """The named configuration.

    Raises:
        ConfigError: unknown name (the message lists the valid ones).
    """
    try:
        return PRESETS[name]()
    except KeyError:
        raise ConfigError(f"unknown preset {name!r} (valid: {', '.join(PRESETS)})") from None
