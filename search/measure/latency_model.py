"""Predicted deployment latency: a config as the sum of parts, each timed once in isolation.

A config's forward splits into parts whose times add up (``benchmarks/latency_model.py``
checks how well against whole networks timed directly). Each part is a table entry whose key
names everything its time depends on besides the table's own key:

- ``tmsa:...:n1`` and ``tmsa:...:n2``: a TMSA group of one block (unshifted) and of two blocks
  (unshifted + shifted) at a stage's resolution, width, heads, window and attention kind. A group
  of n blocks counts n // 2 pairs and n % 2 single blocks; a stage's time is linear in its depth.
  Stages at the same resolution and width (1 and 7, 2 and 6, 3 and 5) share entries.
- ``fusion:...`` and ``spike_tsa:...``: one spike fusion / spike self-attention at its resolution
  and widths, for one chunk plan: the rectangles the chunking knobs cut the grid into (many knob
  settings give the same plan, and the plan alone sets the work).
- The skeleton's parts: the config's network with every TMSA block removed (stages of depth 0,
  stage-8 groups running no block), profiled part by part: ``flow``, ``conv_first``,
  ``spike_encoder``, each stage's fixed work (entry reshape, two linears, parallel warping),
  stage 8's entry and group linears, the ``head``, and ``other`` (padding, skips, crop).

A table holds the entries of one (device name, torch version, threads, ``T x H x W``, dtype,
digest of the ``model`` package's source, so that a change of the network is another table): a
JSON file under ``studies/latency_tables/`` (``$VRTSPIKE_LATENCY_TABLES`` overrides). Missing
entries are measured on first need under an exclusive file lock, so the workers of a host
measure each entry once and reuse it; the file is replaced atomically after every canary
reading (below), so it is never half-written and a killed build keeps what it finished.

**One speed for the whole table.** A CPU host's speed wanders by 20-30 % within minutes (one
2-core Xeon: a fixed workload took 170-225 ms while a table filled and 138-163 ms a few minutes
later), and a part is timed once, so each entry would carry its own moment's speed; entries
filled on another day would carry another. A fixed fp32 workload, the *canary*
(:func:`canary_ms`: one mutual TMSA pair of 96 channels over 3x64x128 tokens), is therefore
timed when a table is created and again at least every :data:`_CANARY_EVERY_S` seconds while
parts are measured; each entry is its raw time scaled by the reference over the mean of the two
readings around it. The reference (a table's ``canary_ms``) is one per device name, torch version
and thread count in the folder (``canary-*.json``, the first reading any table took), so the
fp32 and bf16 tables of a host, and those of every shape, are on one speed. The file keeps the raw
times and those readings beside the entries. A prediction is thus the latency at the speed the
host had when the table was created (``canary_ms`` in the trial's record), for every entry alike.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from model import VRTSpike, VRTSpikeConfig
from model.chunking import Chunking
from model.config import stage_scale_index
from model.spike import SpikeTemporalSelfAttention, TemporalCrossAttentionFusion
from model.tmsa import TMSAGroup
from search.files import atomic_path
from search.measure.device import amp_name, config_amp, device_name, model_code_digest
from search.measure.latency import (
    call_timer,
    deploy_mode,
    profile_parts,
    summarize_samples,
    tune_malloc,
)
from search.measure.target import format_shape

__all__ = [
    "TABLES_ENV",
    "canary_ms",
    "LatencyTable",
    "Prediction",
    "Probe",
    "TableKey",
    "Term",
    "default_table_dir",
    "predict_latency",
    "probes_of",
    "table_for",
    "terms_of",
]

logger = logging.getLogger(__name__)

TABLES_ENV = "VRTSPIKE_LATENCY_TABLES"
_FORMAT = 2  # 2: entries scaled to the table's canary speed (1: raw, without canary)
_PAD = 8  # the network pads H and W to a multiple of 8
_TARGET_MS = 2000.0  # a part is timed for about this long (at least 2, at most 10 runs)
_CANARY_EVERY_S = 10.0  # seconds of part measurements between two canary readings (at most)

Progress = Callable[[int, int, str, float], None]
"""Called after each measured part with (done, to do, what, seconds it took)."""
Canary = Callable[[torch.device], float]
"""Device -> ms of the fixed canary workload there now (:func:`canary_ms`)."""


def default_table_dir() -> Path:
    """``$VRTSPIKE_LATENCY_TABLES`` if set, else ``studies/latency_tables`` under the cwd."""
    env = os.environ.get(TABLES_ENV)
    return Path(env) if env else Path.cwd() / "studies" / "latency_tables"


def _slug(text: str) -> str:
    """``text`` with every run of other characters than letters and digits as one ``-``."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


@contextlib.contextmanager
def _flocked(lock: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the file ``lock`` (created if missing)."""
    with open(lock, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` with ``data`` as JSON atomically (a temporary file, then a rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))


@dataclass(frozen=True)
class TableKey:
    """What a table's entries are valid for (a change of any field is another table)."""

    device_name: str
    torch: str
    threads: int
    shape: tuple[int, int, int]
    dtype: str
    model_code: str

    @classmethod
    def here(
        cls, device: torch.device | str, shape: tuple[int, int, int], amp: torch.dtype | None
    ) -> TableKey:
        """The key of this process on ``device`` at ``shape`` under autocast ``amp``."""
        return cls(
            device_name=device_name(device),
            torch=torch.__version__,
            threads=torch.get_num_threads(),
            shape=tuple(shape),  # type: ignore[arg-type]
            dtype=amp_name(amp) or "float32",
            model_code=model_code_digest(),
        )

    def file_name(self) -> str:
        """A readable, unique file name."""
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()
        slug = _slug(self.device_name)[:32]
        return f"{slug}-{format_shape(self.shape)}-{self.dtype}-t{self.threads}-{digest[:8]}.json"


@dataclass(frozen=True)
class Term:
    """``count`` times the table entry ``key``, counted in the model part ``label``."""

    label: str
    key: str
    count: int


@dataclass(frozen=True)
class Probe:
    """One isolated measurement that yields the entries ``keys`` (``run() -> {key: ms}``)."""

    keys: tuple[str, ...]
    what: str
    run: Callable[[], dict[str, float]] = field(compare=False, repr=False)


@dataclass(frozen=True)
class Prediction:
    """A predicted latency: the sum of its terms, and per model part."""

    median_ms: float
    per_stage_ms: dict[str, float]
    terms: tuple[tuple[str, str, int, float], ...]
    table: str
    measured_parts: int
    rgb_shape: tuple[int, ...]
    canary_ms: float

    def to_dict(self) -> dict[str, Any]:
        """The trial's ``latency`` record (``source``: ``predicted``; ``canary_ms``: the speed
        of the host the table's entries are scaled to)."""
        return {
            "median_ms": self.median_ms,
            "source": "predicted",
            "canary_ms": self.canary_ms,
            "table": self.table,
            "measured_parts": self.measured_parts,
            "terms": [list(t) for t in self.terms],
            "rgb_shape": list(self.rgb_shape),
        }


class LatencyTable:
    """The entries of one :class:`TableKey`, in ``folder`` (default :func:`default_table_dir`),
    measured on ``device``; ``canary`` times the host's speed (default :func:`canary_ms`)."""

    def __init__(
        self,
        key: TableKey,
        folder: Path | None = None,
        device: torch.device | str = "cpu",
        canary: Canary | None = None,
    ) -> None:
        self.key = key
        self.folder = Path(folder) if folder is not None else default_table_dir()
        self.path = self.folder / key.file_name()
        self.device = torch.device(device)
        self._canary = canary

    def _read(self) -> dict[str, Any]:
        """The stored file (entries empty when there is none, or one of another key/format)."""
        empty: dict[str, Any] = {"canary_ms": None, "entries": {}, "raw": {}, "canary_at": {}}
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return empty
        if data.get("format") != _FORMAT or data.get("key") != self._key_record():
            logger.warning("latency table %s has another key or format; rebuilding", self.path)
            return empty
        return data

    def load(self) -> dict[str, float]:
        """The stored entries, scaled to the table's canary speed ({} when there are none)."""
        return {k: float(v) for k, v in self._read()["entries"].items()}

    def canary_reference(self) -> float | None:
        """The canary ms the entries are scaled to (None before the table exists)."""
        return self._read()["canary_ms"]

    def _host_reference(self, reading: float) -> float:
        """The canary ms every table of this device, torch version and thread count in the
        folder is scaled to: the first reading any of them took (``reading`` if this is it)."""
        k = self.key
        path = self.folder / f"canary-{_slug(f'{k.device_name}-{k.torch}')}-t{k.threads}.json"
        with _flocked(path.with_suffix(".lock")):
            if path.exists():
                return float(json.loads(path.read_text())["canary_ms"])
            record = {"canary_ms": reading, "device_name": k.device_name, "torch": k.torch,
                      "threads": k.threads}  # fmt: skip
            _write_json(path, record)
            return reading

    def _key_record(self) -> dict[str, Any]:
        """The key as its JSON file stores it (the shape as a list)."""
        return {**asdict(self.key), "shape": list(self.key.shape)}

    def _write(self, data: dict[str, Any]) -> None:
        """Replace the file atomically (a reader sees the old table or the new one)."""
        _write_json(self.path, {**data, "format": _FORMAT, "key": self._key_record()})

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with _flocked(self.path.with_suffix(".lock")):
            yield

    def ensure(
        self, probes: Sequence[Probe], progress: Progress | None = None
    ) -> tuple[dict[str, float], int]:
        """Measure the probes whose entries are missing; returns (entries, parts measured).

        Holds the table's lock while measuring: another process that needs the same table waits,
        then finds the entries and measures nothing. Entries are scaled to the table's canary
        speed (see the module doc) and written at every canary reading, and when a probe fails.
        """
        entries = self.load()
        if all(k in entries for p in probes for k in p.keys):
            return entries, 0
        with self._locked():
            data = self._read()
            todo = [
                p for p in dict.fromkeys(probes) if any(k not in data["entries"] for k in p.keys)
            ]
            if todo:
                self._measure(data, todo, progress)
            return {k: float(v) for k, v in data["entries"].items()}, len(todo)

    def _measure(self, data: dict[str, Any], todo: list[Probe], progress: Progress | None) -> None:
        """Run ``todo``, reading the canary before, after and every :data:`_CANARY_EVERY_S`."""
        canary = self._canary or canary_ms
        last, since = canary(self.device), time.perf_counter()
        if data["canary_ms"] is None:
            data["canary_ms"] = self._host_reference(last)
        pending: dict[str, float] = {}

        def flush() -> None:
            nonlocal last, since
            now = canary(self.device)
            speed = (last + now) / 2
            for k, raw in pending.items():
                data["raw"][k], data["canary_at"][k] = raw, speed
                data["entries"][k] = raw * data["canary_ms"] / speed
            self._write(data)
            pending.clear()
            last, since = now, time.perf_counter()

        for i, probe in enumerate(todo, start=1):
            started = time.perf_counter()
            try:
                got = probe.run()
            except BaseException:
                if pending:
                    flush()  # keep what was finished
                raise
            pending.update({k: v for k, v in got.items() if k not in data["entries"]})
            seconds = time.perf_counter() - started
            if i == len(todo) or time.perf_counter() - since >= _CANARY_EVERY_S:
                flush()
            logger.info("latency table %s: [%d/%d] %s (%.1f s)",
                        self.path.name, i, len(todo), probe.what, seconds)  # fmt: skip
            if progress is not None:
                progress(i, len(todo), probe.what, seconds)


# ---- timing ------------------------------------------------------------------------------------


def _warm_up(run: Callable[[], object], device: torch.device) -> tuple[Callable[[], float], float]:
    """A timer of ``run`` (:func:`call_timer`) and the ms of its first, warm-up call (cold
    caches and allocations: an upper bound, kept out of every median). On the CPU glibc malloc
    is tuned first, as for a direct measurement."""
    if device.type == "cpu":
        tune_malloc()
    once = call_timer(run, device)
    return once, once()


def _runs(first_ms: float, most: int) -> int:
    """How many timed calls make about :data:`_TARGET_MS` (at least 1, at most ``most``)."""
    return max(1, min(most, int(_TARGET_MS / max(first_ms, 1e-3))))


def _time_ms(run: Callable[[], object], device: torch.device) -> float:
    """Median ms of ``run`` after one untimed call; about :data:`_TARGET_MS` of timed calls."""
    once, _ = _warm_up(run, device)
    first = once()
    return summarize_samples([first, *(once() for _ in range(_runs(first, 9)))]).median_ms


_CANARIES: dict[str, Callable[[], float]] = {}


def canary_ms(device: torch.device | str = "cpu") -> float:
    """Median ms of 3 forwards (after an untimed one) of the canary on ``device``: one mutual
    TMSA pair (96 channels, 6 heads, window 2x8x8, MLP ratio 2) over 1x3x64x128 tokens, fp32,
    inference mode. Built once per device and process, always with the same weights and input."""
    device = torch.device(device)
    if str(device) not in _CANARIES:
        gen = torch.Generator().manual_seed(0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            group = TMSAGroup(dim=96, heads=6, window=(2, 8, 8), mutual=True, mlp_ratio=2.0,
                              drop_path=[0.0, 0.0]).to(device)  # fmt: skip
        x = torch.randn(1, 3, 64, 128, 96, generator=gen).to(device)

        def reading() -> float:
            with deploy_mode(group, device, None):
                group(x)
                timer = call_timer(lambda: group(x), device)
                return statistics.median(timer() for _ in range(3))

        _CANARIES[str(device)] = reading
    return _CANARIES[str(device)]()


def _pad(size: int) -> int:
    return math.ceil(size / _PAD) * _PAD


@dataclass(frozen=True)
class _Where:
    """Device, autocast dtype and the padded (T, H, W) the parts run at."""

    device: torch.device
    amp: torch.dtype | None
    frames: int
    height: int
    width: int

    def res(self, scale: int) -> tuple[int, int]:
        return self.height >> scale, self.width >> scale

    def randn(self, *shape: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(0)
        return torch.randn(*shape, generator=gen).to(self.device)


def _module_probe(key: str, what: str, where: _Where, build: Callable[[], tuple]) -> Probe:
    """A probe timing ``module(*inputs)`` where ``build() -> (module, inputs)``."""

    def run() -> dict[str, float]:
        torch.manual_seed(0)
        module, inputs = build()
        module = module.to(where.device)
        with deploy_mode(module, where.device, where.amp):
            return {key: _time_ms(lambda: module(*inputs), where.device)}

    return Probe(keys=(key,), what=what, run=run)


# ---- the parts of a config ---------------------------------------------------------------------


def _group_terms(
    cfg: VRTSpikeConfig, where: _Where, label: str, *, scale: int, entry: int, n: int,
    window: tuple[int, int, int], mutual: bool,
) -> list[tuple[Term, Probe]]:  # fmt: skip
    """Terms of a TMSA group of ``n`` blocks (pairs, then a single block)."""
    m = cfg.model
    dim, heads = m.embed_dims[entry], m.num_heads[entry]
    h, w = where.res(scale)
    kind = "mutual" if mutual else "self"
    out = []
    for size, count in ((2, n // 2), (1, n % 2)):
        if count == 0:
            continue
        key = (f"tmsa:{h}x{w}:c{dim}:h{heads}:m{m.mlp_ratio:g}:"
               f"w{format_shape(window)}:{kind}:n{size}")  # fmt: skip

        def build(size: int = size) -> tuple:
            group = TMSAGroup(dim=dim, heads=heads, window=window, mutual=mutual,
                              mlp_ratio=m.mlp_ratio, drop_path=[0.0] * size)  # fmt: skip
            return group, (where.randn(1, where.frames, h, w, dim),)

        out.append((Term(label, key, count), _module_probe(key, key, where, build)))
    return out


def _block_terms(cfg: VRTSpikeConfig, where: _Where) -> list[tuple[Term, Probe]]:
    """The TMSA blocks of stages 1-7 and of the stage-8 groups."""
    m = cfg.model
    win, tw = m.window_size, m.temporal_window
    out = []
    for i in range(1, 8):
        depth = m.vrt_depths[i - 1]
        mutual = int(depth * m.mutual_attn_ratio)
        common = dict(scale=stage_scale_index(i), entry=i - 1)
        out += _group_terms(cfg, where, f"stage{i}", n=mutual, window=(2, win, win),
                            mutual=True, **common)  # fmt: skip
        out += _group_terms(cfg, where, f"stage{i}", n=depth - mutual, window=(tw, win, win),
                            mutual=False, **common)  # fmt: skip
    for j, depth in enumerate(m.recon_depths, start=7):
        window = (1 if j in m.indep_reconsts else tw, win, win)
        out += _group_terms(cfg, where, "stage8", scale=0, entry=7, n=depth, window=window,
                            mutual=False)  # fmt: skip
    return out


def _plan(chunking: Chunking, h: int, w: int) -> str:
    p = chunking.plan(1, h, w)
    return f"p{p.chunk_h}x{p.chunk_w}"


def _spike_terms(cfg: VRTSpikeConfig, where: _Where) -> list[tuple[Term, Probe]]:
    """Spike self-attention at every scale a fusion uses, and each fusion."""
    m = cfg.model
    if not (m.use_spike and m.fuse.stages):
        return []
    dims, tsa, fz = m.embed_dims, m.spike_tsa, m.fuse
    out = []
    for s in m.spike_scales():
        h, w = where.res(s)
        key = (f"spike_tsa:{h}x{w}:c{dims[s]}:h{tsa.heads}:m{tsa.mlp_ratio:g}:"
               f"{_plan(tsa.chunking, h, w)}")  # fmt: skip

        def build_tsa(s: int = s, h: int = h, w: int = w) -> tuple:
            module = SpikeTemporalSelfAttention(
                dim=dims[s], heads=tsa.heads, chunking=tsa.chunking, mlp_ratio=tsa.mlp_ratio
            )
            return module, (where.randn(1, where.frames, h, w, dims[s]),)  # fmt: skip

        out.append((Term("spike_tsa", key, 1), _module_probe(key, key, where, build_tsa)))
    for i in fz.stages:
        s = stage_scale_index(i)
        h, w = where.res(s)
        dim, sdim = dims[i - 1], dims[s]
        key = (f"fusion:{h}x{w}:c{dim}-{sdim}:h{fz.heads}:m{fz.mlp_ratio:g}:"
               f"{_plan(fz.chunking, h, w)}")  # fmt: skip

        def build_fusion(h: int = h, w: int = w, dim: int = dim, sdim: int = sdim) -> tuple:
            module = TemporalCrossAttentionFusion(
                dim=dim,
                spike_dim=sdim,
                heads=fz.heads,
                chunking=fz.chunking,
                mlp_ratio=fz.mlp_ratio,
            )
            t = where.frames
            return module, (where.randn(1, t, h, w, dim), where.randn(1, t, h, w, sdim))

        out.append((Term(f"fusion{i}", key, 1), _module_probe(key, key, where, build_fusion)))
    return out


def _skeleton_keys(cfg: VRTSpikeConfig) -> dict[str, str]:
    """Model part -> entry key of the parts a skeleton forward times."""
    m = cfg.model
    d = m.embed_dims
    spike = m.use_spike and bool(m.fuse.stages)
    keys = {"flow": "flow", "conv_first": f"conv_first:c{d[0]}"}
    if spike:
        widths = "-".join(str(v) for v in d[:4])
        keys["spike_encoder"] = f"spike_encoder:k{cfg.data.num_voxel_bins}:c{widths}"
    for i in range(1, 8):
        keys[f"stage{i}"] = f"stage{i}:c{d[max(i - 2, 0)]}-{d[i - 1]}:g{m.deformable_groups}"
    keys["stage8"] = f"stage8:c{d[6]}-{d[7]}:n{len(m.recon_depths)}"
    keys["head"] = f"head:c{d[7]}-{d[0]}"
    keys["other"] = f"other:{'spike' if spike else 'rgb'}:c{d[0]}-{d[7]}"
    return keys


def _skeleton_probe(cfg: VRTSpikeConfig, where: _Where, shape: tuple[int, int, int]) -> Probe:
    """The network without TMSA blocks, profiled part by part (fusing at one stage only: the
    fusions are timed on their own)."""
    keys = _skeleton_keys(cfg)
    m = cfg.model
    overrides: dict[str, Any] = {"MODEL.VRT_DEPTHS": [0] * 7 + [1] * len(m.recon_depths)}
    if m.fuse.stages:
        overrides["MODEL.FUSE.STAGES"] = [m.fuse.stages[0]]
    skeleton = cfg.with_overrides(overrides)

    def run() -> dict[str, float]:
        torch.manual_seed(0)
        model = VRTSpike(skeleton).to(where.device)
        for group in model.stage8:
            group.residual_group.active = 0
        t, h, w = shape
        rgb = where.randn(1, t, 3, h, w).uniform_()
        spike = where.randn(1, t, cfg.data.num_voxel_bins, h, w).uniform_()
        with deploy_mode(model, where.device, where.amp):
            _, warm = _warm_up(lambda: model(rgb, spike), where.device)  # sizes the profile
            parts, _ = profile_parts(model, rgb, spike, runs=max(2, _runs(warm, 10)))
        return {key: parts[label] for label, key in keys.items()}

    return Probe(keys=tuple(keys.values()), what="skeleton: " + ", ".join(keys), run=run)


def _walk(
    cfg: VRTSpikeConfig, shape: tuple[int, int, int], device: torch.device | str
) -> list[tuple[Term, Probe]]:
    """Every term of ``cfg`` at ``shape`` with the probe that measures its entry."""
    t, h, w = shape
    where = _Where(torch.device(device), config_amp(cfg, device), t, _pad(h), _pad(w))
    skeleton = _skeleton_probe(cfg, where, shape)
    fixed = [(Term(label, key, 1), skeleton) for label, key in _skeleton_keys(cfg).items()]
    return [*fixed, *_spike_terms(cfg, where), *_block_terms(cfg, where)]


def terms_of(
    cfg: VRTSpikeConfig, shape: tuple[int, int, int], device: torch.device | str = "cpu"
) -> list[Term]:
    """The terms whose sum predicts ``cfg``'s deployment forward at ``shape``."""
    return [term for term, _ in _walk(cfg, shape, device)]


def probes_of(
    cfg: VRTSpikeConfig, shape: tuple[int, int, int], device: torch.device | str
) -> list[Probe]:
    """The measurements that fill the entries of ``cfg``'s terms (deduplicated)."""
    return list(dict.fromkeys(probe for _, probe in _walk(cfg, shape, device)))


def table_for(
    cfg: VRTSpikeConfig,
    shape: tuple[int, int, int],
    device: torch.device | str,
    folder: Path | None = None,
) -> LatencyTable:
    """The table ``cfg``'s prediction reads (this process's threads, ``cfg``'s AMP)."""
    return LatencyTable(TableKey.here(device, shape, config_amp(cfg, device)), folder, device)


def predict_latency(
    cfg: VRTSpikeConfig,
    shape: tuple[int, int, int],
    device: torch.device | str,
    *,
    folder: Path | None = None,
    progress: Progress | None = None,
) -> Prediction:
    """Predict the deployment forward of ``cfg`` at (T, H, W) ``shape`` on ``device``.

    Measures the table entries it lacks first (each once per host, see the module doc).
    """
    walk = _walk(cfg, shape, device)
    table = table_for(cfg, shape, device, folder)
    entries, measured = table.ensure([probe for _, probe in walk], progress)
    terms = tuple((t.label, t.key, t.count, entries[t.key]) for t, _ in walk)
    per_part: dict[str, float] = {}
    for label, _, count, ms in terms:
        per_part[label] = per_part.get(label, 0.0) + count * ms
    total = sum(per_part.values())
    logger.info("predicted latency %.1f ms at %s from %s (%d parts measured now)",
                total, format_shape(shape), table.path.name, measured)  # fmt: skip
    return Prediction(
        median_ms=total,
        per_stage_ms=per_part,
        terms=terms,
        table=str(table.path),
        measured_parts=measured,
        rgb_shape=(1, shape[0], 3, shape[1], shape[2]),
        canary_ms=float(table.canary_reference() or 0.0),
    )
