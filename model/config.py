"""The VRT-Spike configuration: a frozen, typed dataclass tree read and written as the guide's YAML.

YAML keys are the upper-case field names, grouped in the sections ``MODEL``, ``TRAIN`` and ``DATA``
(the layout of the performance guide the seed system shipped with); attributes are lower case
(``cfg.model.fuse.chunk_size``). One strict loader turns nested dicts into the tree: unknown keys,
wrong types and impossible values raise :class:`~model.errors.ConfigError` naming the key path.
Single-field bounds are declared beside each field (:class:`Bound` in the field's metadata) and
checked for every config, however it was built; only rules that tie fields together (heads that
must divide widths, for instance) are written by hand, in ``ModelConfig._rules``.

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

from .chunking import Chunking
from .errors import ConfigError

__all__ = [
    "Bound",
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
class Bound:
    """Bounds of a numeric field, or of every entry of a tuple field, declared beside the field.

    ``ge``/``gt``/``le``/``lt`` bound the value (each entry for tuples); ``length`` and
    ``min_length`` bound a tuple's length; ``increasing`` asks for strictly increasing entries
    (no repeats). :meth:`problem` says what is wrong with a value, "" when nothing is.
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    length: int | None = None
    min_length: int | None = None
    increasing: bool = False
    length_note: str = ""

    def describe(self) -> str:
        """``>= 1``, ``> 0``, ``between 2 and 8`` or ``in [0, 1)``."""
        if self.ge is not None and self.le is not None:
            return f"between {self.ge} and {self.le}"
        if self.ge is not None and self.lt is not None:
            return f"in [{self.ge}, {self.lt})"
        ends = ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
        return " and ".join(f"{op} {v}" for op, v in ends if v is not None)

    def _fits(self, v: float) -> bool:
        return (
            (self.ge is None or v >= self.ge)
            and (self.gt is None or v > self.gt)
            and (self.le is None or v <= self.le)
            and (self.lt is None or v < self.lt)
        )

    def problem(self, value: Any, path: str) -> str:
        """``"<path>: <what is wrong>"`` for a value outside the bounds, else ``""``."""
        if not isinstance(value, tuple):
            return "" if self._fits(value) else f"{path}: must be {self.describe()}, got {value}"
        n = len(value)
        note = f" ({self.length_note})" if self.length_note else ""
        if self.length is not None and n != self.length:
            return f"{path}: needs {self.length} entries{note}, got {n}"
        if self.min_length is not None and n < self.min_length:
            return f"{path}: needs at least {self.min_length} entries{note}, got {n}"
        for i, v in enumerate(value):
            if self._fits(v):
                continue
            if self.ge is not None and self.le is not None:
                return f"{path}: entry {v} is outside {self.ge}-{self.le}"
            return f"{path}[{i}]: must be {self.describe()}, got {v}"
        if self.increasing and list(value) != sorted(set(value)):
            return f"{path}: must be strictly increasing without repeats, got {list(value)}"
        return ""


_BOUND = "bound"  # dataclass field metadata key of a field's Bound


def _bounded(default: Any, **bound: Any) -> Any:
    """A dataclass field whose bounds (:class:`Bound` keywords) every config is checked against."""
    return field(default=default, metadata={_BOUND: Bound(**bound)})


@dataclass(frozen=True)
class ChunkConfig:
    """Per-pixel temporal attention with spatial chunking (spike TSA; base of the fusion config).

    The four chunking fields travel to the network as one :class:`~model.chunking.Chunking`
    (:attr:`chunking`); chunking only splits pixels into independent batches and never changes
    the output.
    """

    heads: int = _bounded(4, ge=1)
    adaptive_chunk: bool = True
    max_batch_tokens: int = _bounded(49152, ge=1)
    chunk_size: int = _bounded(64, ge=1)
    chunk_shape: Literal["square", "rows"] = "square"
    mlp_ratio: float = _bounded(2.0, gt=0)

    @property
    def chunking(self) -> Chunking:
        """The chunking knobs as one value."""
        return Chunking(
            chunk_size=self.chunk_size,
            max_batch_tokens=self.max_batch_tokens,
            chunk_shape=self.chunk_shape,
            adaptive_chunk=self.adaptive_chunk,
        )


@dataclass(frozen=True)
class FuseConfig(ChunkConfig):
    """Temporal cross-attention fusion of spike features into the RGB stages in ``stages``."""

    stages: tuple[int, ...] = _bounded((1, 2, 3, 4), ge=1, le=7, increasing=True)


@dataclass(frozen=True)
class ModelConfig:
    """The network: VRT backbone (official semantics) plus the seed system's spike branch."""

    use_spike: bool = True
    vrt_depths: tuple[int, ...] = _bounded(
        (8, 8, 8, 8, 4, 4, 4, 8), ge=0, min_length=8, length_note="stages 1-7, then stage-8 groups"
    )
    window_size: int = _bounded(8, ge=2, le=8)
    temporal_window: int = _bounded(5, ge=1)
    embed_dims: tuple[int, ...] = _bounded(
        (96,) * 8, ge=1, length=8, length_note="stages 1-7, then stage 8"
    )
    num_heads: tuple[int, ...] = _bounded(
        (6,) * 8, ge=1, length=8, length_note="stages 1-7, then stage 8"
    )
    mlp_ratio: float = _bounded(2.0, gt=0)
    deformable_groups: int = _bounded(16, ge=1)
    mutual_attn_ratio: float = _bounded(0.75, ge=0.0, le=1.0)
    indep_reconsts: tuple[int, ...] = _bounded((), increasing=True)
    drop_path_rate: float = _bounded(0.2, ge=0.0, lt=1.0)
    fuse: FuseConfig = field(default_factory=FuseConfig)
    spike_tsa: ChunkConfig = field(default_factory=ChunkConfig)

    @property
    def recon_depths(self) -> tuple[int, ...]:
        """Depth of each stage-8 reconstruction group."""
        return self.vrt_depths[7:]

    def spike_scales(self) -> tuple[int, ...]:
        """Scale indices whose spike features some fusion needs (sorted)."""
        return tuple(sorted({stage_scale_index(s) for s in self.fuse.stages}))

    def _rules(self, path: str) -> None:
        """Rules that tie fields together (every single-field bound is declared on the field)."""
        d = self.vrt_depths
        for i, v in enumerate(d[7:], start=7):
            _check(v >= 1, f"{path}.VRT_DEPTHS[{i}]", f"stage-8 group depth must be >= 1, got {v}")
        for i, (dim, heads) in enumerate(zip(self.embed_dims, self.num_heads, strict=True)):
            _divides(heads, dim, f"{path}.NUM_HEADS[{i}]", f"{heads} heads", f"embed dim {dim}")
        for i, dim in enumerate(self.embed_dims[:7]):
            what = f"stage {i + 1} embed dim {dim}"
            g = self.deformable_groups
            _divides(g, dim, f"{path}.DEFORMABLE_GROUPS", f"{g} groups", what)
        for g in self.indep_reconsts:
            _check(
                7 <= g < len(d),
                f"{path}.INDEP_RECONSTS",
                f"entry {g} is not a stage-8 group (valid: 7-{len(d) - 1} for {len(d)} depths)",
            )
        if not self.use_spike:
            return
        h = self.fuse.heads
        for s in self.fuse.stages:
            what = f"stage {s} embed dim {self.embed_dims[s - 1]}"
            _divides(h, self.embed_dims[s - 1], f"{path}.FUSE.HEADS", f"{h} heads", what)
        h = self.spike_tsa.heads
        for scale in self.spike_scales():
            what = f"spike width {self.embed_dims[scale]} (scale 1/{2**scale})"
            _divides(h, self.embed_dims[scale], f"{path}.SPIKE_TSA.HEADS", f"{h} heads", what)


@dataclass(frozen=True)
class TrainConfig:
    """Training and execution settings (AMP applies to training and to the deployment forward).

    ``FIX_ITER`` / ``FIX_LR_MUL`` / ``FIX_KEYS`` are VRT's own recipe (KAIR's VRT training
    options): parameters whose names contain a ``FIX_KEYS`` entry (the flow network and the
    deformable alignment) are frozen for the first ``FIX_ITER`` steps, then trained at
    ``FIX_LR_MUL`` times the learning rate.
    """

    amp_enabled: bool = False
    amp_opt_level: Literal["O1"] = "O1"
    amp_dtype: Literal["auto", "float16", "bfloat16"] = "auto"
    batch_size: int = _bounded(1, ge=1)
    gradient_accumulation_steps: int = _bounded(1, ge=1)
    use_checkpoint_attn: bool = False
    use_checkpoint_ffn: bool = False
    lr: float = _bounded(1e-4, gt=0)
    weight_decay: float = _bounded(1e-4, ge=0)
    betas: tuple[float, float] = _bounded((0.9, 0.99), ge=0.0, lt=1.0)
    grad_clip: float = _bounded(1.0, gt=0)
    charbonnier_eps: float = _bounded(1e-6, gt=0)
    fix_iter: int = _bounded(20000, ge=0)
    fix_lr_mul: float = _bounded(0.125, ge=0)
    fix_keys: tuple[str, ...] = ("spynet", "deform")


@dataclass(frozen=True)
class DataConfig:
    """Clip geometry: RGB frames per clip, spike bins per frame, training crop."""

    crop_size: int = _bounded(256, ge=8)
    clip_len: int = _bounded(5, ge=1)
    num_voxel_bins: int = _bounded(32, ge=1)


@dataclass(frozen=True)
class VRTSpikeConfig:
    """The whole configuration; defaults are the seed system's (the guide's baseline)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        _check_bounds(self, "")
        self.model._rules("MODEL")

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


def _divides(divisor: int, value: int, path: str, what: str, of: str) -> None:
    _check(value % divisor == 0, path, f"{what} do not divide {of}")


def _check_bounds(obj: Any, path: str) -> None:
    """Check every field's declared :class:`Bound`, depth first, in field order."""
    for f in dataclasses.fields(obj):
        value, where = getattr(obj, f.name), _join(path, f.name.upper())
        if dataclasses.is_dataclass(value):
            _check_bounds(value, where)
        elif _BOUND in f.metadata:
            problem = f.metadata[_BOUND].problem(value, where)
            if problem:
                raise ConfigError(problem)


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
