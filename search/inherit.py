"""Weight inheritance: a child network's state dict taken from a parent that covers it.

A parent covers a child when the child differs from it only in what shrinks or carries no
weights (:data:`SHRINKABLE`, :data:`FREE`); every other key must be equal. Then:

- **Depth.** Each stage (or stage-8 group) keeps its parent's first blocks, split into the
  mutual and self-attention groups as the child's own config splits them, so block ``j`` of a
  group is the parent's block ``j`` of the same group and the unshifted/shifted alternation is
  kept.
- **Window.** Relative-position bias tables are centre-cropped to the child's window: a table
  row is a relative offset, and an offset means the same at any window size. The index and mask
  buffers are not state; the child computes its own.
- **Fusion.** The child keeps the parent's fusion blocks at the stages it fuses at. A stage the
  parent does not fuse at gets a fusion block that starts as the identity (its attention
  projection and its FFN's last layer are zero), so it changes nothing until trained. Spike
  parts the parent lacks start from the child's own (seeded) initialisation.
- AMP, chunking, stochastic depth, training and data-crop settings carry no weights.

A child equal to its parent gets the parent's state exactly and computes the parent's output.

:func:`as_child` runs the parent itself as a child, its weights shared (an elastic forward, for
training a parent whose sub-networks all work); it computes what ``VRTSpike(child_cfg)`` with
:func:`child_state_dict` computes, for a child that fuses only where the parent does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from model import VRTSpike, VRTSpikeConfig
from model.errors import VRTSpikeError
from model.tmsa import TMSAGroup, WindowAttention

__all__ = ["FREE", "SHRINKABLE", "InheritError", "as_child", "check_covered", "child_state_dict"]

#: Keys a child may set lower than (or equal to) its parent's, entry by entry.
SHRINKABLE = ("MODEL.VRT_DEPTHS", "MODEL.WINDOW_SIZE", "MODEL.TEMPORAL_WINDOW")

#: Keys (and sections, ending in ".") that carry no weights: a child may set them freely.
FREE = (
    "MODEL.USE_SPIKE",
    "MODEL.FUSE.STAGES",
    "MODEL.FUSE.ADAPTIVE_CHUNK",
    "MODEL.FUSE.MAX_BATCH_TOKENS",
    "MODEL.FUSE.CHUNK_SIZE",
    "MODEL.FUSE.CHUNK_SHAPE",
    "MODEL.SPIKE_TSA.ADAPTIVE_CHUNK",
    "MODEL.SPIKE_TSA.MAX_BATCH_TOKENS",
    "MODEL.SPIKE_TSA.CHUNK_SIZE",
    "MODEL.SPIKE_TSA.CHUNK_SHAPE",
    "MODEL.DROP_PATH_RATE",
    "TRAIN.",
    "DATA.CROP_SIZE",
    "DATA.CLIP_LEN",
)


class InheritError(VRTSpikeError, ValueError):
    """The parent does not cover the child (the message names the key), or a state is not the
    parent's."""


def _flat(d: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for k, v in d.items():
        if isinstance(v, Mapping):
            yield from _flat(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _group_sizes(depth: int, mutual_ratio: float) -> tuple[int, int]:
    """(mutual, self) blocks of a stage of ``depth`` blocks, as ``model.stage.Stage`` splits."""
    n_mutual = int(depth * mutual_ratio)
    return n_mutual, depth - n_mutual


def _check_depths(parent: VRTSpikeConfig, child: VRTSpikeConfig) -> None:
    key = "MODEL.VRT_DEPTHS"
    pd, cd = parent.model.vrt_depths, child.model.vrt_depths
    if len(pd) != len(cd):
        raise InheritError(f"{key}: the child has {len(cd)} entries, its parent {len(pd)}")
    ratio = parent.model.mutual_attn_ratio
    for i, (p, c) in enumerate(zip(pd, cd, strict=True)):
        sizes = (_group_sizes(p, ratio), _group_sizes(c, ratio)) if i < 7 else ((p,), (c,))
        if any(cs > ps for ps, cs in zip(*sizes, strict=True)):
            raise InheritError(f"{key}[{i}]: the child's depth {c} is not covered by {p}")


def check_covered(parent: VRTSpikeConfig, child: VRTSpikeConfig) -> None:
    """Raise :class:`InheritError` naming the first key the parent does not cover."""
    pflat, cflat = dict(_flat(parent.to_dict())), dict(_flat(child.to_dict()))
    for key, cv in cflat.items():
        pv = pflat[key]
        if key == "MODEL.VRT_DEPTHS" or key.startswith(FREE) or cv == pv:
            continue
        if not (key in SHRINKABLE and cv < pv):
            raise InheritError(f"{key}: the child's {cv!r} is not covered by the parent's {pv!r}")
    _check_depths(parent, child)


def _windows(model: VRTSpike) -> dict[str, tuple[int, int, int]]:
    """Configured window of every attention module's bias table, by state-dict key."""
    return {
        f"{name}.relative_position_bias_table": m.window
        for name, m in model.named_modules()
        if isinstance(m, WindowAttention)
    }


def _crop_table(
    table: torch.Tensor, parent: tuple[int, int, int], child: tuple[int, int, int]
) -> torch.Tensor:
    """Centre-crop a relative-position table from the parent's window to the child's."""
    rows = [2 * w - 1 for w in parent]
    t = table.reshape(*rows, table.shape[-1])
    for dim, (p, c) in enumerate(zip(parent, child, strict=True)):
        t = t.narrow(dim, p - c, 2 * c - 1)
    return t.reshape(-1, table.shape[-1])


def _parent_parts(cfg: VRTSpikeConfig) -> set[str]:
    """Spike parts a network of ``cfg`` has: ``spike_encoder``, ``spike_tsa.S``, ``fusion.S``."""
    m = cfg.model
    if not (m.use_spike and m.fuse.stages):  # as VRTSpike decides whether the branch exists
        return set()
    return (
        {"spike_encoder"}
        | {f"spike_tsa.{s}" for s in m.spike_scales()}
        | {f"fusion.{s}" for s in m.fuse.stages}
    )


def _identity_fusion(state: dict[str, torch.Tensor], stage: str) -> None:
    """Zero a fusion block's attention projection and FFN output: the block returns its input."""
    prefix = f"fusion.{stage}."
    last = max(k for k in state if k.startswith(f"{prefix}mlp.") and k.endswith(".weight"))
    for key in (
        f"{prefix}proj.weight",
        f"{prefix}proj.bias",
        last,
        last.removesuffix("weight") + "bias",
    ):
        state[key] = torch.zeros_like(state[key])


def child_state_dict(
    parent_cfg: VRTSpikeConfig,
    parent_state: Mapping[str, torch.Tensor],
    child_cfg: VRTSpikeConfig,
    *,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """The child's state dict, loadable with ``strict=True`` into ``VRTSpike(child_cfg)``.

    Args:
        parent_cfg: The parent's config.
        parent_state: ``VRTSpike(parent_cfg).state_dict()`` (any device; kept on it).
        child_cfg: A config the parent covers (:func:`check_covered`).
        seed: Seed of the initialisation of parts the parent lacks (spike parts, new fusions).

    Raises:
        InheritError: the parent does not cover the child (names the key), or ``parent_state``
            misses one of ``parent_cfg``'s weights.
    """
    check_covered(parent_cfg, child_cfg)
    with torch.device("meta"):
        parent_windows = _windows(VRTSpike(parent_cfg))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        child = VRTSpike(child_cfg)
    child_windows = _windows(child)
    state = child.state_dict()
    parent_parts = _parent_parts(parent_cfg)
    for key in state:
        part = ".".join(key.split(".")[:2]) if key.startswith(("fusion.", "spike_tsa.")) else ""
        if key.startswith(("fusion.", "spike_")) and (part or "spike_encoder") not in parent_parts:
            continue  # a part the parent lacks: the child's own (seeded) initialisation
        if key not in parent_state:
            raise InheritError(f"parent state has no {key!r}: it is not the state of parent_cfg")
        value = parent_state[key]
        if key in child_windows:
            value = _crop_table(value, parent_windows[key], child_windows[key])
        state[key] = value.detach().clone()
    for stage in child.fuse_stages:
        if f"fusion.{stage}" not in parent_parts:
            _identity_fusion(state, str(stage))
    return state


@contextlib.contextmanager
def as_child(parent: VRTSpike, child_cfg: VRTSpikeConfig) -> Iterator[VRTSpike]:
    """Within the block, ``parent`` computes the sub-network ``child_cfg`` with its own weights.

    Each TMSA group runs its first blocks only, each block its child's window and shift (the
    bias table is indexed by offset, which is the centre crop), and the spike branch fuses at
    the child's stages only. Everything is restored on exit.

    Raises:
        InheritError: the parent does not cover the child, or the child fuses at a stage the
            parent does not (an elastic forward has no weights there).
    """
    check_covered(parent.cfg, child_cfg)
    with torch.device("meta"):
        shape = VRTSpike(child_cfg)
    extra = set(shape.fuse_stages) - set(parent.fuse_stages)
    if extra:
        raise InheritError(f"MODEL.FUSE.STAGES: the parent does not fuse at {sorted(extra)}")
    child_groups = dict(shape.named_modules())
    groups = [(n, g) for n, g in parent.named_modules() if isinstance(g, TMSAGroup)]
    saved = [(g, [(b.window, b.shift) for b in g.blocks]) for _, g in groups]
    flags = parent.use_spike, parent.fuse_stages
    try:
        for name, group in groups:
            child = child_groups[name]
            assert isinstance(child, TMSAGroup)
            group.active = len(child.blocks)
            for block, like in zip(group.blocks, child.blocks, strict=False):
                block.window, block.shift = like.window, like.shift
        parent.use_spike, parent.fuse_stages = shape.use_spike, shape.fuse_stages
        yield parent
    finally:
        parent.use_spike, parent.fuse_stages = flags
        for group, windows in saved:
            group.active = None
            for block, (window, shift) in zip(group.blocks, windows, strict=True):
                block.window, block.shift = window, shift
