"""Declarative search spaces: YAML files mapping dotted config paths to distributions.

A space file::

    description: around the guide's scheme A
    base: baseline                      # a preset name; the sampled values are applied to it
    params:
      MODEL.VRT_DEPTHS[1]: {int: [6, 8]}              # stage 2 depth, 6..8
      MODEL.VRT_DEPTHS[7]: {int: [4, 8], step: 2}     # first stage-8 group
      MODEL.WINDOW_SIZE: {choices: [7, 8]}
      MODEL.FUSE.STAGES: {choices: [[1, 2, 3, 4], [2, 3, 4]]}
      MODEL.FUSE.STAGES: {subset: [1, 2, 3, 4]}       # or: any subset, one yes/no per stage
      TRAIN.AMP_DTYPE: {choices: [float16, bfloat16], when: {TRAIN.AMP_ENABLED: true}}

Kinds: ``int: [low, high]`` (+ ``step``), ``float: [low, high]`` (+ ``log``), ``choices: [...]``
(lists are encoded as comma strings for Optuna and decoded in :func:`_decode`), ``subset: [...]``
(one boolean Optuna parameter ``PATH:item`` per item). ``when`` guards a parameter on values of the
configuration sampled so far (file order). Every value is validated against the base config on load.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna
import yaml

from model import VRTSpikeConfig, load_preset
from model.errors import ConfigError, VRTSpikeError

__all__ = ["SpaceError", "Param", "SearchSpace", "load_space", "available_spaces", "SPACES_DIR"]

logger = logging.getLogger(__name__)

SPACES_DIR = Path(__file__).resolve().parents[2] / "spaces"

Kind = Literal["int", "float", "choices", "subset"]
_KINDS = ("int", "float", "choices", "subset")


class SpaceError(VRTSpikeError):
    """A search-space file that cannot be used (names the file and the parameter)."""


def _encode(value: Any) -> Any:
    """Config value -> Optuna categorical value (lists become ``"1,2,3"``)."""
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return value


def _decode(base_value: Any, value: Any) -> Any:
    """Optuna value -> config value; the one place comma strings turn back into lists."""
    if isinstance(base_value, list) and isinstance(value, str):
        return [int(v) for v in value.split(",") if v.strip()]
    return value


@dataclass(frozen=True)
class Param:
    """One searched config path."""

    path: str
    kind: Kind
    low: float = 0
    high: float = 0
    step: int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    when: tuple[tuple[str, Any], ...] = ()

    def optuna_names(self) -> tuple[str, ...]:
        """The Optuna parameter name(s) this entry samples."""
        if self.kind == "subset":
            return tuple(f"{self.path}:{item}" for item in self.choices)
        return (self.path,)

    def suggest(self, trial: optuna.trial.BaseTrial, base_value: Any) -> Any:
        """Sample through the public ``suggest_*`` API; returns a config value."""
        if self.kind == "int":
            return trial.suggest_int(self.path, int(self.low), int(self.high), step=self.step or 1)
        if self.kind == "float":
            return trial.suggest_float(self.path, self.low, self.high, log=self.log)
        if self.kind == "choices":
            encoded = [_encode(c) for c in self.choices]
            return _decode(base_value, trial.suggest_categorical(self.path, encoded))
        picked = [
            item
            for item, name in zip(self.choices, self.optuna_names(), strict=True)
            if trial.suggest_categorical(name, [True, False])
        ]
        return picked

    def params_for(self, value: Any) -> dict[str, Any] | None:
        """Optuna params that sample ``value``, or None if the space cannot express it."""
        if self.kind == "int":
            ok = isinstance(value, int) and self.low <= value <= self.high
            ok = ok and (value - int(self.low)) % (self.step or 1) == 0
            return {self.path: value} if ok else None
        if self.kind == "float":
            return {self.path: value} if self.low <= value <= self.high else None
        if self.kind == "choices":
            encoded = [_encode(c) for c in self.choices]
            return {self.path: _encode(value)} if _encode(value) in encoded else None
        if not set(value) <= set(self.choices):
            return None
        return {n: item in value for item, n in zip(self.choices, self.optuna_names(), strict=True)}

    def describe(self) -> str:
        """Human-readable range, e.g. ``int 6..8`` or ``{7, 8}``."""
        if self.kind == "int":
            return f"int {int(self.low)}..{int(self.high)}" + (
                f" step {self.step}" if self.step else ""
            )
        if self.kind == "float":
            return f"float {self.low}..{self.high}" + (" log" if self.log else "")
        if self.kind == "choices":
            return "{" + ", ".join(str(c) for c in self.choices) + "}"
        return "any subset of {" + ", ".join(str(c) for c in self.choices) + "}"

    def candidate_values(self) -> list[Any]:
        """Values worth validating on load (ends of ranges, every choice)."""
        if self.kind in ("int", "float"):
            cast = int if self.kind == "int" else float
            return [cast(self.low), cast(self.high)]
        if self.kind == "choices":
            return list(self.choices)
        return [list(self.choices)]


@dataclass(frozen=True)
class SearchSpace:
    """A named set of parameters applied to a base configuration."""

    name: str
    description: str
    base: str
    params: tuple[Param, ...]
    source: str

    def base_config(self) -> VRTSpikeConfig:
        """The configuration every sampled value is applied to."""
        return load_preset(self.base)

    def sample(self, trial: optuna.trial.BaseTrial) -> VRTSpikeConfig:
        """Sample a configuration; guarded parameters are sampled only where their guard holds.

        Raises:
            ConfigError: the sampled combination is invalid (e.g. heads vs widths).
        """
        cfg = self.base_config()
        for p in self.params:
            if all(cfg.get(path) == value for path, value in p.when):
                cfg = cfg.with_overrides({p.path: p.suggest(trial, cfg.get(p.path))})
        return cfg

    def params_for(self, cfg: VRTSpikeConfig) -> tuple[dict[str, Any] | None, str]:
        """Optuna params that make :meth:`sample` rebuild ``cfg``'s model and AMP settings.

        Returns:
            ``(params, "")`` or ``(None, reason)`` when the space cannot express ``cfg``.
        """
        params: dict[str, Any] = {}
        built = self.base_config()
        for p in self.params:
            if not all(built.get(path) == value for path, value in p.when):
                continue
            want = cfg.get(p.path)
            got = p.params_for(want)
            if got is None:
                return None, f"{p.path} = {want} is outside the space ({p.describe()})"
            params |= got
            built = built.with_overrides({p.path: want})
        differing = _deployment_diff(built, cfg)
        if differing:
            return None, f"{differing} differs and is not searched in this space"
        return params, ""


def _deployment_diff(a: VRTSpikeConfig, b: VRTSpikeConfig) -> str:
    """First MODEL / AMP key on which two configs differ ("" if none)."""
    da, db = a.to_dict(), b.to_dict()

    def walk(x: Any, y: Any, path: str) -> str:
        if isinstance(x, dict):
            for k in x:
                found = walk(x[k], y[k], f"{path}.{k}" if path else k)
                if found:
                    return found
            return ""
        return path if x != y else ""

    for key in ("AMP_ENABLED", "AMP_DTYPE"):
        if da["TRAIN"][key] != db["TRAIN"][key]:
            return f"TRAIN.{key}"
    return walk(da["MODEL"], db["MODEL"], "MODEL")


def available_spaces() -> list[str]:
    """Names of the spaces shipped in ``spaces/``."""
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def load_space(name_or_path: str | Path) -> SearchSpace:
    """Load and validate a space by name (``spaces/<name>.yaml``) or file path.

    Raises:
        SpaceError: missing file, malformed YAML, unknown path, empty range, impossible value.
    """
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = SPACES_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise SpaceError(
                f"unknown space {str(name_or_path)!r} (shipped: {', '.join(available_spaces())}; "
                "or give a path to a .yaml file)"
            )
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise SpaceError(f"{path}: cannot read space file: {e.strerror or e}") from e
    except yaml.YAMLError as e:
        raise SpaceError(f"{path}: malformed YAML: {' '.join(str(e).split())}") from e
    return _parse(data, path)


def _parse(data: Any, path: Path) -> SearchSpace:
    def fail(msg: str) -> SpaceError:
        return SpaceError(f"{path}: {msg}")

    if not isinstance(data, dict):
        raise fail("expected a mapping with 'base' and 'params'")
    unknown = set(data) - {"name", "description", "base", "params"}
    if unknown:
        raise fail(
            f"unknown top-level key {sorted(unknown)[0]!r} (valid: name, description, base, params)"
        )
    base = data.get("base", "baseline")
    try:
        base_cfg = load_preset(str(base))
    except ConfigError as e:
        raise fail(f"base: {e}") from e
    raw = data.get("params")
    if not isinstance(raw, dict) or not raw:
        raise fail("'params' must be a non-empty mapping of config paths to distributions")
    params = tuple(_parse_param(str(k), v, base_cfg, fail) for k, v in raw.items())
    return SearchSpace(
        name=str(data.get("name", path.stem)),
        description=str(data.get("description", "")),
        base=str(base),
        params=params,
        source=str(path),
    )


def _parse_param(key: str, spec: Any, base: VRTSpikeConfig, fail: Any) -> Param:
    where = f"parameter {key}"
    try:
        base_value = base.get(key)
    except ConfigError as e:
        raise fail(f"{where}: unknown config path ({e})") from e
    if not isinstance(spec, Mapping):
        raise fail(f"{where}: expected a mapping such as {{int: [low, high]}}")
    kinds = [k for k in _KINDS if k in spec]
    extra = set(spec) - set(_KINDS) - {"step", "log", "when"}
    if len(kinds) != 1 or extra:
        raise fail(f"{where}: give exactly one of {', '.join(_KINDS)} (plus step/log/when)")
    kind: Kind = kinds[0]  # type: ignore[assignment]
    body = spec[kind]
    when = _parse_when(spec.get("when", {}), base, where, fail)
    if kind in ("int", "float"):
        if not (isinstance(body, list) and len(body) == 2):
            raise fail(f"{where}: {kind} needs [low, high]")
        low, high = body
        if kind == "int" and not all(isinstance(v, int) and not isinstance(v, bool) for v in body):
            raise fail(f"{where}: int bounds must be integers, got {body}")
        if low > high:
            raise fail(f"{where}: empty range [{low}, {high}]")
        step = spec.get("step")
        if step is not None and (not isinstance(step, int) or step < 1):
            raise fail(f"{where}: step must be a positive integer, got {step!r}")
        if step is not None and (high - low) % step:
            raise fail(f"{where}: range [{low}, {high}] is not a whole number of steps of {step}")
        param = Param(
            key, kind, low=low, high=high, step=step, log=bool(spec.get("log", False)), when=when
        )
    else:
        if not isinstance(body, list) or not body:
            raise fail(f"{where}: {kind} needs a non-empty list")
        encoded = [_encode(c) for c in body]
        if len(set(map(repr, encoded))) != len(encoded):
            raise fail(f"{where}: repeated choices in {body}")
        if kind == "subset" and not isinstance(base_value, list):
            raise fail(f"{where}: subset needs a list-valued config path")
        param = Param(
            key,
            kind,
            choices=tuple(tuple(c) if isinstance(c, list) else c for c in body),
            when=when,
        )
    for value in param.candidate_values():
        value = list(value) if isinstance(value, tuple) else value
        try:
            base.with_overrides({key: _decode(base_value, value)})
        except ConfigError as e:
            raise fail(f"{where}: value {value!r} is impossible: {e}") from e
    return param


def _parse_when(
    raw: Any, base: VRTSpikeConfig, where: str, fail: Any
) -> tuple[tuple[str, Any], ...]:
    if not isinstance(raw, Mapping):
        raise fail(f"{where}: 'when' must map config paths to values")
    for path in raw:
        try:
            base.get(str(path))
        except ConfigError as e:
            raise fail(f"{where}: 'when' names an unknown config path ({e})") from e
    return tuple((str(k), v) for k, v in raw.items())
