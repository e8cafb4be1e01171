"""The study's objective: sample a config, time it, train it (or reuse), return both numbers.

``Objective(trial) -> (latency_ms, psnr_db)``. The latency is the deployment config's (full
widths, its own AMP) at the study's :class:`~search.measure.target.LatencyTarget`, measured or
predicted from a parts table; the budget's scaled proxy is only trained. Everything else a trial
records goes through :class:`~search.study.record.TrialWriter`; the constraints ``latency_ms`` /
``memory_gb`` (value - limit, feasible when <= 0) are set on every path that returns values.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch

from model import VRTSpike, VRTSpikeConfig
from model.chunking import Chunking
from model.errors import ConfigError
from search.measure.budgets import Budget, apply_budget
from search.measure.cost import count_cost
from search.measure.device import config_amp, device_name, free_memory, library_versions
from search.measure.latency import Latency, measure_latency
from search.measure.latency_model import predict_latency
from search.measure.target import LatencyTarget
from search.measure.train import NonFiniteLossError, evaluate, train_model
from search.study.artifacts import TrialArtifacts
from search.study.locks import DeviceLock
from search.study.parent import Parent
from search.study.record import TrialRecord, TrialSetup, TrialWriter
from search.study.space import SearchSpace

__all__ = ["CHUNK_ONLY_KEYS", "Objective", "accuracy_key"]

logger = logging.getLogger(__name__)

CHUNK_ONLY_KEYS: tuple[str, ...] = tuple(
    f"MODEL.{part}.{f.name.upper()}"
    for part in ("FUSE", "SPIKE_TSA")
    for f in dataclasses.fields(Chunking)
)
"""Knobs that only split pixels into batches: they never change the computed function."""


def accuracy_key(cfg: VRTSpikeConfig) -> str:
    """Hash of everything in a (trained) config that can change its PSNR."""
    d = cfg.to_dict()
    for dotted in CHUNK_ONLY_KEYS:
        section, part, key = dotted.split(".")
        d[section][part].pop(key)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Limits:
    """Optional constraints: a latency limit (checked before training) and a memory limit."""

    max_latency_ms: float | None = None
    max_memory_gb: float | None = None

    def over_latency(self, latency_ms: float) -> str:
        """Why a latency is over the limit ("" if it is not)."""
        if self.max_latency_ms is not None and latency_ms > self.max_latency_ms:
            return f"latency {latency_ms:.2f} ms exceeds --max-latency-ms {self.max_latency_ms:g}"
        return ""

    def values(self, latency_ms: float, peak_gb: float) -> dict[str, float]:
        """Constraint values (value - limit) of the limits that are set."""
        out: dict[str, float] = {}
        if self.max_latency_ms is not None:
            out["latency_ms"] = latency_ms - self.max_latency_ms
        if self.max_memory_gb is not None:
            out["memory_gb"] = peak_gb - self.max_memory_gb
        return out


class Objective:
    """Callable objective for a two-objective study (latency_ms down, psnr_db up).

    Args:
        space: The search space.
        budget: The training and timing budget.
        data: Train/val splits (``.train``, ``.val``) matching the budget's T and K.
        device: Where to train and time.
        seed: Seeds weights, data order and the latency inputs.
        artifacts: Where the restored-frames strip and the stage profile go (default: none).
        limits: Optional latency and memory limits.
        device_lock: Shared by the workers of this host on this device: latency is measured
            holding it exclusively, training and evaluation holding it shared (None: no lock).
        train_threads: CPU threads while training and evaluating (None: the process's threads
            divided by the workers registered on this CPU); latency is always measured with
            the thread count the process started with, so a study's latencies agree whatever
            number of workers shared the CPU.
        target: Shape and source of the latency (default: the budget's shape, ``auto``).
        tables: Folder of the latency tables (default: ``studies/latency_tables``).
        parent: The elastic parent every trial inherits its weights from before fine-tuning
            (None: each trial trains from its own seeded initialisation).
    """

    def __init__(
        self,
        *,
        space: SearchSpace,
        budget: Budget,
        data: Any,
        device: torch.device | str,
        seed: int,
        artifacts: TrialArtifacts | None = None,
        limits: Limits | None = None,
        device_lock: DeviceLock | None = None,
        train_threads: int | None = None,
        target: LatencyTarget | None = None,
        tables: Path | None = None,
        parent: Parent | None = None,
    ) -> None:
        self.space, self.budget, self.data = space, budget, data
        self.device = torch.device(device)
        self.seed = seed
        self.artifacts = artifacts or TrialArtifacts(None, None)
        self.limits = limits or Limits()
        self.versions = library_versions()
        self.device_lock = device_lock
        self.latency_threads = torch.get_num_threads()
        self.train_threads = train_threads
        self.target = target or LatencyTarget(budget.latency_shape)
        self.tables = tables
        self.parent = parent

    def __call__(self, trial: optuna.trial.BaseTrial) -> tuple[float, float]:
        """Evaluate one candidate; returns ``(latency_ms, psnr_db)``."""
        started = time.perf_counter()
        out = TrialWriter(trial)
        try:
            cfg = self.space.sample(trial)
        except ConfigError as e:  # an impossible combination, e.g. heads vs widths
            out.failed(f"invalid configuration: {e}")
            raise optuna.TrialPruned(f"invalid configuration: {e}") from e
        proxy = (
            apply_budget(cfg, self.budget)
            if self.parent is None
            else self.parent.child_config(cfg, self.budget)
        )
        key = accuracy_key(proxy)
        out.setup(self._setup(cfg, proxy, key))
        windows: dict[str, list[float]] = {}
        with self._hold(exclusive=True, windows=windows, name="timed"):
            latency, per_stage = self._latency(cfg)
        latency_ms = float(latency["median_ms"])
        out.latency(latency, per_stage, self.target.record(cfg, self.device))
        self.artifacts.profile(trial, per_stage, latency_ms)
        peak_gb = (latency.get("peak_mem_mb") or 0.0) / 1024
        over = self.limits.over_latency(latency_ms)
        source = None if over else self._reusable(trial, key)
        if source is not None:
            psnr_db = self._reuse(trial, out, source)
        else:
            with self._hold(exclusive=False, windows=windows, name="trained"):
                psnr_db, train_gb = (
                    self._skip(trial, out, proxy, over) if over else self._train(trial, out, proxy)
                )
            peak_gb = max(peak_gb, train_gb)
        out.constraints(self.limits.values(latency_ms, peak_gb), peak_gb)
        out.finished(windows, time.perf_counter() - started)
        return latency_ms, psnr_db

    # ---- steps -------------------------------------------------------------------------------
    def _setup(self, cfg: VRTSpikeConfig, proxy: VRTSpikeConfig, key: str) -> TrialSetup:
        t, h, w = self.target.shape
        cost = count_cost(cfg, frames=t, height=h, width=w)
        return TrialSetup(
            config=cfg.to_dict(),
            trained_config=proxy.to_dict(),
            accuracy_key=key,
            budget=self.budget.to_dict(),
            seed=self.seed,
            device=str(self.device),
            device_name=device_name(self.device),
            versions=self.versions,
            space=self.space.name,
            params=cost.params,
            flops=cost.flops,
            flops_per_part=cost.flops_per_part,
        )

    def _cpu_threads(self, exclusive: bool) -> int:
        """All of the process's threads to time; to train, a share of them per live worker."""
        if exclusive:
            return self.latency_threads
        if self.train_threads is not None:
            return self.train_threads
        workers = 1 if self.device_lock is None else self.device_lock.workers()
        return max(1, self.latency_threads // workers)

    @contextlib.contextmanager
    def _hold(
        self, *, exclusive: bool, windows: dict[str, list[float]], name: str
    ) -> Iterator[None]:
        """Hold the device (exclusively to time it) with the matching CPU thread count.

        ``windows[name]`` gets ``[waited_s, start, end]``: seconds spent waiting for the device,
        then the wall-clock span (epoch seconds) it was held, so a study shows that no latency
        was measured while another worker of the host used the device.
        """
        lock = self.device_lock
        held = (
            contextlib.nullcontext()
            if lock is None
            else (lock.exclusive() if exclusive else lock.shared())
        )
        asked = time.time()
        with held:
            start = time.time()
            before = torch.get_num_threads()
            if self.device.type == "cpu":
                torch.set_num_threads(self._cpu_threads(exclusive))
            try:
                yield
            finally:
                torch.set_num_threads(before)
                windows[name] = [round(start - asked, 3), start, time.time()]

    def _model(self, cfg: VRTSpikeConfig) -> VRTSpike:
        """The seeded, untrained network on the device."""
        torch.manual_seed(self.seed)
        return VRTSpike(cfg).to(self.device)

    def _inherited(self, cfg: VRTSpikeConfig) -> dict[str, torch.Tensor] | None:
        """The trained config's weights from the parent (None without a parent)."""
        return None if self.parent is None else self.parent.child_state(cfg, seed=self.seed)

    def _latency(self, cfg: VRTSpikeConfig) -> tuple[dict[str, Any], dict[str, float]]:
        """The deployment config's latency record at the target, and its per-part times."""
        if self.target.source_on(self.device) == "predicted":
            p = predict_latency(cfg, self.target.shape, self.device, folder=self.tables)
            return p.to_dict(), p.per_stage_ms
        latency = self._measure_latency(cfg)
        return {**latency.to_dict(), "source": "measured"}, latency.per_stage_ms

    def _measure_latency(self, cfg: VRTSpikeConfig) -> Latency:
        t, h, w = self.target.shape
        gen = torch.Generator().manual_seed(self.seed)
        model = self._model(cfg)
        rgb = torch.rand(1, t, 3, h, w, generator=gen).to(self.device)
        spike = torch.rand(1, t, cfg.data.num_voxel_bins, h, w, generator=gen).to(self.device)
        try:
            return measure_latency(
                model,
                rgb,
                spike,
                amp=config_amp(cfg, self.device),
                warmup=self.budget.latency_warmup,
                repeats=self.budget.latency_repeats,
                max_attempts=self.budget.latency_blocks,
                profile_runs=max(1, self.budget.latency_repeats // 4),
            )
        finally:
            del model
            free_memory(self.device)

    def _reusable(self, trial: optuna.trial.BaseTrial, key: str) -> optuna.trial.FrozenTrial | None:
        """An earlier complete trial that trained a network of the same accuracy key."""
        study = getattr(trial, "study", None)
        if study is None:  # FixedTrial: no study to reuse from
            return None
        for past in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            rec = TrialRecord.of(past)
            if rec.accuracy_key == key and rec.trained_here:
                return past
        return None

    def _reuse(
        self, trial: optuna.trial.BaseTrial, out: TrialWriter, source: optuna.trial.FrozenTrial
    ) -> float:
        rec = TrialRecord.of(source)
        logger.info(
            "trial %d: same accuracy config as trial %d; reusing its PSNR",
            trial.number,
            rec.psnr_source,
        )
        out.reused(rec)
        self.artifacts.copy_strip(trial, source)
        return rec.psnr_db

    def _skip(
        self, trial: optuna.trial.BaseTrial, out: TrialWriter, cfg: VRTSpikeConfig, why: str
    ) -> tuple[float, float]:
        """PSNR of the untrained network, for a candidate not worth training."""
        logger.info("trial %d: %s; not trained", trial.number, why)
        out.skipped(why)
        scores, preview = self._untrained(cfg, self._inherited(cfg))
        out.evaluated(scores)
        if self.parent is not None:
            out.inherited(self.parent.describe(), scores["psnr_db"], scores["psnr_db"])
        self.artifacts.strip(trial, preview)
        return float(scores["psnr_db"]), 0.0

    def _untrained(
        self, cfg: VRTSpikeConfig, state: dict[str, torch.Tensor] | None
    ) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        """Validation scores and preview of the network before training: with ``state`` (its
        inherited weights), or its seeded initialisation without one."""
        model = self._model(cfg)
        if state is not None:
            model.load_state_dict(state)
        return evaluate(
            model,
            self.data.val,
            device=self.device,
            amp=config_amp(cfg, self.device),
            num_clips=self.budget.num_val_clips,
        )

    def _train(
        self, trial: optuna.trial.BaseTrial, out: TrialWriter, cfg: VRTSpikeConfig
    ) -> tuple[float, float]:
        state = self._inherited(cfg)
        inherited_db = None if state is None else self._untrained(cfg, state)[0]["psnr_db"]
        try:
            trained = train_model(
                cfg, self.budget, self.data, device=self.device, seed=self.seed, init_state=state
            )
        except NonFiniteLossError as e:
            out.failed(str(e))
            raise
        except (torch.OutOfMemoryError, MemoryError) as e:
            out.failed(f"out of memory: {' '.join(str(e).split())[:300]}")
            raise
        r = trained.result
        out.trained(r.to_dict())
        if self.parent is not None and inherited_db is not None:
            out.inherited(self.parent.describe(), inherited_db, r.psnr_db)
        self.artifacts.strip(trial, trained.preview)
        del trained
        free_memory(self.device)
        return r.psnr_db, r.peak_mem_mb / 1024
