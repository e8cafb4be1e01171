"""The study's objective: sample a config, time it, train it (or reuse), return both numbers.

``Objective(trial) -> (latency_ms, psnr_db)``. Secondary numbers go to user attributes; the
constraints ``latency_ms`` / ``memory_gb`` (value - limit, feasible when <= 0) are set on every
path that returns values and mirrored into user attributes (optuna-dashboard 0.21 ignores
``Trial.set_constraint``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import platform
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

from model import VRTSpike, VRTSpikeConfig
from model.errors import ConfigError
from search.budgets import Budget, apply_budget
from search.charts import stage_profile_csv, stage_profile_png
from search.cost import count_cost
from search.data.images import write_rgb
from search.latency import Latency, device_name, measure_latency
from search.locks import DeviceLock
from search.space import SearchSpace
from search.train import NonFiniteLossError, evaluate, resolve_amp_dtype, train_model

__all__ = [
    "Objective",
    "accuracy_key",
    "library_versions",
    "CHUNK_ONLY_KEYS",
    "STRIP_SUFFIX",
    "PROFILE_SUFFIX",
]

logger = logging.getLogger(__name__)

CHUNK_ONLY_KEYS: tuple[str, ...] = tuple(
    f"MODEL.{part}.{key}"
    for part in ("FUSE", "SPIKE_TSA")
    for key in ("CHUNK_SIZE", "MAX_BATCH_TOKENS", "CHUNK_SHAPE", "ADAPTIVE_CHUNK")
)
"""Knobs that only split pixels into batches: they never change the computed function."""

STRIP_SUFFIX = "_blurry_restored_sharp"
"""File-name tail of the restored-frames strip artifact (``trial<N>_blurry_restored_sharp.png``)."""
PROFILE_SUFFIX = "_stage_profile"
"""File-name tail of the stage-profile artifacts (``.png`` chart, ``.csv`` table)."""


def accuracy_key(cfg: VRTSpikeConfig) -> str:
    """Hash of everything in a (trained) config that can change its PSNR."""
    d = cfg.to_dict()
    for dotted in CHUNK_ONLY_KEYS:
        section, part, key = dotted.split(".")
        d[section][part].pop(key)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def library_versions() -> dict[str, str]:
    """Versions that can change a measurement."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "optuna": optuna.__version__,
        "numpy": np.__version__,
    }


def _strip_png(preview: dict[str, torch.Tensor], path: Path) -> None:
    """Middle frame of the preview clip as ``blurry | restored | sharp``, 8-bit PNG."""
    t = preview["blurry"].shape[0] // 2
    tiles = [preview[k][t].float().clamp(0, 1) for k in ("blurry", "restored", "sharp")]
    gap = torch.ones(3, tiles[0].shape[1], 2)
    strip = torch.cat([tiles[0], gap, tiles[1], gap, tiles[2]], dim=2)  # (3, H, 3W + 4)
    write_rgb(path, (strip.numpy() * 255 + 0.5).astype(np.uint8))  # (3, H, W)


@dataclass(frozen=True)
class _Threads:
    latency: int
    train: int | None


@dataclass(frozen=True)
class _Limits:
    max_latency_ms: float | None
    max_memory_gb: float | None


class Objective:
    """Callable objective for a two-objective study (latency_ms down, psnr_db up).

    Args:
        space: The search space.
        budget: The training and timing budget.
        data: Train/val splits (``.train``, ``.val``) matching the budget's T and K.
        device: Where to train and time.
        seed: Seeds weights, data order and the latency inputs.
        artifact_store: Where the restored-frames strip and the stage profile (PNG chart and
            ``part,ms,share`` CSV) are uploaded (None: no artifacts).
        max_latency_ms: Optional latency limit, checked before training.
        max_memory_gb: Optional peak-memory limit (latency and training peaks).
        storage: The study's storage (lets a reusing trial copy its source's artifacts).
        device_lock: Shared by the workers of this host on this device: latency is measured
            holding it exclusively, training and evaluation holding it shared (None: no lock).
        train_threads: CPU threads while training and evaluating (None: the process's threads
            divided by the workers registered on this CPU); latency is always measured with
            the thread count the process started with, so a study's latencies agree whatever
            number of workers shared the CPU.
    """

    def __init__(
        self,
        *,
        space: SearchSpace,
        budget: Budget,
        data: Any,
        device: torch.device | str,
        seed: int,
        artifact_store: optuna.artifacts.FileSystemArtifactStore | None = None,
        max_latency_ms: float | None = None,
        max_memory_gb: float | None = None,
        storage: optuna.storages.BaseStorage | None = None,
        device_lock: DeviceLock | None = None,
        train_threads: int | None = None,
    ) -> None:
        self.space, self.budget, self.data = space, budget, data
        self.device = torch.device(device)
        self.seed = seed
        self.artifact_store = artifact_store
        self.limits = _Limits(max_latency_ms, max_memory_gb)
        self.versions = library_versions()
        self.storage = storage
        self.device_lock = device_lock
        self.threads = _Threads(latency=torch.get_num_threads(), train=train_threads)

    # ---- the trial ---------------------------------------------------------------------------
    def __call__(self, trial: optuna.trial.BaseTrial) -> tuple[float, float]:
        """Evaluate one candidate; returns ``(latency_ms, psnr_db)``."""
        started = time.perf_counter()
        try:
            cfg = self.space.sample(trial)
        except ConfigError as e:  # an impossible combination, e.g. heads vs widths
            trial.set_user_attr("fail_reason", f"invalid configuration: {e}")
            raise optuna.TrialPruned(f"invalid configuration: {e}") from e
        proxy = apply_budget(cfg, self.budget)
        key = accuracy_key(proxy)
        self._record_setup(trial, cfg, proxy, key)

        windows: dict[str, list[float]] = {}
        with self._hold(exclusive=True, windows=windows, name="timed"):
            latency = self._measure_latency(proxy)
        trial.set_user_attr("latency", latency.to_dict())
        trial.set_user_attr("per_stage_ms", latency.per_stage_ms)
        self._upload_profile(trial, latency)
        peak_gb = (latency.peak_mem_mb or 0.0) / 1024
        over = self._over_latency(latency.median_ms)
        source = None if over else self._reusable(trial, key)
        if source is not None:
            psnr_db = self._reuse(trial, source)
        else:
            with self._hold(exclusive=False, windows=windows, name="trained"):
                if over:
                    logger.info("trial %d: %s; not trained", trial.number, over)
                    trial.set_user_attr("skipped_training", over)
                    psnr_db = self._untrained(trial, proxy)
                else:
                    psnr_db, train_peak_gb = self._train(trial, proxy)
                    peak_gb = max(peak_gb, train_peak_gb)
        self._set_constraints(trial, latency.median_ms, peak_gb)
        trial.set_user_attr("device_windows", windows)
        trial.set_user_attr("seconds", round(time.perf_counter() - started, 3))
        return latency.median_ms, psnr_db

    def _cpu_threads(self, exclusive: bool) -> int:
        """All of the process's threads to time; to train, a share of them per live worker."""
        if exclusive:
            return self.threads.latency
        if self.threads.train is not None:
            return self.threads.train
        workers = 1 if self.device_lock is None else self.device_lock.workers()
        return max(1, self.threads.latency // workers)

    # ---- steps -------------------------------------------------------------------------------
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

    def _record_setup(
        self, trial: optuna.trial.BaseTrial, cfg: VRTSpikeConfig, proxy: VRTSpikeConfig, key: str
    ) -> None:
        t, h, w = self.budget.latency_shape
        cost = count_cost(proxy, frames=t, height=h, width=w)
        attrs = {
            "config": cfg.to_dict(),
            "trained_config": proxy.to_dict(),
            "accuracy_key": key,
            "budget": self.budget.to_dict(),
            "seed": self.seed,
            "device": str(self.device),
            "device_name": device_name(self.device),
            "versions": self.versions,
            "space": self.space.name,
            "params": cost.params,
            "flops": cost.flops,
            "flops_per_part": cost.flops_per_part,
        }
        for name, value in attrs.items():
            trial.set_user_attr(name, value)

    def _model(self, cfg: VRTSpikeConfig) -> tuple[VRTSpike, torch.dtype | None]:
        """The seeded, untrained network on the device and its config's autocast dtype."""
        torch.manual_seed(self.seed)
        model = VRTSpike(cfg).to(self.device)
        return model, resolve_amp_dtype(cfg.train.amp_enabled, cfg.train.amp_dtype, self.device)

    def _measure_latency(self, cfg: VRTSpikeConfig) -> Latency:
        t, h, w = self.budget.latency_shape
        gen = torch.Generator().manual_seed(self.seed)
        model, amp = self._model(cfg)
        rgb = torch.rand(1, t, 3, h, w, generator=gen).to(self.device)
        spike = torch.rand(1, t, cfg.data.num_voxel_bins, h, w, generator=gen).to(self.device)
        try:
            return measure_latency(
                model,
                rgb,
                spike,
                amp=amp,
                warmup=self.budget.latency_warmup,
                repeats=self.budget.latency_repeats,
            )
        finally:
            del model
            _free(self.device)

    def _over_latency(self, latency_ms: float) -> str:
        limit = self.limits.max_latency_ms
        if limit is not None and latency_ms > limit:
            return f"latency {latency_ms:.2f} ms exceeds --max-latency-ms {limit:g}"
        return ""

    def _untrained(self, trial: optuna.trial.BaseTrial, cfg: VRTSpikeConfig) -> float:
        """PSNR of the untrained network (for candidates not worth training)."""
        model, amp = self._model(cfg)
        scores, preview = evaluate(
            model, self.data.val, device=self.device, amp=amp, num_clips=self.budget.num_val_clips
        )
        for name in ("ssim", "input_psnr_db", "input_ssim"):
            trial.set_user_attr(name, scores[name])
        self._upload_strip(trial, preview)
        return float(scores["psnr_db"])

    def _reusable(self, trial: optuna.trial.BaseTrial, key: str) -> optuna.trial.FrozenTrial | None:
        study = getattr(trial, "study", None)
        if study is None:  # FixedTrial: no study to reuse from
            return None
        for past in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            attrs = past.user_attrs
            if (
                attrs.get("accuracy_key") == key
                and "train" in attrs
                and "skipped_training" not in attrs
            ):
                return past
        return None

    def _reuse(self, trial: optuna.trial.BaseTrial, source: optuna.trial.FrozenTrial) -> float:
        origin = source.user_attrs.get("reused_from", source.number)
        logger.info(
            "trial %d: same accuracy config as trial %d; reusing its PSNR", trial.number, origin
        )
        trial.set_user_attr("reused_from", origin)
        for name in ("train", "ssim", "input_psnr_db", "input_ssim"):
            trial.set_user_attr(name, source.user_attrs[name])
        self._copy_strip(trial, source)
        return float(source.values[1])

    def _train(self, trial: optuna.trial.BaseTrial, cfg: VRTSpikeConfig) -> tuple[float, float]:
        try:
            trained = train_model(cfg, self.budget, self.data, device=self.device, seed=self.seed)
        except NonFiniteLossError as e:
            trial.set_user_attr("fail_reason", str(e))
            raise
        except (torch.OutOfMemoryError, MemoryError) as e:
            trial.set_user_attr("fail_reason", f"out of memory: {' '.join(str(e).split())[:300]}")
            raise
        r = trained.result
        summary = r.to_dict()
        curve = summary.pop("loss_curve")
        summary["loss_first"], summary["loss_min"] = curve[0], min(curve)
        summary["loss_curve_every"] = curve[:: max(1, len(curve) // 50)]
        trial.set_user_attr("train", summary)
        trial.set_user_attr("ssim", r.ssim)
        trial.set_user_attr("input_psnr_db", r.input_psnr_db)
        trial.set_user_attr("input_ssim", r.input_ssim)
        self._upload_strip(trial, trained.preview)
        del trained
        _free(self.device)
        return r.psnr_db, r.peak_mem_mb / 1024

    def _set_constraints(
        self, trial: optuna.trial.BaseTrial, latency_ms: float, peak_gb: float
    ) -> None:
        values: dict[str, float] = {}
        if self.limits.max_latency_ms is not None:
            values["latency_ms"] = latency_ms - self.limits.max_latency_ms
        if self.limits.max_memory_gb is not None:
            values["memory_gb"] = peak_gb - self.limits.max_memory_gb
        for name, value in values.items():
            if hasattr(trial, "set_constraint"):
                trial.set_constraint(name, value)
            trial.set_user_attr(f"constraint:{name}", value)
        trial.set_user_attr("peak_mem_gb", peak_gb)
        trial.set_user_attr("feasible", all(v <= 0 for v in values.values()))

    # ---- artifacts ---------------------------------------------------------------------------
    def _upload_strip(
        self, trial: optuna.trial.BaseTrial, preview: dict[str, torch.Tensor]
    ) -> None:
        if self.artifact_store is None or not isinstance(trial, optuna.trial.Trial):
            return
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"trial{trial.number}{STRIP_SUFFIX}.png"
            _strip_png(preview, path)
            optuna.artifacts.upload_artifact(
                artifact_store=self.artifact_store,
                file_path=str(path),
                study_or_trial=trial,
                mimetype="image/png",
            )

    def _upload_profile(self, trial: optuna.trial.BaseTrial, latency: Latency) -> None:
        """Stage profile as a bar chart (``image/png``) and a ``part,ms,share`` table (CSV)."""
        if self.artifact_store is None or not isinstance(trial, optuna.trial.Trial):
            return
        title = f"trial {trial.number}: per-stage ms (median end-to-end {latency.median_ms:.2f} ms)"
        with tempfile.TemporaryDirectory() as tmp:
            png = Path(tmp) / f"trial{trial.number}{PROFILE_SUFFIX}.png"
            csv = Path(tmp) / f"trial{trial.number}{PROFILE_SUFFIX}.csv"
            stage_profile_png(latency.per_stage_ms, png, title=title)
            stage_profile_csv(latency.per_stage_ms, csv)
            for path, mimetype in ((png, "image/png"), (csv, "text/csv")):
                optuna.artifacts.upload_artifact(
                    artifact_store=self.artifact_store,
                    file_path=str(path),
                    study_or_trial=trial,
                    mimetype=mimetype,
                )

    def _copy_strip(self, trial: optuna.trial.BaseTrial, source: optuna.trial.FrozenTrial) -> None:
        if self.artifact_store is None or self.storage is None:
            return
        metas = optuna.artifacts.get_all_artifact_meta(source, storage=self.storage)
        with tempfile.TemporaryDirectory() as tmp:
            for meta in metas:
                if meta.filename.endswith(f"{STRIP_SUFFIX}.png"):  # not the source's profile
                    path = Path(tmp) / meta.filename
                    optuna.artifacts.download_artifact(
                        artifact_store=self.artifact_store,
                        file_path=str(path),
                        artifact_id=meta.artifact_id,
                    )
                    optuna.artifacts.upload_artifact(
                        artifact_store=self.artifact_store,
                        file_path=str(path),
                        study_or_trial=trial,
                        mimetype="image/png",
                    )


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
