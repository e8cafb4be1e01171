"""VRT-Spike: the VRT backbone (stages 1-8, head) with the seed system's spike branch.

Pipeline (VRT, deblurring, ``pa_frames = 2``): SpyNet flows both ways at 4 scales; image-level
pre-alignment of both neighbours (27 channels); ``conv_first``; stages 1-7 (U-Net over space,
skips 3->6, 2->7, 1->after 7); stage 8 (entry LayerNorm + Linear, reconstruction groups); head
(LayerNorm, Linear added to the ``conv_first`` features, conv to 3 channels, + input frames).
Spike branch: a 3-D conv encoder gives features at scales 1..1/8, a per-pixel temporal
self-attention refines each scale that is used, and a temporal cross-attention fuses them into the
RGB features after every stage listed in ``MODEL.FUSE.STAGES`` (skips carry the fused features).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .config import ModelConfig, VRTSpikeConfig, stage_scale_index
from .flow import SpyNet, align_images, compute_flows
from .spike import SpikeEncoder, SpikeTemporalSelfAttention, TemporalCrossAttentionFusion
from .stage import ReconstructionGroup, Stage

__all__ = ["VRTSpike", "PartTimer"]

PartTimer = Callable[[str], AbstractContextManager[None]]
"""Called with a part name; the forward runs that part inside the returned context."""

_RESHAPES = ("none", "down", "down", "down", "up", "up", "up")
_PAD_MULTIPLE = 8  # three 2x space-to-depth steps
_SKIP_FROM = {6: 3, 7: 2}  # stage 6 input += stage-3 output, stage 7 input += stage-2 output


def _drop_path_schedule(rate: float, depths: tuple[int, ...]) -> list[list[float]]:
    """Stochastic depth rising linearly over all blocks (as ``torch.linspace``), split per entry."""
    total = sum(depths)
    rates = [rate * i / (total - 1) if total > 1 else 0.0 for i in range(total)]
    out, start = [], 0
    for d in depths:
        out.append(rates[start : start + d])
        start += d
    return out


def _build_stages(m: ModelConfig, dpr: list[list[float]], ckpt: dict[str, bool]) -> nn.ModuleList:
    """Stages 1-7 (the U-Net over space), in order.

    Args:
        m: The model's configuration.
        dpr: Drop-path rates per block, one list per entry of ``m.vrt_depths``.
        ckpt: The ``checkpoint_attn`` / ``checkpoint_ffn`` flags.
    """
    dims, heads, depths = m.embed_dims, m.num_heads, m.vrt_depths
    return nn.ModuleList(
        Stage(
            in_dim=dims[max(i - 1, 0)],
            dim=dims[i],
            depth=depths[i],
            heads=heads[i],
            window=m.window_size,
            temporal_window=m.temporal_window,
            reshape=_RESHAPES[i],  # type: ignore[arg-type]
            mutual_ratio=m.mutual_attn_ratio,
            mlp_ratio=m.mlp_ratio,
            drop_path=dpr[i],
            deformable_groups=m.deformable_groups,
            max_residue_magnitude=10.0 / 2 ** stage_scale_index(i + 1),
            **ckpt,
        )
        for i in range(7)
    )


def _build_stage8(m: ModelConfig, dpr: list[list[float]], ckpt: dict[str, bool]) -> nn.ModuleList:
    """Stage 8's reconstruction groups (entries 8.. of ``m.vrt_depths``), in order.

    Groups listed in ``m.indep_reconsts`` attend within single frames (temporal window 1).

    Args:
        m: The model's configuration.
        dpr: Drop-path rates per block, one list per entry of ``m.vrt_depths``.
        ckpt: The ``checkpoint_attn`` / ``checkpoint_ffn`` flags.
    """
    return nn.ModuleList(
        ReconstructionGroup(
            dim=m.embed_dims[7],
            heads=m.num_heads[7],
            window=(
                1 if i in m.indep_reconsts else m.temporal_window,
                m.window_size,
                m.window_size,
            ),
            mlp_ratio=m.mlp_ratio,
            drop_path=dpr[i],
            **ckpt,
        )
        for i in range(7, len(m.vrt_depths))
    )


def _build_spike_tsa(m: ModelConfig) -> nn.ModuleDict:
    """Temporal self-attention of the spike features, keyed by the scale index they refine."""
    tsa = m.spike_tsa
    return nn.ModuleDict(
        {
            str(s): SpikeTemporalSelfAttention(
                dim=m.embed_dims[s],
                heads=tsa.heads,
                chunking=tsa.chunking,
                mlp_ratio=tsa.mlp_ratio,
            )
            for s in m.spike_scales()
        }
    )


def _build_fusion(m: ModelConfig, fuse_stages: tuple[int, ...]) -> nn.ModuleDict:
    """Spike-into-RGB cross-attention fusions, keyed by the stage (1-7) they follow."""
    dims, fz = m.embed_dims, m.fuse
    return nn.ModuleDict(
        {
            str(s): TemporalCrossAttentionFusion(
                dim=dims[s - 1],
                spike_dim=dims[stage_scale_index(s)],
                heads=fz.heads,
                chunking=fz.chunking,
                mlp_ratio=fz.mlp_ratio,
            )
            for s in fuse_stages
        }
    )


class VRTSpike(nn.Module):
    """The VRT-Spike network built from a :class:`~model.config.VRTSpikeConfig`.

    ``VRTSpike(cfg)(rgb, spike)``: ``rgb`` (B, T, 3, H, W) in [0, 1], ``spike`` (B, T, K, H, W)
    with K = ``DATA.NUM_VOXEL_BINS`` (ignored, may be None, when ``MODEL.USE_SPIKE`` is false);
    returns (B, T, 3, H, W). Any H, W: inputs are padded to a multiple of 8 and cropped back.
    """

    def __init__(self, cfg: VRTSpikeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        m, tr = cfg.model, cfg.train
        dims = m.embed_dims
        ckpt = dict(checkpoint_attn=tr.use_checkpoint_attn, checkpoint_ffn=tr.use_checkpoint_ffn)
        dpr = _drop_path_schedule(m.drop_path_rate, m.vrt_depths)

        self.spynet = SpyNet()
        self.conv_first = nn.Conv2d(27, dims[0], 3, padding=1)  # VRT's Conv3d (1, 3, 3)
        self.stages = _build_stages(m, dpr, ckpt)
        self.stage8_norm = nn.LayerNorm(dims[6])
        self.stage8_linear = nn.Linear(dims[6], dims[7])
        self.stage8 = _build_stage8(m, dpr, ckpt)
        self.norm = nn.LayerNorm(dims[7])
        self.conv_after_body = nn.Linear(dims[7], dims[0])
        self.conv_last = nn.Conv2d(dims[0], 3, 3, padding=1)
        # Deviation from VRT (initialisation only): the last conv starts at zero, so a new
        # network is the identity on its input and a short training budget measures learning,
        # not recovery from a random output offset.
        nn.init.zeros_(self.conv_last.weight)
        nn.init.zeros_(self.conv_last.bias)

        self.use_spike = m.use_spike and bool(m.fuse.stages)  # no fusion: the branch is unused
        self.fuse_stages = m.fuse.stages if self.use_spike else ()
        if self.use_spike:
            self.spike_encoder = SpikeEncoder(in_bins=cfg.data.num_voxel_bins, dims=dims[:4])
            self.spike_tsa = _build_spike_tsa(m)
            self.fusion = _build_fusion(m, self.fuse_stages)
        self._timer: PartTimer | None = None

    # ---- profiling contract ------------------------------------------------------------------
    def part_names(self) -> tuple[str, ...]:
        """Names of the parts the forward runs, in order (each at most once per forward)."""
        names = ["flow", "conv_first"]
        if self.use_spike:
            names += ["spike_encoder", "spike_tsa"]
        for i in range(1, 8):
            names.append(f"stage{i}")
            if i in self.fuse_stages:
                names.append(f"fusion{i}")
        return (*names, "stage8", "head")

    def set_part_timer(self, timer: PartTimer | None) -> None:
        """Run each part inside ``timer(name)`` (None: no timing, the default)."""
        self._timer = timer

    def _part(self, name: str) -> AbstractContextManager[None]:
        return self._timer(name) if self._timer is not None else contextlib.nullcontext()

    # ---- forward -----------------------------------------------------------------------------
    def forward(self, rgb: torch.Tensor, spike: torch.Tensor | None = None) -> torch.Tensor:
        """Restore a clip.

        Args:
            rgb: Blurry frames (B, T, 3, H, W) in [0, 1].
            spike: Spike voxels (B, T, K, H, W); required when the model uses spikes.

        Returns:
            Restored frames (B, T, 3, H, W).
        """
        b, t, c, h, w = rgb.shape
        if c != 3:
            raise ValueError(f"rgb must be (B, T, 3, H, W), got {tuple(rgb.shape)}")
        if self.use_spike:
            k = self.cfg.data.num_voxel_bins
            if spike is None or tuple(spike.shape) != (b, t, k, h, w):
                got = None if spike is None else tuple(spike.shape)
                raise ValueError(f"spike must be {(b, t, k, h, w)} (B, T, K, H, W), got {got}")
        ph, pw = (-h) % _PAD_MULTIPLE, (-w) % _PAD_MULTIPLE
        rgb_p = _pad(rgb, ph, pw)  # (B, T, 3, Hp, Wp)

        with self._part("flow"):
            flows_bwd, flows_fwd = compute_flows(
                self.spynet, rgb_p
            )  # 4 scales of (B, T-1, 2, h, w)
        with self._part("conv_first"):
            aligned = align_images(rgb_p, flows_bwd[0], flows_fwd[0])  # (B, T, 27, Hp, Wp)
            x0 = self.conv_first(aligned.flatten(0, 1))  # (B*T, C0, Hp, Wp)
            x0 = rearrange(x0, "(b t) c h w -> b t h w c", b=b)
        spike_feats: dict[int, torch.Tensor] = {}
        if self.use_spike:
            with self._part("spike_encoder"):
                encoded = self.spike_encoder(_pad(spike, ph, pw))  # 4 x (B, T, h_s, w_s, C_s)
            with self._part("spike_tsa"):
                spike_feats = {int(s): tsa(encoded[int(s)]) for s, tsa in self.spike_tsa.items()}

        x, skips = x0, {}
        for i, stage in enumerate(self.stages, start=1):
            scale = stage_scale_index(i)
            if i in _SKIP_FROM:
                x = x + skips[_SKIP_FROM[i]]
            with self._part(f"stage{i}"):
                x = stage(x, flows_bwd[scale], flows_fwd[scale])  # (B, T, h_s, w_s, C_i)
            if i in self.fuse_stages:
                with self._part(f"fusion{i}"):
                    x = self.fusion[str(i)](x, spike_feats[scale])
            if i <= 3:
                skips[i] = x
        x = x + skips[1]

        with self._part("stage8"):
            x = self.stage8_linear(self.stage8_norm(x))
            for group in self.stage8:
                x = group(x)
        with self._part("head"):
            x = x0 + self.conv_after_body(self.norm(x))  # (B, T, Hp, Wp, C0)
            x = self.conv_last(rearrange(x, "b t h w c -> (b t) c h w"))
            out = rearrange(x, "(b t) c h w -> b t c h w", b=b) + rgb_p
        return out[..., :h, :w]


def _pad(x: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    """Replicate-pad (B, T, C, H, W) at the bottom/right."""
    if not (ph or pw):
        return x
    b, t = x.shape[:2]
    y = F.pad(x.flatten(0, 1), (0, pw, 0, ph), mode="replicate")
    return y.unflatten(0, (b, t))
