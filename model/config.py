"""The VRT-Spike configuration: a frozen, typed dataclass tree read and written as the guide's YAML.

YAML keys are the upper-case field names, grouped in the sections ``MODEL``, ``TRAIN`` and ``DATA``
(see SEED-GUIDE.md); attributes are lower case (``cfg.model.fuse.chunk_size``). One strict loader
turns nested dicts into the tree: unknown keys, wrong types and impossible values raise
:class:`~model.errors.ConfigError` naming the key path.

Depth convention (VRT's own): ``VRT_DEPTHS`` entries 1-7 are stages 1-7; every further entry is one
reconstruction group of stage 8. ``INDEP_RECONSTS`` lists (0-based, as in the official network)
the entries of ``VRT_DEPTHS`` whose stage-8 group attends within single frames.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError

__all__ = [
    "ChunkConfig",
    "FuseConfig",
    "ModelConfig",
    "TrainConfig",
    "DataConfig",
    "VRTSpikeConfig",
    "stage_scale_index",
]

PROVENANCE_KEY = "PROVENANCE"
"""Top-level key an exported YAML may carry; the loader ignores it (it is not part of the model)."""

_STAGE_SCALE = (0, 1, 2, 3, 2, 1, 0)  # stages 1-7 -> scale index (1, 1/2, 1/4, 1/8, 1/4, 1/2, 1)


def stage_scale_index(stage: int) -> int:
    """Scale index (0 = full, 3 = 1/8) of stage 1-7."""
    return _STAGE_SCALE[stage - 1]


@dataclass(frozen=True)
class ChunkConfig:
    """Per-pixel temporal attention with spatial chunking (spike TSA; base of the fusion config).

    Chunking only splits pixels into independent batches: it never changes the output.
    """

    heads: int = 4
    adaptive_chunk: bool = True
    max_batch_tokens: int = 49152
    chunk_size: int = 64
    chunk_shape: Literal["square", "rows"] = "square"
    mlp_ratio: float = 2.0

    def _validate(self, path: str) -> None:
        _check(self.heads >= 1, f"{path}.HEADS", f"must be >= 1, got {self.heads}")
        _check(self.chunk_size >= 1, f"{path}.CHUNK_SIZE", f"must be >= 1, got {self.chunk_size}")
        _check(
            self.max_batch_tokens >= 1,
            f"{path}.MAX_BATCH_TOKENS",
            f"must be >= 1, got {self.max_batch_tokens}",
        )
        _check(self.mlp_ratio > 0, f"{path}.MLP_RATIO", f"must be > 0, got {self.mlp_ratio}")


@dataclass(frozen=True)
class FuseConfig(ChunkConfig):
    """Temporal cross-attention fusion of spike features into the RGB stages in ``stages``."""

    stages: tuple[int, ...] = (1, 2, 3, 4)

    def _validate(self, path: str) -> None:
        super()._validate(path)
        for s in self.stages:
            _check(1 <= s <= 7, f"{path}.STAGES", f"fusion stage {s} is outside 1-7")
        _check(
            list(self.stages) == sorted(set(self.stages)),
            f"{path}.STAGES",
            f"must be strictly increasing without repeats, got {list(self.stages)}",
        )


@dataclass(frozen=True)
class ModelConfig:
    """The network: VRT backbone (official semantics) plus the seed system's spike branch."""

    use_spike: bool = True
    vrt_depths: tuple[int, ...] = (8, 8, 8, 8, 4, 4, 4, 8)
    window_size: int = 8
    temporal_window: int = 5
    embed_dims: tuple[int, ...] = (96,) * 8
    num_heads: tuple[int, ...] = (6,) * 8
    mlp_ratio: float = 2.0
    deformable_groups: int = 16
    mutual_attn_ratio: float = 0.75
    indep_reconsts: tuple[int, ...] = ()
    drop_path_rate: float = 0.2
    fuse: FuseConfig = field(default_factory=FuseConfig)
    spike_tsa: ChunkConfig = field(default_factory=ChunkConfig)

    @property
    def recon_depths(self) -> tuple[int, ...]:
        """Depth of each stage-8 reconstruction group."""
        return self.vrt_depths[7:]

    def spike_scales(self) -> tuple[int, ...]:
        """Scale indices whose spike features some fusion needs (sorted)."""
        return tuple(sorted({stage_scale_index(s) for s in self.fuse.stages}))

    def _validate(self, path: str) -> None:
        d = self.vrt_depths
        _check(len(d) >= 8, f"{path}.VRT_DEPTHS", f"needs at least 8 entries, got {len(d)}")
        for i, v in enumerate(d[:7]):
            _check(v >= 0, f"{path}.VRT_DEPTHS[{i}]", f"stage depth must be >= 0, got {v}")
        for i, v in enumerate(d[7:], start=7):
            _check(v >= 1, f"{path}.VRT_DEPTHS[{i}]", f"stage-8 group depth must be >= 1, got {v}")
        _check(
            2 <= self.window_size <= 8,
            f"{path}.WINDOW_SIZE",
            f"must be between 2 and 8, got {self.window_size}",
        )
        _check(
            self.temporal_window >= 1,
            f"{path}.TEMPORAL_WINDOW",
            f"must be >= 1, got {self.temporal_window}",
        )
        for key, values in (("EMBED_DIMS", self.embed_dims), ("NUM_HEADS", self.num_heads)):
            _check(
                len(values) == 8,
                f"{path}.{key}",
                f"needs 8 entries (stages 1-7, then stage 8), got {len(values)}",
            )
            for i, v in enumerate(values):
                _check(v >= 1, f"{path}.{key}[{i}]", f"must be >= 1, got {v}")
        for i, (dim, heads) in enumerate(zip(self.embed_dims, self.num_heads, strict=True)):
            _check(
                dim % heads == 0,
                f"{path}.NUM_HEADS[{i}]",
                f"{heads} heads do not divide embed dim {dim}",
            )
        _check(self.mlp_ratio > 0, f"{path}.MLP_RATIO", f"must be > 0, got {self.mlp_ratio}")
        _check(
            self.deformable_groups >= 1,
            f"{path}.DEFORMABLE_GROUPS",
            f"must be >= 1, got {self.deformable_groups}",
        )
        for i, dim in enumerate(self.embed_dims[:7]):
            _check(
                dim % self.deformable_groups == 0,
                f"{path}.DEFORMABLE_GROUPS",
                f"{self.deformable_groups} groups do not divide stage {i + 1} embed dim {dim}",
            )
        _check(
            0.0 <= self.mutual_attn_ratio <= 1.0,
            f"{path}.MUTUAL_ATTN_RATIO",
            f"must be in [0, 1], got {self.mutual_attn_ratio}",
        )
        for g in self.indep_reconsts:
            _check(
                7 <= g < len(d),
                f"{path}.INDEP_RECONSTS",
                f"entry {g} is not a stage-8 group (valid: 7-{len(d) - 1} for {len(d)} depths)",
            )
        _check(
            list(self.indep_reconsts) == sorted(set(self.indep_reconsts)),
            f"{path}.INDEP_RECONSTS",
            "must be strictly increasing without repeats",
        )
        _check(
            0.0 <= self.drop_path_rate < 1.0,
            f"{path}.DROP_PATH_RATE",
            f"must be in [0, 1), got {self.drop_path_rate}",
        )
        self.fuse._validate(f"{path}.FUSE")
        self.spike_tsa._validate(f"{path}.SPIKE_TSA")
        if not self.use_spike:
            return
        for s in self.fuse.stages:
            dim = self.embed_dims[s - 1]
            _check(
                dim % self.fuse.heads == 0,
                f"{path}.FUSE.HEADS",
                f"{self.fuse.heads} heads do not divide stage {s} embed dim {dim}",
            )
        for scale in self.spike_scales():
            dim = self.embed_dims[scale]
            _check(
                dim % self.spike_tsa.heads == 0,
                f"{path}.SPIKE_TSA.HEADS",
                f"{self.spike_tsa.heads} heads do not divide spike width {dim} "
                f"(scale 1/{2**scale})",
            )


@dataclass(frozen=True)
class TrainConfig:
    """Training and execution settings (AMP applies to training and to the deployment forward)."""

    amp_enabled: bool = False
    amp_opt_level: Literal["O1"] = "O1"
    amp_dtype: Literal["auto", "float16", "bfloat16"] = "auto"
    batch_size: int = 1
    gradient_accumulation_steps: int = 1
    use_checkpoint_attn: bool = False
    use_checkpoint_ffn: bool = False
    lr: float = 1e-4
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    charbonnier_eps: float = 1e-6

    def _validate(self, path: str) -> None:
        _check(self.batch_size >= 1, f"{path}.BATCH_SIZE", f"must be >= 1, got {self.batch_size}")
        _check(
            self.gradient_accumulation_steps >= 1,
            f"{path}.GRADIENT_ACCUMULATION_STEPS",
            f"must be >= 1, got {self.gradient_accumulation_steps}",
        )
        _check(self.lr > 0, f"{path}.LR", f"must be > 0, got {self.lr}")
        _check(
            self.weight_decay >= 0, f"{path}.WEIGHT_DECAY", f"must be >= 0, got {self.weight_decay}"
        )
        for i, b in enumerate(self.betas):
            _check(0.0 <= b < 1.0, f"{path}.BETAS[{i}]", f"must be in [0, 1), got {b}")
        _check(self.grad_clip > 0, f"{path}.GRAD_CLIP", f"must be > 0, got {self.grad_clip}")
        _check(
            self.charbonnier_eps > 0,
            f"{path}.CHARBONNIER_EPS",
            f"must be > 0, got {self.charbonnier_eps}",
        )


@dataclass(frozen=True)
class DataConfig:
    """Clip geometry: RGB frames per clip, spike bins per frame, training crop."""

    crop_size: int = 256
    clip_len: int = 5
    num_voxel_bins: int = 32

    def _validate(self, path: str) -> None:
        _check(self.crop_size >= 8, f"{path}.CROP_SIZE", f"must be >= 8, got {self.crop_size}")
        _check(self.clip_len >= 1, f"{path}.CLIP_LEN", f"must be >= 1, got {self.clip_len}")
        _check(
            self.num_voxel_bins >= 1,
            f"{path}.NUM_VOXEL_BINS",
            f"must be >= 1, got {self.num_voxel_bins}",
        )


@dataclass(frozen=True)
class VRTSpikeConfig:
    """The whole configuration; defaults are the seed system's (the guide's baseline)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        self.model._validate("MODEL")
        self.train._validate("TRAIN")
        self.data._validate("DATA")

    # ---- dict / YAML -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VRTSpikeConfig:
        """Build from the guide's nested dict; missing keys take defaults.

        A top-level ``PROVENANCE`` block (written by the exporter) is ignored.

        Raises:
            ConfigError: unknown key, wrong type or impossible value (message names the path).
        """
        if not isinstance(d, dict):
            raise ConfigError(f"<root>: expected a mapping, got {type(d).__name__}")
        d = {k: v for k, v in d.items() if k != PROVENANCE_KEY}
        return _build(cls, d, "")

    def to_dict(self) -> dict[str, Any]:
        """The guide's nested structure with upper-case keys and lists (YAML/JSON ready)."""
        return _dump(self)

    @classmethod
    def from_yaml(cls, path: str | Path) -> VRTSpikeConfig:
        """Load a YAML file in the guide's format.

        Raises:
            ConfigError: unreadable or malformed file, or an invalid config (names file and key).
        """
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text())
        except OSError as e:
            raise ConfigError(f"{p}: cannot read config: {e.strerror or e}") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: malformed YAML: {_one_line(e)}") from e
        try:
            return cls.from_dict({} if data is None else data)
        except ConfigError as e:
            raise ConfigError(f"{p}: {e}") from e

    def to_yaml(self, path: str | Path, *, extra: dict[str, Any] | None = None) -> None:
        """Write the guide's YAML format; ``extra`` adds top-level blocks such as ``PROVENANCE``."""
        Path(path).write_text(self.to_yaml_text(extra=extra))

    def to_yaml_text(self, *, extra: dict[str, Any] | None = None) -> str:
        """The YAML text :meth:`to_yaml` writes."""
        return yaml.safe_dump({**self.to_dict(), **(extra or {})}, sort_keys=False)

    def with_overrides(self, overrides: dict[str, Any]) -> VRTSpikeConfig:
        """A validated copy with values replaced by dotted YAML paths (``"MODEL.FUSE.CHUNK_SIZE"``).

        Raises:
            ConfigError: unknown path or invalid value.
        """
        d = self.to_dict()
        for dotted, value in overrides.items():
            node, leaf, index = _locate(d, dotted)
            value = list(value) if isinstance(value, tuple) else value
            if index is None:
                node[leaf] = value
            else:
                node[leaf][index] = value
        return VRTSpikeConfig.from_dict(d)

    def get(self, dotted: str) -> Any:
        """The value at a dotted YAML path (``"MODEL.WINDOW_SIZE"``, ``"MODEL.VRT_DEPTHS[7]"``).

        Lists come back as lists. Raises :class:`ConfigError` for an unknown path.
        """
        node, leaf, index = _locate(self.to_dict(), dotted)
        return node[leaf] if index is None else node[leaf][index]


# ---- the strict loader ---------------------------------------------------------------------


_INDEXED = re.compile(r"^([A-Z0-9_]+)\[(\d+)\]$")


def _locate(d: dict[str, Any], dotted: str) -> tuple[dict[str, Any], str, int | None]:
    """Resolve a dotted path (last part optionally ``NAME[i]``) in a config dict."""
    *parents, leaf = dotted.split(".")
    node: Any = d
    for i, key in enumerate(parents):
        node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            raise ConfigError(f"{'.'.join(parents[: i + 1])}: unknown config section")
    index = None
    m = _INDEXED.match(leaf)
    if m:
        leaf, index = m.group(1), int(m.group(2))
    if leaf not in node or isinstance(node[leaf], dict):
        raise ConfigError(f"{dotted}: unknown config key")
    if index is not None:
        if not isinstance(node[leaf], list):
            raise ConfigError(f"{dotted}: {leaf} is not a list")
        if index >= len(node[leaf]):
            raise ConfigError(f"{dotted}: index out of range (length {len(node[leaf])})")
    return node, leaf, index


def _check(ok: bool, path: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{path}: {message}")


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _build(cls: type, d: Any, path: str) -> Any:
    where = path or "<root>"
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name.upper(): f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in d if k not in fields]
    if unknown:
        raise ConfigError(
            f"{_join(path, str(unknown[0]))}: unknown key (valid: {', '.join(sorted(fields))})"
        )
    kwargs = {fields[k]: _convert(hints[fields[k]], v, _join(path, k)) for k, v in d.items()}
    return cls(**kwargs)


def _convert(tp: Any, v: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, v, path)
    if origin is Literal:
        choices = typing.get_args(tp)
        if v not in choices:
            raise ConfigError(f"{path}: must be one of {list(choices)}, got {v!r}")
        return v
    if origin is tuple:
        if not isinstance(v, list | tuple):
            raise ConfigError(f"{path}: expected a list, got {type(v).__name__}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], x, f"{path}[{i}]") for i, x in enumerate(v))
        if len(v) != len(args):
            raise ConfigError(f"{path}: expected {len(args)} entries, got {len(v)}")
        pairs = enumerate(zip(args, v, strict=True))
        return tuple(_convert(a, x, f"{path}[{i}]") for i, (a, x) in pairs)
    if tp is bool:
        if not isinstance(v, bool):
            raise ConfigError(f"{path}: expected true or false, got {v!r}")
        return v
    if tp is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{path}: expected an integer, got {v!r}")
        return v
    if tp is float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ConfigError(f"{path}: expected a finite number, got {v!r}")
        return float(v)
    if tp is str:
        if not isinstance(v, str):
            raise ConfigError(f"{path}: expected a string, got {v!r}")
        return v
    raise TypeError(f"unsupported config field type {tp!r} at {path}")  # a bug here, not bad input


def _dump(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name.upper(): _dump(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [_dump(x) for x in obj]
    return obj
